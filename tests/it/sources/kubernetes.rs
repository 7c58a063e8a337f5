//! `source.kubernetes` against the in-process API server replica
//! (tests/it/support/kube.rs; no real API server installs here): Events
//! listed, watched and routed by kubernetes-event-exporter's fields; count
//! bumps; restarts that resume from the persisted resourceVersion; `410
//! Gone` that relists and skips what was delivered; HealthEventResources
//! mapped exactly as the MongoDB documents are.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use support::kube::ApiServer;
use support::process::Process;
use support::{json_lines, wait_json_lines};

const TOKEN: &str = "replica-token";
const WAIT: Duration = Duration::from_secs(30);

/// The same count a while later: nothing more arrives.
async fn settled(path: &Path, n: usize) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(json_lines(path).len(), n, "{}", path.display());
}

/// A core v1 Event about `kind/name` in `ns`, shaped as the API returns it.
fn event(ns: &str, name: &str, reason: &str, ty: &str, involved: (&str, &str)) -> Value {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (kind, object) = involved;
    let api_version = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    let involved_ns = if kind == "Node" { "" } else { ns };
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"apiVersion": api_version, "kind": kind, "namespace": involved_ns,
            "name": object, "uid": format!("{object}-uid"), "resourceVersion": "1"},
        "reason": reason,
        "message": format!("{reason} on {object}"),
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": ty,
        "eventTime": null,
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1"
    })
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A config watching `source` (YAML lines under `kubernetes:`), routing
/// with `route`, to file receivers named in `receivers`.
fn setup(server: &ApiServer, token: &str, source: &str, route: &str, receivers: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig(dir.path(), token);
    let receivers: String = receivers
        .iter()
        .map(|r| {
            support::yaml(
                "  - {name: $r, file: {path: $dir}}\n",
                &[
                    ("r", &r),
                    ("dir", &dir.path().join(format!("{r}.jsonl")).display()),
                ],
            )
        })
        .collect();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: replica}\n\
             source:\n  kubernetes:\n    kubeconfig: $kubeconfig\n$source\n\
             state: {dir: $dir, flushInterval: 100ms}\n\
             route:\n$route\n\
             receivers:\n$receivers",
            &[
                ("kubeconfig", &kubeconfig.display()),
                ("source", &source),
                ("dir", &dir.path().join("state").display()),
                ("route", &route),
                ("receivers", &receivers),
            ],
        ),
    )
    .unwrap();
    Setup { dir, config }
}

/// A process watching Events with `source` settings, routing everything to
/// the file receiver `out`; returned once it watches.
async fn start_watching(server: &ApiServer, source: &str) -> (Setup, PathBuf, Process) {
    let s = setup(
        server,
        TOKEN,
        source,
        "  match: [{receiver: out}]\n",
        &["out"],
    );
    let out = s.path("out.jsonl");
    let p = Process::run(&s.config, &[]);
    p.wait_for("watching Kubernetes", WAIT).await;
    (s, out, p)
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_unique(events: &[Value]) {
    let mut seen = std::collections::HashSet::new();
    for id in ids(events) {
        assert!(seen.insert(id.clone()), "delivered twice: {id}");
    }
}

/// Routes use kubernetes-event-exporter's fields: the involved object's
/// kind and labels, the reason and type. Old events are skipped at start
/// (`maxEventAgeSeconds`), a count bump is a new delivery, a change of the
/// Event's metadata is not, namespaces and field selectors filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_watched_and_routed_by_their_fields() {
    let server = ApiServer::start(TOKEN, None).await;
    server.create(
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
            "annotations": {"team": "storefront"}}}),
    );
    server.create(
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-1", "namespace": "shop", "labels": {"app": "db"}}}),
    );
    // Before the start: one recent (listed and sent), one two hours old
    // (skipped), one in a namespace not watched.
    server.create(
        "events",
        event("shop", "web-1.a", "BackOff", "Warning", ("Pod", "web-1")),
    );
    let mut old = event("shop", "db-1.old", "Pulled", "Normal", ("Pod", "db-1"));
    old["lastTimestamp"] = "2026-01-01T00:00:00Z".into();
    old["firstTimestamp"] = "2026-01-01T00:00:00Z".into();
    server.create("events", old);
    server.create(
        "events",
        event("other", "x.a", "BackOff", "Warning", ("Pod", "x")),
    );

    let s = setup(
        &server,
        TOKEN,
        "    kind: events\n    namespaces: [shop, ops]\n    fieldSelector: involvedObject.kind!=Deployment\n    maxEventAgeSeconds: 3600\n",
        "  match: [{receiver: all}]\n  routes:\n\
         \x20   - match: [{data.involvedObject.labels.app: web, receiver: web}]\n\
         \x20   - match: [{data.type: Warning, data.reason: \"Back*\", receiver: backoff}]\n",
        &["all", "web", "backoff"],
    );
    let p = Process::run(&s.config, &[]);
    let all = wait_json_lines(&s.path("all.jsonl"), 1, &p, WAIT).await;
    assert_eq!(all[0]["subject"], "shop/Pod/web-1");
    assert_eq!(all[0]["type"], "io.k8s.event.BackOff");
    assert_eq!(all[0]["source"], "k8s://replica/shop");
    assert_eq!(all[0]["data"]["involvedObject"]["labels"]["app"], "web");
    assert_eq!(
        all[0]["data"]["involvedObject"]["annotations"]["team"],
        "storefront"
    );

    // Live: a new event, a count bump, a metadata-only change, an event on
    // a Deployment (field selector), one in another namespace.
    server.create(
        "events",
        event(
            "ops",
            "node-1.a",
            "NodeNotReady",
            "Warning",
            ("Node", "node-1"),
        ),
    );
    server.update("events", "shop", "web-1.a", |e| {
        e["count"] = 2.into();
        e["lastTimestamp"] = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
            .into();
    });
    server.update("events", "shop", "web-1.a", |e| {
        e["metadata"]["annotations"] = json!({"touched": "yes"});
    });
    server.create(
        "events",
        event(
            "shop",
            "deploy.a",
            "ScalingReplicaSet",
            "Normal",
            ("Deployment", "web"),
        ),
    );
    server.create(
        "events",
        event("other", "x.b", "Killing", "Normal", ("Pod", "x")),
    );
    server.create(
        "events",
        event("shop", "db-1.b", "Unhealthy", "Warning", ("Pod", "db-1")),
    );

    let all = wait_json_lines(&s.path("all.jsonl"), 4, &p, WAIT).await;
    settled(&s.path("all.jsonl"), 4).await;
    assert_unique(&all);
    // Two namespaces, two watches: their events interleave in any order.
    let mut subjects: Vec<(&str, u64)> = all
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap(),
                e["data"]["count"].as_u64().unwrap(),
            )
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            ("Node/node-1", 1),
            ("shop/Pod/db-1", 1),
            ("shop/Pod/web-1", 1),
            ("shop/Pod/web-1", 2)
        ],
        "the count bump is a new delivery, the metadata change is not"
    );
    let web = wait_json_lines(&s.path("web.jsonl"), 2, &p, WAIT).await;
    assert_eq!(web.len(), 2, "both occurrences of web-1's event: {web:?}");
    let backoff = wait_json_lines(&s.path("backoff.jsonl"), 2, &p, WAIT).await;
    assert_eq!(backoff.len(), 2, "{backoff:?}");
    assert!(backoff.iter().all(|e| e["data"]["reason"] == "BackOff"));
}

/// SIGKILL, changes while the exporter is down, a restart: it watches on
/// from the persisted resourceVersion (no second list) and sends exactly
/// what happened meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_persisted_resource_version() {
    let server = ApiServer::start(TOKEN, None).await;
    let (s, out, mut p) = start_watching(
        &server,
        "    kind: events\n    involvedObjectMetadata: false\n",
    )
    .await;
    for i in 0..40 {
        server.create(
            "events",
            event(
                "ns",
                &format!("e{i}"),
                "Started",
                "Normal",
                ("Pod", &format!("p{i}")),
            ),
        );
    }
    wait_json_lines(&out, 40, &p, WAIT).await;
    // The position is flushed every 100 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.kill();
    assert_eq!(server.requests("list"), 1);

    for i in 40..60 {
        server.create(
            "events",
            event(
                "ns",
                &format!("e{i}"),
                "Started",
                "Normal",
                ("Pod", &format!("p{i}")),
            ),
        );
    }
    for i in 0..5 {
        server.update("events", "ns", &format!("e{i}"), |e| e["count"] = 2.into());
    }
    server.delete("events", "ns", "e10");

    let p = Process::run(&s.config, &[]);
    let all = wait_json_lines(&out, 65, &p, WAIT).await;
    settled(&out, 65).await;
    assert_unique(&all);
    assert_eq!(
        server.requests("list"),
        1,
        "resumed by watching, not listing"
    );
    let bumped = all[40..].iter().filter(|e| e["data"]["count"] == 2).count();
    assert_eq!(bumped, 5);
}

/// The persisted resourceVersion is compacted away while the exporter is
/// down, and again while it runs: each time the watch answers 410 Gone,
/// the source lists again and sends only what it had not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_relists_and_skips_what_was_delivered() {
    let server = ApiServer::start(TOKEN, None).await;
    let (s, out, mut p) = start_watching(
        &server,
        "    kind: events\n    pageSize: 7\n    involvedObjectMetadata: false\n",
    )
    .await;
    for i in 0..20 {
        server.create(
            "events",
            event("ns", &format!("e{i}"), "Started", "Normal", ("Pod", "p")),
        );
    }
    wait_json_lines(&out, 20, &p, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.kill();

    // Down: 10 new, 3 bumped, 2 deleted, then compaction.
    for i in 20..30 {
        server.create(
            "events",
            event("ns", &format!("e{i}"), "Started", "Normal", ("Pod", "p")),
        );
    }
    for i in 0..3 {
        server.update("events", "ns", &format!("e{i}"), |e| e["count"] = 5.into());
    }
    server.delete("events", "ns", "e18");
    server.delete("events", "ns", "e19");
    server.compact();
    // The first start's list ran while events were created: 1 to 3 pages.
    let lists_before = server.requests("list");

    let mut p = Process::run(&s.config, &[]);
    let all = wait_json_lines(&out, 33, &p, WAIT).await;
    settled(&out, 33).await;
    assert_unique(&all);
    p.wait_for("listing again", Duration::from_secs(5)).await;
    assert_eq!(
        server.requests("list") - lists_before,
        4,
        "28 objects listed in pages of 7:\n{}",
        p.log()
    );

    // Running: compaction, then the watch is cut; 410 on the next watch.
    for i in 30..35 {
        server.create(
            "events",
            event("ns", &format!("e{i}"), "Started", "Normal", ("Pod", "p")),
        );
    }
    wait_json_lines(&out, 38, &p, WAIT).await;
    // Another kind moves the revision on; the Events watch is behind it.
    server.create(
        "pods",
        json!({"metadata": {"name": "p", "namespace": "ns"}}),
    );
    server.compact();
    let watches = server.requests("watch");
    server.hang_up();
    // Changes made once it watches again (before that, the old watch could
    // still pass them on).
    while server.requests("watch") == watches {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.update("events", "ns", "e30", |e| e["count"] = 2.into());
    server.create(
        "events",
        event("ns", "e35", "Started", "Normal", ("Pod", "p")),
    );
    let all = wait_json_lines(&out, 40, &p, WAIT).await;
    settled(&out, 40).await;
    assert_unique(&all);
    assert_eq!(
        p.log().matches("listing again").count(),
        2,
        "{}\n{}",
        server.request_log(),
        p.log()
    );
    assert!(p.terminate().success());
    assert!(p.log().contains("tokens_lost=2"), "{}", p.log());
}

/// The protobuf JSON (protojson) field names of HealthEvent, by the
/// lower-cased names the MongoDB documents use.
const CAMEL: &[(&str, &str)] = &[
    ("componentclass", "componentClass"),
    ("checkname", "checkName"),
    ("isfatal", "isFatal"),
    ("ishealthy", "isHealthy"),
    ("recommendedaction", "recommendedAction"),
    ("errorcode", "errorCode"),
    ("entitiesimpacted", "entitiesImpacted"),
    ("entitytype", "entityType"),
    ("entityvalue", "entityValue"),
    ("generatedtimestamp", "generatedTimestamp"),
    ("nodename", "nodeName"),
    ("quarantineoverrides", "quarantineOverrides"),
    ("drainoverrides", "drainOverrides"),
    ("processingstrategy", "processingStrategy"),
    ("customrecommendedaction", "customRecommendedAction"),
];

/// A MongoDB HealthEvents document as the HealthEventResource NVSentinel's
/// Kubernetes store writes (protojson: camelCase names, zero values left
/// out, timestamps as RFC 3339), with the document's id as its uid.
fn as_resource(doc: &Value, n: usize) -> Value {
    fn camel(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| {
                        !matches!(v, Value::Bool(false) | Value::Null)
                            && *v != &json!(0)
                            && *v != &json!("")
                            && *v != &json!([])
                    })
                    .map(|(k, v)| {
                        let k = CAMEL
                            .iter()
                            .find(|(l, _)| l == k)
                            .map_or(k.as_str(), |(_, c)| c);
                        (k.to_owned(), camel(v))
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
            other => other.clone(),
        }
    }
    let he = &doc["healthevent"];
    let mut spec = camel(he);
    if let Some(ts) = he.get("generatedtimestamp").filter(|t| t.is_object()) {
        let t = chrono::DateTime::from_timestamp(
            ts["seconds"].as_i64().unwrap(),
            ts["nanos"].as_u64().unwrap() as u32,
        )
        .unwrap();
        spec["generatedTimestamp"] = t
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .into();
    }
    json!({
        "apiVersion": "healthevents.dgxc.nvidia.com/v1",
        "kind": "HealthEventResource",
        "metadata": {"name": format!("he-{n}"), "namespace": "nvsentinel",
            "uid": doc["_id"]["$oid"], "creationTimestamp": doc["createdAt"]["$date"]},
        "spec": spec,
        "status": {"nodeQuarantined": "Quarantined"}
    })
}

/// HealthEventResources → the same CloudEvents as the MongoDB documents
/// they hold (the `nvsentinel` mapping, one delivery per resource: a
/// status update is not a new event); a resource with a broken spec is
/// skipped as malformed and the rest go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_event_resources_map_like_the_mongodb_documents() {
    use switchyard::mapping::Profile;
    use switchyard::mapping::{Mapper, Overrides};

    let docs: Vec<Value> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/health-events.jsonl"),
    )
    .unwrap()
    .lines()
    .take(60)
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let server = ApiServer::start(TOKEN, None).await;
    for (n, doc) in docs[..30].iter().enumerate() {
        server.create("healtheventresources", as_resource(doc, n));
    }
    let s = setup(
        &server,
        TOKEN,
        "    kind: healthevents\n    namespaces: [nvsentinel]\n",
        "  match: [{receiver: out}]\n",
        &["out"],
    );
    let out = s.path("out.jsonl");
    let p = Process::run(&s.config, &[]);
    wait_json_lines(&out, 30, &p, WAIT).await;
    let mut broken = as_resource(&docs[0], 999);
    broken["metadata"]["uid"] = "broken".into();
    broken["spec"]["generatedTimestamp"] = "yesterday".into();
    server.create("healtheventresources", broken);
    for (n, doc) in docs[30..].iter().enumerate() {
        server.create("healtheventresources", as_resource(doc, 30 + n));
    }
    server.update("healtheventresources", "nvsentinel", "he-3", |r| {
        r["status"]["nodeQuarantined"] = "Cancelled".into();
    });
    let got = wait_json_lines(&out, 60, &p, WAIT).await;
    settled(&out, 60).await;
    p.wait_for(
        "HealthEventResource he-999: spec.generatedTimestamp",
        Duration::from_secs(5),
    )
    .await;

    let metadata = [("cluster".to_owned(), json!("replica"))]
        .into_iter()
        .collect();
    let mapper = Mapper::new(Profile::Nvsentinel, metadata, Overrides::default());
    for (doc, got) in docs.iter().zip(&got) {
        let want = mapper.map(doc.to_string().as_bytes()).unwrap();
        let want = switchyard::event::to_value(&want);
        assert_eq!(got, &want, "document {}", doc["_id"]);
    }
}

/// A token the API server refuses: the error is logged, retried with
/// backoff, and the exporter keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_retried() {
    let server = ApiServer::start(TOKEN, None).await;
    let s = setup(
        &server,
        "tok-7f3a-refused",
        "    kind: events\n",
        "  match: [{receiver: out}]\n",
        &["out"],
    );
    let mut p = Process::run(&s.config, &[]);
    p.wait_for_n("Kubernetes API unavailable", 3, Duration::from_secs(10))
        .await;
    assert!(p.log().contains("Unauthorized"), "{}", p.log());
    assert!(
        !p.log().contains("tok-7f3a"),
        "the token is not logged:\n{}",
        p.log()
    );
    assert!(p.try_wait().is_none(), "still running");
    // Each retry reached the server and was refused; nothing was served.
    assert!(server.requests("refused") >= 3, "{}", server.request_log());
    assert_eq!(server.requests("list"), 0);
}
