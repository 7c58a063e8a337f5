//! Traces of the running binary, received by an independent OTLP decoder:
//! `tests/it/support/otlp_receiver.py` (PyPI `opentelemetry-proto` and
//! `grpcio`, installed by `scripts/py-otlp`). NVSentinel documents carrying
//! the platform connector's trace context go from a file to two `http`
//! receivers (binary and structured mode, the second failing once), and the
//! spans must say: `process_event` in the document's trace with a link to the
//! platform connector's span and no parent, one `publish_with_retry` child
//! per receiver, one `publish` child per attempt; and each request's
//! `traceparent` must be the attempt's span in that trace.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::config::{parse, validate};
use switchyard::event::AttributesReader;

use crate::support;

use support::http::{self, Reply};
use support::pipeline::SAMPLES;
use support::process::Process;
use support::python::PyServer;

/// `otlp_receiver.py`: OTLP/HTTP on the first port, OTLP/gRPC on the second.
fn collector(out: PathBuf) -> PyServer {
    let server = PyServer::start("otlp_receiver.py", "py-otlp", out);
    assert_eq!(
        server.ports.len(),
        2,
        "otlp_receiver.py: {:?}",
        server.ports
    );
    server
}

/// A document and the trace context NVSentinel's platform connector gave it.
struct Doc {
    line: String,
    /// (trace id, platform connector's span id), hex.
    trace: Option<(String, String)>,
}

/// Five sample documents; the first four carry a trace context.
fn documents() -> Vec<Doc> {
    SAMPLES
        .lines()
        .take(5)
        .enumerate()
        .map(|(i, line)| {
            let mut doc: Value = serde_json::from_str(line).unwrap();
            let trace = (i < 4).then(|| {
                (
                    format!("{:032x}", 0x7ace_0000_0000_0000_0001_u128 + i as u128),
                    format!("{:016x}", 0x0c00_0000_0000_0001_u64 + i as u64),
                )
            });
            if let Some((trace_id, span_id)) = &trace {
                doc["healthevent"]["metadata"]["trace_id"] = json!(trace_id);
                doc["healtheventstatus"]["spanids"] = json!({"platform-connector": span_id});
            }
            Doc {
                line: doc.to_string(),
                trace,
            }
        })
        .collect()
}

/// Runs the binary over `docs` to the two receivers until it exits (the
/// file ends), with `tracing` as the `telemetry.tracing` block and `env`.
async fn export(
    dir: &Path,
    docs: &[Doc],
    tracing: &str,
    env: &[(&str, &str)],
) -> (Vec<String>, http::Receiver, http::Receiver) {
    let input = dir.join("input.jsonl");
    let lines: Vec<&str> = docs.iter().map(|d| d.line.as_str()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let binary = http::receiver(http::always(202)).await;
    // The structured receiver refuses its first request: a retry.
    let structured = http::receiver(Arc::new(|n, _| {
        Reply::status(if n == 0 { 503 } else { 202 })
    }))
    .await;
    let yaml = support::yaml(
        "metadata: {cluster: test}\n\
         source: {file: {path: $input}}\n\
         state: {dir: $state}\n\
         telemetry: {tracing: $tracing}\n\
         route: {match: [{receiver: binary}, {receiver: structured}]}\n\
         receivers:\n\
         \x20 - {name: binary, http: {endpoint: \"$b\", mode: binary}}\n\
         \x20 - name: structured\n\
         \x20   http: {endpoint: \"$s\", mode: structured}\n\
         \x20   retry: {initialBackoff: 5ms, jitter: 0}\n",
        &[
            ("input", &input.display()),
            ("state", &dir.join("state").display()),
            ("tracing", &tracing),
            ("b", &binary.url()),
            ("s", &structured.url()),
        ],
    );
    let config = dir.join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    // The ids Switchyard gives the documents.
    let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
    let ids = lines
        .iter()
        .map(|l| compiled.mapper.map(l.as_bytes()).unwrap().id().to_owned())
        .collect();

    let mut process = Process::run(&config, env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = process.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after 60 s:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}:\n{}", process.log());
    (ids, binary, structured)
}

fn text<'a>(span: &'a Value, attribute: &str) -> &'a str {
    span["attributes"][attribute]
        .as_str()
        .unwrap_or_else(|| panic!("no {attribute} in {span}"))
}

fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

/// Checks the spans against the documents and the requests the receivers saw.
fn check(
    spans: &[Value],
    docs: &[Doc],
    ids: &[String],
    binary: &http::Receiver,
    structured: &http::Receiver,
    service: &str,
) {
    for span in spans {
        assert_eq!(span["service"], service, "{span}");
    }
    let children = |parent: &Value, name: &str| -> Vec<Value> {
        let mut found: Vec<Value> = spans
            .iter()
            .filter(|s| s["name"] == name && s["parentSpanId"] == parent["spanId"])
            .inspect(|s| assert_eq!(s["traceId"], parent["traceId"], "{s}"))
            .cloned()
            .collect();
        found.sort_by_key(|s| s["attributes"]["event_exporter.attempt"].as_i64());
        found
    };
    // Requests by event id: binary mode says it in a header, structured in the body.
    let mut binary_requests: HashMap<String, Vec<http::Recorded>> = HashMap::new();
    for r in binary.requests() {
        let id = r.header("ce-id").unwrap().to_owned();
        binary_requests.entry(id).or_default().push(r);
    }
    let mut structured_requests: HashMap<String, Vec<http::Recorded>> = HashMap::new();
    for r in structured.requests() {
        let id = r.json()["id"].as_str().unwrap().to_owned();
        structured_requests.entry(id).or_default().push(r);
    }
    let process: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "event_exporter.process_event")
        .collect();
    assert_eq!(process.len(), docs.len(), "one process_event per document");
    let mut retries = 0;
    for (doc, id) in docs.iter().zip(ids) {
        let found: Vec<&&Value> = process
            .iter()
            .filter(|s| text(s, "cloudevents.event_id") == id)
            .collect();
        assert_eq!(found.len(), 1, "process_event of {id}");
        let event = *found[0];
        let trace_id = event["traceId"].as_str().unwrap();
        assert_eq!(event["parentSpanId"], "", "a root span: {event}");
        assert_eq!(event["kind"], "SPAN_KIND_CONSUMER");
        assert_eq!(event["attributes"]["event_exporter.receivers"], 2);
        assert_eq!(event["attributes"]["event_exporter.outcome"], "delivered");
        // The creation context the event carries out (ce-traceparent, and
        // the attribute in structured mode).
        let created = match &doc.trace {
            Some((trace, platform_connector)) => {
                assert_eq!(trace_id, trace, "process_event joins the document's trace");
                assert_eq!(
                    event["links"],
                    json!([{"traceId": trace, "spanId": platform_connector}]),
                    "a link to the platform connector's span"
                );
                traceparent(trace, platform_connector)
            }
            None => {
                assert_eq!(event["links"], json!([]));
                // A new trace: the event carries process_event's context.
                traceparent(trace_id, event["spanId"].as_str().unwrap())
            }
        };
        let publishes = children(event, "event_exporter.publish_with_retry");
        let by_receiver: BTreeMap<&str, &Value> = publishes
            .iter()
            .map(|p| (text(p, "event_exporter.receiver"), p))
            .collect();
        assert_eq!(
            by_receiver.keys().copied().collect::<Vec<_>>(),
            ["binary", "structured"],
            "one publish_with_retry per receiver of {id}"
        );
        for (receiver, publish) in by_receiver {
            assert_eq!(publish["attributes"]["event_exporter.outcome"], "delivered");
            let attempts = children(publish, "event_exporter.publish");
            assert_eq!(
                publish["attributes"]["event_exporter.attempts"],
                attempts.len(),
                "{publish}"
            );
            for (n, attempt) in attempts.iter().enumerate() {
                assert_eq!(attempt["attributes"]["event_exporter.attempt"], n + 1);
                assert_eq!(attempt["attributes"]["event_exporter.receiver"], receiver);
                assert_eq!(attempt["kind"], "SPAN_KIND_CLIENT");
                let last = n + 1 == attempts.len();
                let outcome = if last { "delivered" } else { "retry" };
                assert_eq!(attempt["attributes"]["event_exporter.outcome"], outcome);
            }
            retries += attempts.len() - 1;
            // Each request carried its attempt's span as `traceparent`.
            let requests = match receiver {
                "binary" => &binary_requests[id],
                _ => &structured_requests[id],
            };
            let sent: Vec<&str> = requests
                .iter()
                .map(|r| r.header("traceparent").expect("a traceparent header"))
                .collect();
            let want: Vec<String> = attempts
                .iter()
                .map(|a| traceparent(trace_id, a["spanId"].as_str().unwrap()))
                .collect();
            assert_eq!(sent, want, "{receiver} requests of {id}");
            for r in requests {
                match receiver {
                    "binary" => assert_eq!(r.header("ce-traceparent"), Some(created.as_str())),
                    _ => assert_eq!(r.json()["traceparent"], created),
                }
            }
        }
    }
    assert_eq!(retries, 1, "the structured receiver's one refusal");
    let traces: Vec<&Value> = process.iter().map(|s| &s["traceId"]).collect();
    for span in spans {
        assert!(
            traces.contains(&&span["traceId"]),
            "a span outside the events' traces: {span}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_otlp_http_join_the_platform_connectors_trace() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path().join("spans.jsonl"));
    let docs = documents();
    // What NVSentinel's chart sets from global.tracing (host:port, insecure),
    // the protocol and headers; the YAML's header wins over the variable's.
    let endpoint = format!("127.0.0.1:{}", collector.ports[0]);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-tenant=nvsentinel,authorization=from-env",
        ),
        ("OTEL_SERVICE_NAME", "event-exporter"),
    ];
    let tracing = "{enabled: true, headers: {authorization: Bearer from-yaml}}";
    let (ids, binary, structured) = export(dir.path(), &docs, tracing, &env).await;
    let spans = collector.records();
    check(&spans, &docs, &ids, &binary, &structured, "event-exporter");
    for span in &spans {
        assert_eq!(span["transport"], "http");
        assert_eq!(span["path"], "/v1/traces");
        assert_eq!(span["headers"]["content-type"], "application/x-protobuf");
        assert_eq!(span["headers"]["x-tenant"], "nvsentinel");
        assert_eq!(span["headers"]["authorization"], "Bearer from-yaml");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_otlp_grpc_as_the_yaml_says() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path().join("spans.jsonl"));
    let docs = documents();
    // The YAML wins over every variable here: they point at nothing.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "from-env"),
    ];
    let tracing = support::yaml(
        "{enabled: true, protocol: grpc, endpoint: \"127.0.0.1:$collector\", insecure: true, \
         serviceName: switchyard-test, headers: {x-api-key: k3y}}",
        &[("collector", &collector.ports[1])],
    );
    let (ids, binary, structured) = export(dir.path(), &docs, &tracing, &env).await;
    let spans = collector.records();
    check(&spans, &docs, &ids, &binary, &structured, "switchyard-test");
    for span in &spans {
        assert_eq!(span["transport"], "grpc");
        assert_eq!(span["headers"]["x-api-key"], "k3y");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_off_sends_the_documents_context_on_and_exports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path().join("spans.jsonl"));
    let docs = documents();
    let endpoint = format!("http://127.0.0.1:{}", collector.ports[0]);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ];
    let (ids, binary, structured) = export(dir.path(), &docs, "{enabled: false}", &env).await;
    assert_eq!(
        collector.records(),
        Vec::<Value>::new(),
        "no spans when off"
    );
    assert_eq!(structured.count(), docs.len() + 1, "one retry");
    for (doc, id) in docs.iter().zip(&ids) {
        let b: Vec<_> = binary
            .requests()
            .into_iter()
            .filter(|r| r.header("ce-id") == Some(id))
            .collect();
        let s: Vec<_> = structured
            .requests()
            .into_iter()
            .filter(|r| r.json()["id"] == *id)
            .collect();
        assert_eq!(b.len(), 1, "{id}");
        assert!(!s.is_empty(), "{id}");
        let want = doc.trace.as_ref().map(|(t, s)| traceparent(t, s));
        // The platform connector's context, as the extension and the hop
        // header alike: Switchyard made no span of its own.
        assert_eq!(b[0].header("ce-traceparent").map(str::to_owned), want);
        assert_eq!(b[0].header("traceparent").map(str::to_owned), want);
        for r in &s {
            assert_eq!(r.json()["traceparent"].as_str().map(str::to_owned), want);
            assert_eq!(r.header("traceparent").map(str::to_owned), want);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mongodb_backfill_has_its_span() {
    const N: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let collector = collector(dir.path().join("spans.jsonl"));
    let uri = support::mongo::shared_uri().await;
    let db = support::mongo::unique_db("tracing");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let events = client
        .database(&db)
        .collection::<mongodb::bson::Document>("HealthEvents");
    let mut docs = support::mongo::fresh_documents(N, chrono::Utc::now());
    let (trace_id, span_id) = ("7ace0000000000000000000000000b0f", "0c00000000000b0f");
    let he = docs[0].get_document_mut("healthevent").unwrap();
    he.get_document_mut("metadata")
        .unwrap()
        .insert("trace_id", trace_id);
    docs[0]
        .get_document_mut("healtheventstatus")
        .unwrap()
        .insert(
            "spanids",
            mongodb::bson::doc! {"platform-connector": span_id},
        );
    events.insert_many(&docs).await.unwrap();
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: test}\n\
             source:\n  mongodb:\n    uri: \"$uri\"\n    database: $db\n    resumeTokens: {database: $db}\n\
             \x20   backfill: {enabled: true, maxAge: 1h}\n\
             state: {dir: $state, flushInterval: 100ms}\n\
             telemetry: {tracing: {enabled: true, protocol: http/protobuf, endpoint: \"http://127.0.0.1:$port\"}}\n\
             route: {match: [{receiver: out}]}\n\
             receivers: [{name: out, file: {path: $out}}]\n", &[("uri", &uri), ("db", &db), ("state", &dir.path().join("state").display()), ("port", &collector.ports[0]), ("out", &out.display())],
        ),
    )
    .unwrap();
    let mut process = Process::run(&config, &[]);
    support::wait_json_lines(&out, N, &process, Duration::from_secs(60)).await;
    process
        .wait_for("backfill done", Duration::from_secs(30))
        .await;
    assert!(process.terminate().success(), "{}", process.log());
    let spans = collector.records();
    let backfill: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "event_exporter.backfill")
        .collect();
    assert_eq!(backfill.len(), 1, "{spans:?}");
    assert_eq!(
        backfill[0]["attributes"]["event_exporter.backfill.status"],
        "succeeded"
    );
    assert_eq!(
        backfill[0]["attributes"]["event_exporter.backfill.events_processed"],
        N
    );
    let process_events: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "event_exporter.process_event")
        .collect();
    assert_eq!(process_events.len(), N);
    let joined: Vec<&&Value> = process_events
        .iter()
        .filter(|s| s["traceId"] == trace_id)
        .collect();
    assert_eq!(joined.len(), 1, "the traced document joins its trace");
    assert_eq!(
        joined[0]["links"],
        json!([{"traceId": trace_id, "spanId": span_id}])
    );
}
