//! `source.http` end to end: the real `switchyard` binary receives
//! CloudEvents from real HTTP clients (reqwest, the Python SDK), journals
//! them, and delivers them to real receivers — also after a SIGKILL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support;

use support::process::Process;

const TOKEN: &str = "tok-3f9a1c7e55d2";
const LONG: Duration = Duration::from_secs(60);

/// A switchyard config directory: `source.http` on a free port, state in
/// the directory, the receivers given.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new(http_extra: &str, receivers: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let yaml = support::yaml(
            "source:\n  http:\n    listen: 127.0.0.1:$port\n$http_extra\n\
             state: {dir: $state, flushInterval: 100ms}\n\
             shutdownTimeout: 2s\n\
             route: {match: [{receiver: out}]}\n\
             receivers:\n$receivers",
            &[
                ("port", &port),
                ("http_extra", &http_extra),
                ("state", &dir.path().join("state").display()),
                (
                    "receivers",
                    &receivers.replace("@DIR@", &dir.path().display().to_string()),
                ),
            ],
        );
        std::fs::write(dir.path().join("switchyard.yaml"), yaml).unwrap();
        Self { dir, port }
    }

    async fn start(&self, env: &[(&str, &str)]) -> Process {
        let p = Process::run(&self.dir.path().join("switchyard.yaml"), env);
        p.wait_for("source.http accepting CloudEvents", LONG).await;
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "test://source-http",
        "type": "com.example.test",
        "datacontenttype": "application/json",
        "data": {"n": id},
    })
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn batch(client: &reqwest::Client, url: &str, ids: &[String]) -> reqwest::Response {
    let events: Vec<Value> = ids.iter().map(|id| event(id)).collect();
    post(
        client,
        url,
        "application/cloudevents-batch+json",
        serde_json::to_vec(&events).unwrap(),
    )
    .await
}

/// Waits until `path` holds `n` JSON lines; returns them.
async fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} events in {}",
            lines.len(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn journal_segments(setup: &Setup) -> usize {
    std::fs::read_dir(setup.path("state/http-journal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".jsonl")
        })
        .count()
}

const FILE_RECEIVER: &str = "  - name: out\n    file: {path: @DIR@/out.jsonl}\n";

fn bearer() -> String {
    "    auth: {bearerTokens: [\"${TOKEN_A}\", other-token]}\n".to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_binary_and_batch_events_are_delivered_and_the_journal_is_trimmed() {
    let extra = format!("{}    segmentBytes: 4KiB\n", bearer());
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let client = reqwest::Client::new();
    let url = setup.url();

    let r = post(
        &client,
        &url,
        "application/cloudevents+json",
        serde_json::to_vec_pretty(&event("s-1")).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    let r = client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("ce-specversion", "1.0")
        .header("ce-id", "b-1")
        .header("ce-source", "test://source-http")
        .header("ce-type", "com.example.test")
        .header("ce-subject", "gpu%200")
        .header("ce-region", "eu")
        .header("content-type", "application/json")
        .body(r#"{"temperature": 91}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    // Enough batches to fill several 4 KiB segments.
    let mut sent: BTreeSet<String> = ["s-1".to_owned(), "b-1".to_owned()].into();
    for b in 0..30 {
        let ids: Vec<String> = (0..10).map(|i| format!("batch-{b}-{i}")).collect();
        sent.extend(ids.iter().cloned());
        let r = batch(&client, &url, &ids).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }

    let events = wait_lines(&setup.path("out.jsonl"), sent.len()).await;
    let got: BTreeSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, sent);
    assert_eq!(events.len(), sent.len(), "each event once");
    let binary = events.iter().find(|e| e["id"] == "b-1").unwrap();
    assert_eq!(binary["data"]["temperature"], 91);
    assert_eq!(binary["subject"], "gpu 0", "percent-decoded");
    assert_eq!(binary["region"], "eu", "extensions kept");
    let structured = events.iter().find(|e| e["id"] == "s-1").unwrap();
    assert_eq!(structured["data"]["n"], "s-1");

    // Finished and persisted: the segments behind the position go.
    let deadline = Instant::now() + LONG;
    while journal_segments(&setup) > 1 {
        assert!(Instant::now() < deadline, "old journal segments kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sy.terminate().success());
    assert!(!sy.log().contains(TOKEN), "a token never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_reason() {
    let extra = format!("{}    maxBodyBytes: 2KiB\n", bearer());
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let client = reqwest::Client::new();
    let url = setup.url();
    let structured = "application/cloudevents+json";

    let r = post(&client, &url, structured, "{\"specversion\": \"1.0\",").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().starts_with("the body is not JSON"));

    let mut missing = event("m-1");
    missing.as_object_mut().unwrap().remove("source");
    let r = post(&client, &url, structured, missing.to_string()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "not a valid CloudEvent: source: missing (required)"
    );
    let mut bytes = event("b64-1");
    bytes.as_object_mut().unwrap().remove("data");
    bytes["data_base64"] = json!("!not-base64");
    let r = post(&client, &url, structured, bytes.to_string()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "not a valid CloudEvent: data_base64: not base64 (invalid symbol '!' at offset 0)"
    );

    // One bad event rejects its whole batch.
    let bad_batch =
        json!([event("x-1"), event("x-2"), {"specversion": "1.0", "id": "x-3", "source": "s"}]);
    let r = post(
        &client,
        &url,
        "application/cloudevents-batch+json",
        bad_batch.to_string(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "batch event 2 (from 0): not a valid CloudEvent: type: missing (required)"
    );

    let mut big = event("big");
    big["data"] = json!("x".repeat(4096));
    let r = post(&client, &url, structured, big.to_string()).await;
    assert_eq!(r.status(), 413);
    // Without a Content-Length (chunked): counted while read.
    assert_eq!(chunked_status(setup.port, 4).await, "HTTP/1.1 413");
    assert_eq!(
        chunked_status(setup.port, 1).await,
        "HTTP/1.1 400",
        "small enough"
    );

    for auth in [None, Some("Bearer wrong-token"), Some("Basic dXNlcjpwYXNz")] {
        let mut req = client
            .post(&url)
            .header("content-type", structured)
            .body(event("a-1").to_string());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // The second configured token works too; GET is not an upload.
    let r = client
        .post(&url)
        .bearer_auth("other-token")
        .header("content-type", structured)
        .body(event("ok-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 405);

    wait_lines(&setup.path("out.jsonl"), 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = wait_lines(&setup.path("out.jsonl"), 1).await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ok-1"], "nothing of a refused request is delivered");
    assert!(sy.terminate().success());
    assert!(!sy.log().contains("wrong-token"));
}

/// POSTs `kib` KiB of spaces in chunked encoding; the status line's start.
async fn chunked_status(port: u16, kib: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/cloudevents+json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..kib {
        let _ = stream.write_all(b"400\r\n").await;
        let _ = stream.write_all(&[b' '; 1024]).await;
        let _ = stream.write_all(b"\r\n").await;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0; 12];
    stream.read_exact(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// An `http` receiver nobody listens on yet (retried for ever).
fn down_receiver(port: u16) -> String {
    support::yaml(
        "  - name: out\n    http: {endpoint: \"http://127.0.0.1:$port/events\", mode: batch, timeout: 2s}\n    retry: {initialBackoff: 100ms, maxBackoff: 300ms}\n",
        &[("port", &port)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_answers_503_with_retry_after() {
    let extra = format!("{}    maxQueuedEvents: 20\n", bearer());
    let setup = Setup::new(&extra, &down_receiver(support::free_port()));
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let client = reqwest::Client::new();
    let url = setup.url();

    let ids: Vec<String> = (0..15).map(|i| format!("q-{i}")).collect();
    assert_eq!(batch(&client, &url, &ids).await.status(), 202);
    let ids: Vec<String> = (15..20).map(|i| format!("q-{i}")).collect();
    assert_eq!(batch(&client, &url, &ids).await.status(), 202);
    // Nothing finishes while the receiver is down: the 21st waits.
    let r = post(
        &client,
        &url,
        "application/cloudevents+json",
        event("q-20").to_string(),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // A graceful stop with events waiting; after a restart they are still
    // counted (read back from the journal), so the 21st still waits.
    assert!(sy.terminate().success());
    let _sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let r = post(
        &client,
        &url,
        "application/cloudevents+json",
        event("q-20").to_string(),
    )
    .await;
    assert_eq!(r.status(), 503, "the backlog survives a restart");
}

/// Serves `app` on a given port (the one the receiver config names).
async fn serve_on(port: u16, app: axum::Router) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_survive_sigkill() {
    let receiver_port = support::free_port();
    let extra = format!("{}    segmentBytes: 8KiB\n", bearer());
    let setup = Setup::new(&extra, &down_receiver(receiver_port));
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let client = reqwest::Client::new();
    let url = setup.url();

    // Concurrent senders: group commit shares the fsyncs between them.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for b in 0..10 {
                let ids: Vec<String> = (0..5).map(|i| format!("k-{t}-{b}-{i}")).collect();
                let r = batch(&client, &url, &ids).await;
                assert_eq!(r.status(), 202);
                accepted.extend(ids);
            }
            accepted
        }));
    }
    let mut accepted = BTreeSet::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    assert_eq!(accepted.len(), 400);
    sy.kill();

    let (app, requests) = support::http::router(support::http::always(200));
    serve_on(receiver_port, app).await;
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let deadline = Instant::now() + LONG;
    let delivered = loop {
        let ids: Vec<String> = requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.json().as_array().unwrap().clone())
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() >= accepted.len() {
            break ids;
        }
        assert!(Instant::now() < deadline, "{} of 400 delivered", ids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered.len(), 400, "every accepted event once");
    assert_eq!(delivered.into_iter().collect::<BTreeSet<_>>(), accepted);
    assert!(
        sy.log().contains("resuming accepted events"),
        "{}",
        sy.log()
    );
    assert!(sy.terminate().success());
}

#[derive(Clone)]
struct Introspection {
    calls: Arc<AtomicUsize>,
}

/// RFC 7662: `good` is active with the scope, `narrow` active without it,
/// anything else inactive; the caller must authenticate as `rs`.
async fn introspect(
    State(s): State<Introspection>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    use base64::Engine;
    s.calls.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("rs:rs-secret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (axum::http::StatusCode::UNAUTHORIZED, "bad client").into_response();
    }
    let token = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    let answer = match token {
        "good" => json!({"active": true, "scope": "read events:write", "client_id": "sender"}),
        "narrow" => json!({"active": true, "scope": "read"}),
        _ => json!({"active": false}),
    };
    axum::Json(answer).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_tokens_are_introspected_and_cached() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/introspect", axum::routing::post(introspect))
        .with_state(Introspection {
            calls: calls.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let extra = support::yaml(
        "    auth:\n      oauth2:\n        introspectionUrl: http://$addr/introspect\n        clientId: rs\n        clientSecret: ${RS_SECRET}\n        requiredScopes: [events:write]\n        cacheFor: 1m\n",
        &[("addr", &addr)],
    );
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("RS_SECRET", "rs-secret")]).await;
    let client = reqwest::Client::new();
    let send = |token: &'static str, id: &'static str| {
        let (client, url) = (client.clone(), setup.url());
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/cloudevents+json")
                .body(event(id).to_string())
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(send("good", "o-1").await.status(), 202);
    assert_eq!(send("good", "o-2").await.status(), 202);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the answer is cached");
    let r = send("expired", "o-3").await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let r = send("narrow", "o-4").await;
    assert_eq!(r.status(), 403, "a token without the required scope");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let ids: Vec<String> = wait_lines(&setup.path("out.jsonl"), 2)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["o-1", "o-2"]);
    assert!(sy.terminate().success());
    assert!(!sy.log().contains("rs-secret"));
}

/// The official Python SDK (PyPI `cloudevents`) as the sender.
const PY_SENDER: &str = r#"
import sys, urllib.request
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

url, token = sys.argv[1], sys.argv[2]
def send(headers, body):
    headers = dict(headers, Authorization="Bearer " + token)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req) as r:
        print(r.status)

attrs = {"type": "com.example.python", "source": "test://python", "id": "py-structured"}
send(*to_structured(CloudEvent(attrs, {"sdk": "python", "mode": "structured"})))
attrs = {"type": "com.example.python", "source": "test://python", "id": "py-binary", "subject": "a b/c",
         "datacontenttype": "application/json"}
send(*to_binary(CloudEvent(attrs, {"sdk": "python", "mode": "binary"})))
attrs = {"type": "com.example.python", "source": "test://python", "id": "py-bytes", "datacontenttype": "application/octet-stream"}
send(*to_binary(CloudEvent(attrs, b"\x00\x01\xff")))
"#;

fn python_path() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/py-cloudevents"))
        .current_dir(root)
        .output()
        .expect("runs scripts/py-cloudevents");
    assert!(out.status.success(), "scripts/py-cloudevents failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sends_structured_and_binary_events() {
    let setup = Setup::new(&bearer(), FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let out = Command::new("python3")
        .args(["-c", PY_SENDER, &setup.url(), TOKEN])
        .env("PYTHONPATH", python_path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "202\n202\n202\n");

    let events = wait_lines(&setup.path("out.jsonl"), 3).await;
    let by_id = |id: &str| events.iter().find(|e| e["id"] == id).unwrap().clone();
    let s = by_id("py-structured");
    assert_eq!(s["data"], json!({"sdk": "python", "mode": "structured"}));
    assert_eq!(s["type"], "com.example.python");
    assert!(s["time"].is_string(), "the SDK's time attribute is kept");
    let b = by_id("py-binary");
    assert_eq!(b["datacontenttype"], "application/json");
    assert_eq!(b["data"], json!({"sdk": "python", "mode": "binary"}));
    assert_eq!(b["subject"], "a b/c");
    let bytes = by_id("py-bytes");
    assert_eq!(bytes["data_base64"], "AAH/");
    assert!(sy.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener() {
    let pki = support::tls::Pki::new();
    let extra = support::yaml(
        "$bearer    headerReadTimeout: 300ms\n    tls: {certFile: $pki, keyFile: $pki2}\n",
        &[
            ("bearer", &bearer()),
            ("pki", &pki.server_cert.display()),
            ("pki2", &pki.server_key.display()),
        ],
    );
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/", setup.port);
    let r = post(
        &client,
        &url,
        "application/cloudevents+json",
        event("tls-1").to_string(),
    )
    .await;
    assert_eq!(r.status(), 202);
    let plain = reqwest::Client::new()
        .post(setup.url())
        .bearer_auth(TOKEN)
        .header("content-type", "application/cloudevents+json")
        .body(event("plain-1").to_string())
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP is not served"
    );
    let events = wait_lines(&setup.path("out.jsonl"), 1).await;
    assert_eq!(events[0]["id"], "tls-1");
    // A client that never finishes its handshake is closed.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", setup.port))
        .await
        .unwrap();
    let mut hello = tokio::net::TcpStream::connect(("127.0.0.1", setup.port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut hello, &[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    assert!(until_closed(&mut silent, CLOSED_WITHIN).await.is_some());
    assert!(until_closed(&mut hello, CLOSED_WITHIN).await.is_some());
    assert!(sy.terminate().success());
}

// Hostile clients: the listener's deadlines and its connection cap.

/// Generous: the deadlines under test are a few hundred milliseconds.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);

/// Reads until the server closes `stream` (end of stream or reset);
/// returns what it sent first, or `None` if still open after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request's head, with the token.
fn head(content_length: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/cloudevents+json\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

/// How a slow client stops: within the request line, within the headers,
/// or before sending anything.
async fn slow_client(port: u16, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let partial: &[u8] = match i % 3 {
        0 => b"POST / HT",
        1 => b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: appl",
        _ => b"",
    };
    s.write_all(partial).await.unwrap();
    s
}

async fn post_one(client: &reqwest::Client, url: &str, id: &str) -> reqwest::Response {
    post(
        client,
        url,
        "application/cloudevents+json",
        event(id).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed_after_the_header_timeout() {
    let extra = format!(
        "{}    headerReadTimeout: 300ms\n    idleTimeout: 1h\n",
        bearer()
    );
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let mut slow = Vec::new();
    for i in 0..300 {
        slow.push(slow_client(setup.port, i).await);
    }
    let closed =
        futures_util::future::join_all(slow.iter_mut().map(|s| until_closed(s, CLOSED_WITHIN)))
            .await;
    let open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "of 300 slow clients, {open} still open");
    assert!(
        closed.iter().all(|c| c.as_deref() == Some("")),
        "closed without an answer"
    );
    // Meanwhile and after, clients that send their request are served.
    let client = reqwest::Client::new();
    assert_eq!(
        post_one(&client, &setup.url(), "after-1").await.status(),
        202
    );
    assert!(sy.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is long: only the idle timeout can close it.
    let extra = format!(
        "{}    headerReadTimeout: 1h\n    idleTimeout: 300ms\n",
        bearer()
    );
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let mut s = TcpStream::connect(("127.0.0.1", setup.port)).await.unwrap();
    for id in ["ka-1", "ka-2"] {
        let body = event(id).to_string();
        s.write_all(format!("{}{body}", head(body.len())).as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !String::from_utf8_lossy(&answer).ends_with("accepted 1 events") {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 202"));
    }
    let rest = until_closed(&mut s, CLOSED_WITHIN).await;
    assert_eq!(
        rest.as_deref(),
        Some(""),
        "an idle kept-alive connection is closed"
    );
    assert_eq!(wait_lines(&setup.path("out.jsonl"), 2).await.len(), 2);
    assert!(sy.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_answered_408_and_closed() {
    let extra = format!(
        "{}    headerReadTimeout: 1h\n    idleTimeout: 1h\n    bodyTimeout: 300ms\n",
        bearer()
    );
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let body = event("slow-body").to_string();
    let mut s = TcpStream::connect(("127.0.0.1", setup.port)).await.unwrap();
    s.write_all(format!("{}{}", head(body.len()), &body[..10]).as_bytes())
        .await
        .unwrap();
    let answer = until_closed(&mut s, CLOSED_WITHIN)
        .await
        .expect("closed after the answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.ends_with("the body did not arrive within 300ms"),
        "{answer}"
    );
    // Nothing of it is delivered; a whole request after it is.
    let client = reqwest::Client::new();
    assert_eq!(post_one(&client, &setup.url(), "whole").await.status(), 202);
    let events = wait_lines(&setup.path("out.jsonl"), 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], "whole");
    assert!(sy.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_a_client_waits_for_a_slow_one_to_time_out_then_is_served() {
    let extra = format!(
        "{}    maxConnections: 20\n    headerReadTimeout: 2s\n    idleTimeout: 1h\n",
        bearer()
    );
    let setup = Setup::new(&extra, FILE_RECEIVER);
    let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
    let mut slow = Vec::new();
    for i in 0..20 {
        slow.push(slow_client(setup.port, i).await);
    }
    // The server took them all: they hold every slot.
    sy.wait_for("maxConnections reached", LONG).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = post_one(&client, &setup.url(), "legit-1").await;
    assert_eq!(r.status(), 202, "served once a slot is free");
    // It waited in the backlog: by its answer, a slow client was closed
    // to make room.
    let closed = slow.iter().filter(|s| closed_already(s)).count();
    assert!(closed >= 1, "served while the cap was held");
    // The legitimate client keeps being served on its connection.
    for i in 2..=5 {
        let id = format!("legit-{i}");
        assert_eq!(post_one(&client, &setup.url(), &id).await.status(), 202);
    }
    assert_eq!(wait_lines(&setup.path("out.jsonl"), 5).await.len(), 5);
    assert!(sy.terminate().success());
}

/// Whether the server has closed `s`, by what has arrived (no waiting:
/// the duplicate is non-blocking, as tokio made the socket).
fn closed_already(s: &TcpStream) -> bool {
    use std::os::fd::AsFd;
    let mut dup = std::net::TcpStream::from(s.as_fd().try_clone_to_owned().unwrap());
    match std::io::Read::read(&mut dup, &mut [0u8; 64]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// One sender posting single structured events, one at a time, for `for_`:
/// (events/s, each request's latency in order).
async fn steady_sender(url: &str, for_: Duration) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < for_ {
        let sent = Instant::now();
        let r = post_one(&client, url, &format!("f-{}", latencies.len())).await;
        assert_eq!(r.status(), 202);
        latencies.push(sent.elapsed());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (rate, latencies)
}

fn quantile(latencies: &[Duration], q: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Figures for docs/BENCHMARKS.md ("HTTP source under slow clients"); it
/// prints, asserts nothing about speed:
///
///   cargo test --test source_http -- --ignored --nocapture slow_client_figures
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures for docs/BENCHMARKS.md"]
async fn slow_client_figures() {
    // Below the cap: 800 slow clients, maxConnections 1024 (the default).
    for slow_n in [0, 800] {
        let setup = Setup::new(&bearer(), FILE_RECEIVER);
        let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
        let mut slow = Vec::new();
        for i in 0..slow_n {
            slow.push(slow_client(setup.port, i).await);
        }
        let (rate, l) = steady_sender(&setup.url(), Duration::from_secs(5)).await;
        println!(
            "{slow_n} slow clients, maxConnections 1024: {rate:.0} events/s, latency p50 {:?} p99 {:?} max {:?}",
            quantile(&l, 0.5),
            quantile(&l, 0.99),
            quantile(&l, 1.0)
        );
        drop(slow);
        assert!(sy.terminate().success());
    }
    // The cap held: the first request waits for slots to free.
    for slow_n in [100, 300] {
        let extra = format!(
            "{}    maxConnections: 100\n    headerReadTimeout: 2s\n",
            bearer()
        );
        let setup = Setup::new(&extra, FILE_RECEIVER);
        let mut sy = setup.start(&[("TOKEN_A", TOKEN)]).await;
        let mut slow = Vec::new();
        for i in 0..slow_n {
            slow.push(slow_client(setup.port, i).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (rate, l) = steady_sender(&setup.url(), Duration::from_secs(3)).await;
        println!(
            "{slow_n} slow clients, maxConnections 100, headerReadTimeout 2s: first request {:?} (opened 200ms after them), then {rate:.0} events/s over 3s, p50 {:?}",
            l[0],
            quantile(&l, 0.5)
        );
        drop(slow);
        assert!(sy.terminate().success());
    }
}
