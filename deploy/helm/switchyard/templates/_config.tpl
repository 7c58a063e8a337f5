{{/*
The Switchyard config file, from NVSentinel's `exporter` values and the
chart's own. Scalars go through toJson (a JSON string is a YAML string, so
any value is quoted safely); trees given by the user through toYaml.
*/}}
{{- define "switchyard.config" -}}
{{- $e := .Values.exporter }}
{{- $secrets := include "switchyard.secretsDir" . }}
{{- if and $e.sink.type (ne (toString $e.sink.type) "http") }}
{{- fail (printf "exporter.sink.type %q: this chart renders the sink as an HTTP receiver only; leave exporter.sink.endpoint empty and add your receiver under `receivers` (README, \"Receivers\")" (toString $e.sink.type)) }}
{{- end }}
{{- $cluster := required "exporter.metadata.cluster is required: it names the event source" (($e.metadata).cluster) }}
metadata:
{{- range $k, $v := $e.metadata }}
  {{ $k }}: {{ toString $v | toJson }}
{{- end }}
source:
  mongodb:
    {{- if .Values.mongodb.uriFromEnv }}
    uri: {{ printf "${%s}" .Values.mongodb.uriFromEnv | toJson }}
    {{- else }}
    uriFile: {{ printf "%s/mongodb/mongodb-uri" $secrets }}
    {{- end }}
    database: {{ .Values.mongodb.database | toJson }}
    collection: {{ .Values.mongodb.collection | toJson }}
    operationTypes: {{ .Values.mongodb.operationTypes | toJson }}
    {{- with .Values.mongodb.pipeline }}
    pipeline:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    resumeTokens:
      database: {{ $e.resumeToken.database | toJson }}
      collection: {{ $e.resumeToken.collection | toJson }}
      clientName: {{ $e.clientName | default "switchyard" | toJson }}
    {{- with include "switchyard.mongodbClientCertDir" . }}
    tls:
      caFile: {{ printf "%s/ca.crt" . | toJson }}
      certFile: {{ printf "%s/tls.crt" . | toJson }}
      keyFile: {{ printf "%s/tls.key" . | toJson }}
    {{- end }}
    backfill:
      enabled: {{ $e.backfill.enabled }}
      maxAge: {{ $e.backfill.maxAge | toJson }}
      maxEvents: {{ $e.backfill.maxEvents | int64 }}
      batchSize: {{ $e.backfill.batchSize | int64 }}
      rateLimit: {{ $e.backfill.rateLimit | int64 }}
mapping:
  profile: nvsentinel
state:
  dir: /var/lib/switchyard
  flushInterval: {{ .Values.state.flushInterval | toJson }}
shutdownTimeout: {{ .Values.shutdownTimeout | toJson }}
telemetry:
  {{- toYaml (include "switchyard.telemetry" . | fromYaml) | nindent 2 }}
{{- $le := deepCopy .Values.leaderElection }}
{{- if not $le.lease }}
{{- $_ := set $le "lease" (include "switchyard.fullname" .) }}
{{- end }}
leaderElection:
  {{- toYaml $le | nindent 2 }}
{{- with .Values.transforms }}
transforms:
  {{- toYaml . | nindent 2 }}
{{- end }}
route:
  {{- $expression := trim (toString (($e.filter).expression | default "")) }}
  {{- if or $expression .Values.drop }}
  drop:
    {{- if $expression }}
    # exporter.filter.expression: NVSentinel exports an event when it is
    # true, so its negation drops the others.
    - expr: {{ printf "!(%s)" $expression | toJson }}
    {{- end }}
    {{- with .Values.drop }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.routes }}
  routes:
    {{- toYaml . | nindent 4 }}
  {{- end }}
receivers:
{{- if $e.sink.endpoint }}
  - name: {{ .Values.sinkReceiverName | toJson }}
    http:
      endpoint: {{ $e.sink.endpoint | toJson }}
      mode: structured
      timeout: {{ $e.sink.timeout | default "30s" | toJson }}
      concurrency: {{ $e.workers | default 10 | int }}
      {{- if $e.sink.insecureSkipVerify }}
      tls: {insecureSkipVerify: true}
      {{- end }}
      {{- if include "switchyard.oidcEnabled" . }}
      oauth2:
        tokenUrl: {{ $e.oidc.tokenUrl | toJson }}
        clientId: {{ required "exporter.oidc.clientId is required with exporter.oidc.tokenUrl" $e.oidc.clientId | toJson }}
        clientSecretFile: {{ printf "%s/oidc/oidc-client-secret" $secrets }}
        {{- with $e.oidc.scope }}
        scopes: {{ splitList " " . | compact | toJson }}
        {{- end }}
        {{- with $e.oidc.audience }}
        audience: {{ . | toJson }}
        {{- end }}
        {{- if $e.oidc.insecureSkipVerify }}
        tls: {insecureSkipVerify: true}
        {{- end }}
      {{- end }}
    retry:
      maxRetries: {{ $e.failureHandling.maxRetries | int }}
      initialBackoff: {{ $e.failureHandling.initialBackoff | toJson }}
      maxBackoff: {{ $e.failureHandling.maxBackoff | toJson }}
      multiplier: {{ $e.failureHandling.backoffMultiplier | float64 }}
    {{- if .Values.deadLetter.enabled }}
    deadLetter:
      file: {{ printf "/var/lib/switchyard/dlq/%s.jsonl" .Values.sinkReceiverName | toJson }}
    {{- end }}
{{- end }}
{{- with .Values.receivers }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if not (or $e.sink.endpoint .Values.receivers) }}
{{- fail "no receiver: set exporter.sink.endpoint or add `receivers`" }}
{{- end }}
{{- end }}

{{/*
The `telemetry` block: the chart's `telemetry` value, with tracing from
NVSentinel's `global.tracing` ({enabled, endpoint, insecure}) for the keys
`telemetry.tracing` leaves out, and no `compat` when it is empty.
*/}}
{{- define "switchyard.telemetry" -}}
{{- $t := deepCopy .Values.telemetry }}
{{- if not $t.compat }}
{{- $_ := unset $t "compat" }}
{{- end }}
{{- $tracing := deepCopy ($t.tracing | default dict) }}
{{- $g := ((.Values.global).tracing) | default dict }}
{{- if $g.enabled }}
{{- if not (hasKey $tracing "enabled") }}
{{- $_ := set $tracing "enabled" true }}
{{- end }}
{{- if and $g.endpoint (not $tracing.endpoint) }}
{{- $_ := set $tracing "endpoint" (toString $g.endpoint) }}
{{- end }}
{{- if and (hasKey $g "insecure") (not (hasKey $tracing "insecure")) }}
{{- $_ := set $tracing "insecure" (eq (toString $g.insecure) "true") }}
{{- end }}
{{- end }}
{{- if $tracing }}
{{- $_ := set $t "tracing" $tracing }}
{{- else }}
{{- $_ := unset $t "tracing" }}
{{- end }}
{{- toYaml $t }}
{{- end }}
