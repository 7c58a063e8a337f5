//! The HTTP endpoint: authenticates, reads the body (413 past the limit,
//! 408 past `bodyTimeout`), decodes the CloudEvents (400), takes room in the backlog (503 when full),
//! journals the events and answers 202 once they are synced.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::auth::{Authenticator, Denied};
use super::decode::{DecodeError, decode};
use super::reader::Backlog;
use crate::journal::Append;

/// Seconds a sender is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "2";

#[derive(Clone)]
pub struct Endpoint {
    pub auth: Arc<Authenticator>,
    pub journal: mpsc::Sender<Append>,
    pub backlog: Arc<Backlog>,
    pub max_body: usize,
    pub body_timeout: Duration,
}

pub fn router(path: &str, endpoint: Endpoint) -> axum::Router {
    axum::Router::new()
        .route(path, axum::routing::post(receive))
        .with_state(endpoint)
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

fn busy(message: &str) -> Response {
    let mut r = answer(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut().insert(
        RETRY_AFTER,
        RETRY_AFTER_SECS.parse().expect("a header value"),
    );
    r
}

async fn receive(State(endpoint): State<Endpoint>, headers: HeaderMap, body: Body) -> Response {
    if let Err(denied) = endpoint.auth.check(&headers).await {
        return refuse(denied);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > endpoint.max_body as u64) {
        return too_large(endpoint.max_body);
    }
    let read = read_body(body, declared, endpoint.max_body);
    let bytes = match tokio::time::timeout(endpoint.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(refused)) => return refused,
        Err(_) => {
            debug!("request refused: the body did not arrive within bodyTimeout");
            let mut r = answer(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(endpoint.body_timeout)
                ),
            );
            r.headers_mut()
                .insert(CONNECTION, "close".parse().expect("a header value"));
            return r;
        }
    };
    let lines = match decode(&headers, &bytes) {
        Ok(lines) => lines,
        Err(e @ DecodeError::Invalid(_)) => {
            debug!(reason = %e, "request refused: not valid CloudEvents");
            return answer(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(e @ DecodeError::Unsupported(_)) => {
            return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
        }
    };
    let count = lines.count;
    if !endpoint.backlog.reserve(count) {
        return busy("too many events are queued; retry later");
    }
    let (done, stored) = oneshot::channel();
    let append = Append {
        bytes: lines.bytes,
        done,
    };
    let result = match endpoint.journal.send(append).await {
        Ok(()) => stored.await.unwrap_or_else(|_| Err("stopping".into())),
        Err(_) => Err("stopping".into()),
    };
    match result {
        Ok(()) => answer(StatusCode::ACCEPTED, format!("accepted {count} events")),
        Err(_) => {
            endpoint.backlog.release(count);
            busy("the events could not be stored; retry later")
        }
    }
}

fn too_large(max: usize) -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {max} bytes"),
    )
}

/// The whole body, or the answer refusing it.
async fn read_body(body: Body, declared: Option<u64>, max: usize) -> Result<Vec<u8>, Response> {
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(answer(
                StatusCode::BAD_REQUEST,
                "the body could not be read",
            ));
        };
        if bytes.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn refuse(denied: Denied) -> Response {
    let (status, challenge, message) = match denied {
        Denied::Missing => (
            StatusCode::UNAUTHORIZED,
            "Bearer",
            "a bearer token is required",
        ),
        Denied::Invalid => (
            StatusCode::UNAUTHORIZED,
            "Bearer error=\"invalid_token\"",
            "the bearer token is not valid",
        ),
        Denied::Scope => (
            StatusCode::FORBIDDEN,
            "Bearer error=\"insufficient_scope\"",
            "the bearer token lacks a required scope",
        ),
        Denied::Unavailable => return busy("the token cannot be checked now; retry later"),
    };
    let mut r = answer(status, message);
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, challenge.parse().expect("a header value"));
    r
}
