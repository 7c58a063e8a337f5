//! Real HTTP servers on 127.0.0.1:0 for receiver tests: a recording
//! receiver with a scripted answer per request, and an OAuth2 token endpoint
//! implementing the client credentials grant.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// A request the receiver saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Decides the answer to request number `n` (from 0).
pub type Responder = Arc<dyn Fn(usize, &Recorded) -> Reply + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    count: Arc<AtomicUsize>,
    responder: Responder,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Receiver {
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests answered 2xx (recorded with their reply status).
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    };
    let n = state.count.fetch_add(1, Ordering::SeqCst);
    let reply = (state.responder)(n, &recorded);
    state.requests.lock().unwrap().push(recorded);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = StatusCode::from_u16(reply.status).unwrap().into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

pub fn router(responder: Responder) -> (axum::Router, Arc<Mutex<Vec<Recorded>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let state = ReceiverState {
        requests: requests.clone(),
        count: Arc::new(AtomicUsize::new(0)),
        responder,
    };
    (
        axum::Router::new().fallback(receive).with_state(state),
        requests,
    )
}

/// Starts a plain-HTTP receiver.
pub async fn receiver(responder: Responder) -> Receiver {
    let (app, requests) = router(responder);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { addr, requests }
}

/// Answers every request with `status`.
pub fn always(status: u16) -> Responder {
    Arc::new(move |_, _| Reply::status(status))
}

/// The client credentials a token endpoint accepts.
pub const CLIENT_ID: &str = "switchyard";
pub const CLIENT_SECRET: &str = "s3cr3t-client-secret";

/// A token endpoint: `POST /token` with HTTP Basic client authentication and
/// `grant_type=client_credentials`; answers `tok-N` valid `lifetime` seconds,
/// after `delay`; the first `fail_first` requests get a 503.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct TokenState {
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<String>>>,
    lifetime: u64,
    delay: Duration,
    fail_first: usize,
}

async fn token(State(s): State<TokenState>, headers: HeaderMap, body: String) -> Response {
    use base64::Engine;
    let n = s.requests.fetch_add(1, Ordering::SeqCst);
    s.bodies.lock().unwrap().push(body.clone());
    tokio::time::sleep(s.delay).await;
    if n < s.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if !body.contains("grant_type=client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({
        "access_token": format!("tok-{n}"),
        "token_type": "bearer",
        "expires_in": s.lifetime,
    }))
    .into_response()
}

/// The token endpoint as a router (to serve over plain HTTP or TLS), with
/// its request counter and the request bodies.
pub fn token_router(
    lifetime: u64,
    delay: Duration,
    fail_first: usize,
) -> (axum::Router, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let state = TokenState {
        requests: requests.clone(),
        bodies: bodies.clone(),
        lifetime,
        delay,
        fail_first,
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .with_state(state);
    (app, requests, bodies)
}

pub async fn token_server(lifetime: u64, delay: Duration, fail_first: usize) -> TokenServer {
    let (app, requests, bodies) = token_router(lifetime, delay, fail_first);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TokenServer {
        addr,
        requests,
        bodies,
    }
}
