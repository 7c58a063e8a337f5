{{/* Chart name, at most 63 characters. */}}
{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless it already holds it. */}}
{{- define "switchyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "switchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The port of telemetry.listen (host:port). */}}
{{- define "switchyard.telemetryPort" -}}
{{- $listen := required "telemetry.listen is required (host:port); the probes and the Service use it" .Values.telemetry.listen }}
{{- splitList ":" (toString $listen) | last | int }}
{{- end }}

{{/* Where Secrets are mounted: beside the config directory, not inside it
(a mount inside a ConfigMap volume needs a mount point in a read-only volume). */}}
{{- define "switchyard.secretsDir" -}}
/var/run/secrets/switchyard
{{- end }}

{{- define "switchyard.oidcEnabled" -}}
{{- if and .Values.exporter.sink.endpoint (ne (toString .Values.exporter.oidc.enabled) "false") .Values.exporter.oidc.tokenUrl }}true{{ end }}
{{- end }}

{{/* The chart's own Secret holds the URI unless it comes from elsewhere. */}}
{{- define "switchyard.mongodbUriInChartSecret" -}}
{{- if and (not .Values.mongodb.uriFromEnv) (not .Values.mongodb.existingSecret) }}true{{ end }}
{{- end }}

{{- define "switchyard.oidcSecretInChartSecret" -}}
{{- if and (include "switchyard.oidcEnabled" .) .Values.exporter.oidc.clientSecret }}true{{ end }}
{{- end }}

{{/* Where NVSentinel's MongoDB client certificate Secret (tls.crt, tls.key,
ca.crt) is mounted: `mongodbStore.clientCertMountPath`; empty: none. */}}
{{- define "switchyard.mongodbClientCertDir" -}}
{{- with ((.Values.mongodbStore).clientCertMountPath) }}{{ trimSuffix "/" (toString .) }}{{ end }}
{{- end }}
