//! The Helm chart (deploy/helm/switchyard) and the plain manifests
//! (deploy/kubernetes) make configs that `switchyard validate` accepts.
//!
//! The chart is rendered by a real Helm: `scripts/render-chart` installs it
//! into `.cache/helm` on first use (from npm) and runs `helm template`. The
//! config in the rendered ConfigMap is validated by the built binary. The
//! config reads its secrets from files mounted under
//! `/var/run/secrets/switchyard`, and a MongoDB client certificate from
//! NVSentinel's `/etc/ssl/mongo-client`; the test writes stand-ins (a real
//! certificate and key, made with rcgen) into a temporary directory and
//! points the config there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// Where the chart and the manifests mount their Secrets.
const SECRETS_DIR: &str = "/var/run/secrets/switchyard";

/// Where NVSentinel's chart (and this one, given its values) mounts the
/// MongoDB client certificate Secret.
const MONGO_CLIENT_DIR: &str = "/etc/ssl/mongo-client";

/// `ca.crt`, `tls.crt`, `tls.key` in `dir`, as cert-manager writes them.
fn write_client_cert(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["event-exporter".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn render_chart(args: &[&str]) -> Output {
    Command::new(root().join("scripts/render-chart"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run scripts/render-chart")
}

/// `helm template` with `args`: the rendered documents.
fn render(args: &[&str]) -> Vec<Value> {
    let out = render_chart(args);
    assert!(
        out.status.success(),
        "scripts/render-chart {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_documents(&String::from_utf8(out.stdout).expect("UTF-8 manifests"))
}

fn parse_documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Option<Value>>(text)
        .expect("rendered manifests are YAML")
        .into_iter()
        .flatten()
        .collect()
}

fn read_documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(path)).expect(path);
    parse_documents(&text)
}

fn kinds(docs: &[Value]) -> Vec<&str> {
    docs.iter().filter_map(|d| d["kind"].as_str()).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(docs));
    found[0]
}

/// The text of the ConfigMap's `config.yaml`.
fn config_text(docs: &[Value]) -> String {
    one(docs, "ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("ConfigMap data.config.yaml")
        .to_owned()
}

/// Runs `switchyard validate` on `config` with stand-in secrets, asserting
/// success; returns the config as parsed YAML.
fn validate(config: &str, env: &[(&str, &str)]) -> Value {
    let (out, local) = run_validate(config, env);
    assert!(
        out.status.success(),
        "switchyard validate failed:\n{}{}\n--- config ---\n{local}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    serde_saphyr::from_str(config).expect("config is YAML")
}

/// `switchyard validate` on `config` with stand-in secrets: its output,
/// and the config as validated (pointing at the stand-ins).
fn run_validate(config: &str, env: &[(&str, &str)]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    // Both layouts: the chart mounts one directory per Secret, the plain
    // manifests one Secret with both keys.
    for (file, content) in [
        (
            "mongodb/mongodb-uri",
            "mongodb://127.0.0.1:27017/?replicaSet=rs0\n",
        ),
        ("oidc/oidc-client-secret", "stand-in-client-secret\n"),
        ("mongodb-uri", "mongodb://127.0.0.1:27017/?replicaSet=rs0\n"),
        ("oidc-client-secret", "stand-in-client-secret\n"),
    ] {
        let path = secrets.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let client_cert = dir.path().join("mongo-client");
    write_client_cert(&client_cert);
    let local = config
        .replace(SECRETS_DIR, secrets.to_str().unwrap())
        .replace(MONGO_CLIENT_DIR, client_cert.to_str().unwrap());
    let path: PathBuf = dir.path().join("config.yaml");
    std::fs::write(&path, &local).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "-c"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .expect("run switchyard validate");
    (out, local)
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn pod_spec(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]
}

/// The pod's volume `name`.
fn volume<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    pod_spec(docs)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
}

/// Where the container mounts volume `name`.
fn mount_path<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    container(docs)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| &m["mountPath"])
}

/// The config is mounted as a whole directory (subPath mounts never see
/// ConfigMap updates), the root filesystem is read-only, and the pod runs
/// as uid 65532 without capabilities or an API token.
fn assert_pod_hardened(docs: &[Value]) {
    let pod = &one(docs, "Deployment")["spec"]["template"]["spec"];
    let c = container(docs);
    let config = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/switchyard")
        .expect("config mounted at /etc/switchyard");
    assert!(config.get("subPath").is_none(), "{config}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 2112);
    let state = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/switchyard");
    assert!(state.is_some(), "a writable state volume");
}

#[test]
fn chart_passes_helm_lint() {
    for values in [
        None,
        Some("deploy/helm/switchyard/ci/nvsentinel-values.yaml"),
    ] {
        let mut args = vec!["lint"];
        if let Some(v) = values {
            args.extend(["-f", v]);
        }
        let out = render_chart(&args);
        assert!(
            out.status.success(),
            "helm lint {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn chart_defaults_render_a_valid_config() {
    let docs = render(&[]);
    let config = validate(&config_text(&docs), &[]);

    let sink = &config["receivers"][0];
    assert_eq!(sink["name"], "sink");
    assert_eq!(sink["http"]["mode"], "structured");
    assert_eq!(sink["http"]["concurrency"], 10);
    assert_eq!(
        sink["http"]["oauth2"]["clientSecretFile"],
        format!("{SECRETS_DIR}/oidc/oidc-client-secret")
    );
    assert_eq!(
        config["source"]["mongodb"]["backfill"]["maxEvents"],
        1_000_000
    );
    assert_eq!(config["leaderElection"]["lease"], "switchyard");
    assert_eq!(config["telemetry"]["listen"], "0.0.0.0:2112");
    assert_eq!(config["telemetry"]["compat"], "nvsentinel");
    assert!(config["telemetry"].get("tracing").is_none(), "no tracing");
    assert!(config["source"]["mongodb"].get("tls").is_none(), "no tls");
    assert!(config["route"].get("drop").is_none(), "no filter");
    assert!(volume(&docs, "mongodb-client-cert").is_none());
    assert!(volume(&docs, "tmp").is_none());

    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 2);
    assert_pod_hardened(&docs);
    // The OAuth2 secret comes from NVSentinel's Secret, the URI from the chart's.
    let volumes = &one(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"];
    let secret_of = |name: &str| {
        volumes
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["secret"]["secretName"].clone())
    };
    assert_eq!(secret_of("oidc"), Some(json!("event-exporter-oidc-secret")));
    assert_eq!(secret_of("mongodb-uri"), Some(json!("switchyard")));
    assert_eq!(
        one(&docs, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
    assert_eq!(one(&docs, "Service")["spec"]["ports"][0]["name"], "metrics");
    assert!(!kinds(&docs).contains(&"ServiceMonitor"));
    assert!(!kinds(&docs).contains(&"Role"));
}

#[test]
fn chart_accepts_nvsentinel_event_exporter_values() {
    let docs = render(&["-f", "deploy/helm/switchyard/ci/nvsentinel-values.yaml"]);
    let config = validate(&config_text(&docs), &[]);

    assert_eq!(config["metadata"]["cluster"], "gpu-eu-west-4");
    assert_eq!(config["metadata"]["datacenter"], "ams2");
    let mongo = &config["source"]["mongodb"];
    assert_eq!(
        mongo["backfill"],
        json!({"enabled": true, "maxAge": "168h", "maxEvents": 250000, "batchSize": 1000, "rateLimit": 2500})
    );
    assert_eq!(
        mongo["resumeTokens"],
        json!({"database": "nvsentinel", "collection": "resumetokens", "clientName": "event-exporter-eu"})
    );
    let http = &config["receivers"][0]["http"];
    assert_eq!(
        http["endpoint"],
        "https://collector.fleet.example.net/api/v1/events"
    );
    assert_eq!(http["timeout"], "45s");
    assert_eq!(http["concurrency"], 24);
    assert_eq!(http["oauth2"]["clientId"], "nvsentinel-gpu-eu-west-4");
    assert_eq!(
        http["oauth2"]["tokenUrl"],
        "https://login.fleet.example.net/oauth2/v1/token"
    );
    assert_eq!(
        http["oauth2"]["scopes"],
        json!(["events:write", "telemetry"])
    );
    assert_eq!(
        config["receivers"][0]["retry"],
        json!({"maxRetries": 30, "initialBackoff": "5s", "maxBackoff": "15m", "multiplier": 2.5})
    );

    // exporter.filter.expression: NVSentinel exports when it is true.
    assert_eq!(
        config["route"]["drop"],
        json!([{"expr": "!(event.recommendedAction != 'NONE')"}])
    );
    // global.tracing, as NVSentinel's chart passes it (OTEL_EXPORTER_OTLP_*).
    assert_eq!(
        config["telemetry"]["tracing"],
        json!({"enabled": true, "endpoint": "otel-collector.monitoring.svc:4317", "insecure": true})
    );
    assert_eq!(config["telemetry"]["compat"], "nvsentinel");
    // mongodbStore.clientCertMountPath: the three files of the Secret.
    assert_eq!(
        mongo["tls"],
        json!({
            "caFile": "/etc/ssl/mongo-client/ca.crt",
            "certFile": "/etc/ssl/mongo-client/tls.crt",
            "keyFile": "/etc/ssl/mongo-client/tls.key",
        })
    );
    assert_eq!(
        volume(&docs, "mongodb-client-cert").unwrap()["secret"],
        json!({"secretName": "mongo-app-client-cert-secret", "optional": true})
    );
    assert_eq!(
        mount_path(&docs, "mongodb-client-cert"),
        Some(&json!(MONGO_CLIENT_DIR))
    );
    // The joined certificate and key go to /tmp, in memory, under a
    // read-only root filesystem.
    assert_eq!(
        volume(&docs, "tmp").unwrap()["emptyDir"],
        json!({"medium": "Memory", "sizeLimit": "1Mi"})
    );
    assert_eq!(mount_path(&docs, "tmp"), Some(&json!("/tmp")));

    let pod = pod_spec(&docs);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["nodeSelector"],
        json!({"node-role.kubernetes.io/system": "true"})
    );
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}])
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 1);
    assert_eq!(
        container(&docs)["image"],
        "registry.example.com/switchyard:0.1.0"
    );
    assert_eq!(
        one(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["example.com/team"],
        "gpu-fleet"
    );
    assert_pod_hardened(&docs);
}

#[test]
fn chart_options_render_valid_configs() {
    // The URI from an environment variable (as NVSentinel's mongodb-config
    // ConfigMap provides it), the client secret in the chart's own Secret,
    // dead letters, root drop rules, more routes and receivers.
    let docs = render(&[
        "--set",
        "mongodb.uriFromEnv=MONGODB_URI",
        "--set",
        "exporter.oidc.clientSecret=stand-in",
        "--set",
        "deadLetter.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "leaderElection.lease=exporter-eu",
        "--set-json",
        r#"receivers=[{"name":"fatal","stdout":{}}]"#,
        "--set-json",
        r#"drop=[{"data.healthEvent.recommendedAction":"NONE"}]"#,
        "--set-json",
        r#"routes=[{"match":[{"receiver":"sink"}]},{"match":[{"receiver":"fatal","data.healthEvent.isFatal":true}]}]"#,
    ]);
    let config = validate(
        &config_text(&docs),
        &[("MONGODB_URI", "mongodb://127.0.0.1:27017/?replicaSet=rs0")],
    );
    assert_eq!(config["source"]["mongodb"]["uri"], "${MONGODB_URI}");
    assert_eq!(
        config["receivers"][0]["deadLetter"]["file"],
        "/var/lib/switchyard/dlq/sink.jsonl"
    );
    assert_eq!(config["receivers"][1]["name"], "fatal");
    assert_eq!(config["route"]["routes"].as_array().unwrap().len(), 2);
    assert_eq!(config["leaderElection"]["lease"], "exporter-eu");

    let secret = one(&docs, "Secret");
    assert_eq!(
        secret["stringData"],
        json!({"oidc-client-secret": "stand-in"})
    );
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

#[test]
fn chart_renders_any_filter_expression_as_one_quoted_drop_rule() {
    // Quotes, a colon and a hash: YAML-sensitive, passed through intact,
    // ahead of the chart's own drop rules.
    let expression =
        r#"event.checkName == "GpuXid: #48" || (event.isFatal && event.message != 'it\'s, "ok"')"#;
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    let yaml = json!({
        "exporter": {"filter": {"expression": expression}},
        "drop": [{"data.healthEvent.agent": "test-agent"}],
    });
    std::fs::write(&values, yaml.to_string()).unwrap();
    let docs = render(&["-f", values.to_str().unwrap()]);
    let config = validate(&config_text(&docs), &[]);
    assert_eq!(
        config["route"]["drop"],
        json!([{"expr": format!("!({expression})")}, {"data.healthEvent.agent": "test-agent"}])
    );

    // A broken expression stops `validate` (and the pod's start), pointing
    // at the rendered rule, as NVSentinel refuses it at start.
    let docs = render(&[
        "--set-string",
        "exporter.filter.expression=event.isFatal ==",
    ]);
    let (out, _) = run_validate(&config_text(&docs), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route.drop[0].expr: CEL syntax error"),
        "{err}"
    );
}

#[test]
fn chart_telemetry_values_win_over_nvsentinel_globals() {
    let docs = render(&[
        "--set",
        "global.tracing.enabled=true",
        "--set",
        "global.tracing.endpoint=otel:4317",
        "--set",
        "global.tracing.insecure=true",
        "--set",
        "telemetry.tracing.endpoint=https://collector.example.net:4318",
        "--set",
        "telemetry.tracing.protocol=http/protobuf",
        "--set",
        "telemetry.tracing.serviceName=exporter-eu",
        "--set-string",
        "telemetry.compat=",
        "--set-json",
        r#"global.systemNodeSelector={"pool":"system"}"#,
        "--set-json",
        r#"nodeSelector={"pool":"ignored"}"#,
    ]);
    let config = validate(&config_text(&docs), &[]);
    assert_eq!(
        config["telemetry"]["tracing"],
        json!({
            "enabled": true,
            "endpoint": "https://collector.example.net:4318",
            "protocol": "http/protobuf",
            "serviceName": "exporter-eu",
            "insecure": true,
        })
    );
    assert!(config["telemetry"].get("compat").is_none(), "compat off");
    // NVSentinel's global placement of system pods wins, as in its chart.
    assert_eq!(pod_spec(&docs)["nodeSelector"], json!({"pool": "system"}));

    // Tracing from Switchyard's value alone.
    let docs = render(&["--set", "telemetry.tracing.enabled=true"]);
    let config = validate(&config_text(&docs), &[]);
    assert_eq!(config["telemetry"]["tracing"], json!({"enabled": true}));
}

#[test]
fn chart_refuses_a_sink_type_it_cannot_render() {
    let out = render_chart(&["--set", "exporter.sink.type=kafka"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exporter.sink.type \"kafka\""), "{err}");
}

#[test]
fn kubernetes_manifests_hold_a_valid_config() {
    let docs: Vec<Value> = [
        "serviceaccount.yaml",
        "secret.yaml",
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "servicemonitor.yaml",
    ]
    .iter()
    .flat_map(|f| read_documents(&format!("deploy/kubernetes/{f}")))
    .collect();
    let config = validate(&config_text(&docs), &[]);
    assert_eq!(config["leaderElection"]["enabled"], true);
    assert_eq!(config["receivers"][0]["http"]["mode"], "structured");

    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 2);
    assert_pod_hardened(&docs);
    // Every key of the Secret is a file the config reads.
    let secret = one(&docs, "Secret");
    for key in secret["stringData"].as_object().unwrap().keys() {
        let file = format!("{SECRETS_DIR}/{key}");
        assert!(config_text(&docs).contains(&file), "{file} unused");
    }
    assert_eq!(
        one(&docs, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
    assert_eq!(
        one(&docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"],
        "metrics"
    );
}
