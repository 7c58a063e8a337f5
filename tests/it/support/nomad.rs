//! An in-process replica of Nomad's event stream (`GET /v1/event/stream`),
//! written from the API docs and the broker's documented behaviour, for
//! `source.nomad` tests (no Nomad agent can be installed here):
//!
//! - a bounded buffer of frames, one per Raft index (`{"Index", "Events"}`),
//!   several events per index;
//! - `index`: the stream starts *at* that index (inclusive); an index older
//!   than the buffer starts at the oldest buffered one, an index past the
//!   newest at the newest (as the broker's `StartAtClosest` does); 0 is the
//!   oldest;
//! - `topic=Topic:key` (repeated; a bare `Topic` is `Topic:*`; none is
//!   `*:*`; more than one `:` is a 400), keys matched exactly against `Key`
//!   or `FilterKeys`; `namespace` (default `default`, `*` all; events
//!   without a namespace always pass);
//! - ndjson, one frame per chunk (split in two to exercise line
//!   reassembly), a heartbeat `{}` at the start and every `heartbeat`;
//! - `X-Nomad-Token` (or `Authorization: Bearer`) checked, 403 `Permission
//!   denied` otherwise.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// The fixtures: one Nomad event per line, shaped like the API docs' samples.
pub const FIXTURES: &str = include_str!("../../testdata/nomad/events.jsonl");

/// A fixture event by its `Type` (the first one), with `Key` set.
pub fn fixture(ty: &str, key: &str) -> Value {
    let mut e: Value = FIXTURES
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["Type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} fixture"));
    e["Key"] = json!(key);
    e
}

#[derive(Clone)]
pub struct Options {
    /// Frames (indexes) kept; older ones are dropped.
    pub capacity: usize,
    pub token: Option<String>,
    pub heartbeat: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            capacity: 1000,
            token: None,
            heartbeat: Duration::from_millis(200),
        }
    }
}

struct Broker {
    frames: VecDeque<(u64, Vec<Value>)>,
    last_index: u64,
}

struct Shared {
    options: Options,
    broker: Mutex<Broker>,
    /// The newest index, watched by the streams.
    published: watch::Sender<u64>,
    /// Bumped to cut every open stream.
    generation: watch::Sender<u64>,
    requests: Mutex<Vec<String>>,
}

pub struct Nomad {
    pub addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
}

impl Nomad {
    /// Serves plain HTTP on 127.0.0.1:0.
    pub async fn start(options: Options) -> Self {
        let (shared, app) = Self::app(options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            scheme: "http",
            shared,
        }
    }

    /// Serves HTTPS with `pki`'s server certificate.
    pub async fn start_tls(
        options: Options,
        pki: &super::tls::Pki,
        client_auth: super::tls::ClientAuth,
    ) -> (Self, super::tls::TlsServer) {
        let (shared, app) = Self::app(options);
        let server = super::tls::serve(pki, app, client_auth).await;
        let nomad = Self {
            addr: server.addr,
            scheme: "https",
            shared,
        };
        (nomad, server)
    }

    fn app(options: Options) -> (Arc<Shared>, axum::Router) {
        let shared = Arc::new(Shared {
            options,
            broker: Mutex::new(Broker {
                frames: VecDeque::new(),
                last_index: 0,
            }),
            published: watch::channel(0).0,
            generation: watch::channel(0).0,
            requests: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/v1/event/stream", axum::routing::get(stream))
            .with_state(shared.clone());
        (shared, app)
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Publishes `events` at the next index (Raft indexes are not
    /// contiguous per topic: each publish skips one). Returns the index.
    pub fn publish(&self, events: Vec<Value>) -> u64 {
        let index = {
            let mut b = self.shared.broker.lock().unwrap();
            let index = b.last_index + 2;
            b.last_index = index;
            let events = events
                .into_iter()
                .map(|mut e| {
                    e["Index"] = json!(index);
                    e
                })
                .collect();
            b.frames.push_back((index, events));
            while b.frames.len() > self.shared.options.capacity {
                b.frames.pop_front();
            }
            index
        };
        self.shared.published.send_replace(index);
        index
    }

    /// Cuts every open stream (the server side closes the connection).
    pub fn drop_connections(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// The query string of every stream request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The `index` parameter of every stream request so far.
    pub fn requested_indexes(&self) -> Vec<u64> {
        self.requests()
            .iter()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "index")
                    .map_or(0, |(_, v)| v.parse().unwrap())
            })
            .collect()
    }

    /// Forgets everything, indexes included: a new cluster at the same
    /// address (a restarted `nomad agent -dev`).
    pub fn reset(&self) {
        let mut b = self.shared.broker.lock().unwrap();
        b.frames.clear();
        b.last_index = 0;
    }

    /// The oldest index still buffered.
    pub fn oldest(&self) -> Option<u64> {
        self.shared
            .broker
            .lock()
            .unwrap()
            .frames
            .front()
            .map(|f| f.0)
    }
}

struct Request {
    index: u64,
    namespace: String,
    topics: Vec<(String, String)>,
}

fn parse(query: &str) -> Result<Request, String> {
    let mut r = Request {
        index: 0,
        namespace: "default".into(),
        topics: Vec::new(),
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "index" => {
                r.index = v
                    .parse()
                    .map_err(|e| format!("Unable to parse index: {e}"))?
            }
            "namespace" if !v.is_empty() => r.namespace = v.into_owned(),
            "topic" => {
                let parts: Vec<&str> = v.split(':').collect();
                match parts[..] {
                    [topic] => r.topics.push((topic.into(), "*".into())),
                    [topic, key] => r.topics.push((topic.into(), key.into())),
                    _ => {
                        return Err(format!(
                            "Invalid topic query: error parsing topics: Invalid key value pair for topic, topic: {v}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if r.topics.is_empty() {
        r.topics.push(("*".into(), "*".into()));
    }
    Ok(r)
}

/// The subscription filter.
fn matches(r: &Request, e: &Value) -> bool {
    let ns = e["Namespace"].as_str().unwrap_or("");
    if r.namespace != "*" && !ns.is_empty() && ns != r.namespace {
        return false;
    }
    let topic = e["Topic"].as_str().unwrap_or("");
    r.topics
        .iter()
        .filter(|(t, _)| t == "*" || t == topic)
        .any(|(_, key)| {
            key == "*"
                || e["Key"].as_str() == Some(key)
                || e["FilterKeys"]
                    .as_array()
                    .is_some_and(|ks| ks.iter().any(|k| k.as_str() == Some(key)))
        })
}

async fn stream(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    shared.requests.lock().unwrap().push(query.clone());
    if let Some(token) = &shared.options.token {
        let given = headers
            .get("x-nomad-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_owned)
            });
        if given.as_deref() != Some(token.as_str()) {
            return (StatusCode::FORBIDDEN, "Permission denied").into_response();
        }
    }
    let request = match parse(&query) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(feed(shared, request, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(body))
        .unwrap()
}

/// Writes frames and heartbeats until the client goes or the connections
/// are cut.
async fn feed(shared: Arc<Shared>, r: Request, tx: mpsc::Sender<Bytes>) {
    let mut generation = shared.generation.subscribe();
    generation.borrow_and_update();
    let mut published = shared.published.subscribe();
    let heartbeat = Bytes::from_static(b"{}\n");
    if tx.send(heartbeat.clone()).await.is_err() {
        return;
    }
    // Where the stream starts (the broker's StartAtClosest).
    let mut next: Option<u64> = None;
    let mut ticker = tokio::time::interval(shared.options.heartbeat);
    ticker.tick().await;
    loop {
        // A cut connection sends nothing more, even if events came meanwhile.
        if generation.has_changed().unwrap_or(true) {
            return;
        }
        let frames: Vec<(u64, Vec<Value>)> = {
            let b = shared.broker.lock().unwrap();
            let from = match next {
                Some(n) => n,
                None if b.frames.is_empty() => u64::MAX,
                None if r.index == 0 => b.frames.front().unwrap().0,
                None => b
                    .frames
                    .iter()
                    .map(|f| f.0)
                    .find(|i| *i >= r.index)
                    .unwrap_or_else(|| b.frames.back().unwrap().0),
            };
            let out: Vec<_> = b.frames.iter().filter(|f| f.0 >= from).cloned().collect();
            if let Some(last) = out.last() {
                next = Some(last.0 + 1);
            } else if next.is_none() && from != u64::MAX {
                next = Some(from);
            }
            out
        };
        for (index, events) in frames {
            let events: Vec<Value> = events.into_iter().filter(|e| matches(&r, e)).collect();
            if events.is_empty() {
                continue;
            }
            let mut line = serde_json::to_vec(&json!({"Index": index, "Events": events})).unwrap();
            line.push(b'\n');
            let half = line.len() / 2;
            let second = line.split_off(half);
            for part in [line, second] {
                if tx.send(Bytes::from(part)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            biased;
            _ = generation.changed() => return,
            _ = published.changed() => {}
            _ = ticker.tick() => {
                if tx.send(heartbeat.clone()).await.is_err() {
                    return;
                }
            }
        }
    }
}
