//! One JSON POST over `wasi:http/outgoing-handler` (wasi 0.2), blocking.

use std::io::{Read, Write};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::config::Endpoint;

/// At most this much of a response body is read.
const BODY_LIMIT: u64 = 64 * 1024;

/// What came back.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The start of the body (up to 64 KiB).
    pub body: Vec<u8>,
}

/// Why there is no response.
#[derive(Debug)]
pub enum SendError {
    /// The host refused the request (`HttpRequestDenied`: a host outside
    /// the plugin's `allowedHosts`).
    Denied,
    /// The request itself is wrong; sending it again will not help.
    Invalid(String),
    /// The network or the server failed; worth another try.
    Transport(String),
}

/// POSTs `body` as `application/json` to `endpoint`. `timeout_ns` bounds
/// connecting, the first response byte and each pause between bytes.
pub fn post_json(endpoint: &Endpoint, body: &[u8], timeout_ns: u64) -> Result<Response, SendError> {
    let headers = Fields::from_list(&[
        ("content-type".to_owned(), b"application/json".to_vec()),
        (
            "content-length".to_owned(),
            body.len().to_string().into_bytes(),
        ),
        ("accept".to_owned(), b"application/json".to_vec()),
        (
            "user-agent".to_owned(),
            concat!("switchyard-pagerduty/", env!("CARGO_PKG_VERSION"))
                .as_bytes()
                .to_vec(),
        ),
    ])
    .map_err(|e| SendError::Invalid(format!("headers: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    let invalid = |what: &str| SendError::Invalid(format!("the host does not accept the {what}"));
    request
        .set_method(&Method::Post)
        .map_err(|()| invalid("method"))?;
    let scheme = if endpoint.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&endpoint.authority))
        .map_err(|()| invalid("endpoint host"))?;
    request
        .set_path_with_query(Some(&endpoint.path_with_query))
        .map_err(|()| invalid("endpoint path"))?;

    let options = RequestOptions::new();
    // A host that does not support a timeout says so; its own limits apply.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));

    let outgoing = request.body().map_err(|()| invalid("body"))?;
    // Send first, then write: the body streams to the server.
    let pending = outgoing_handler::handle(request, Some(options)).map_err(error)?;
    // A failed write or finish is not final: a refused or failed request
    // fails the body stream too, and the response below says why; and once
    // there is an answer, the server read what it needed.
    if write_body(&outgoing, body).is_ok() {
        let _ = OutgoingBody::finish(outgoing, None);
    } else {
        // Unfinished: the request fails rather than sending a cut body.
        drop(outgoing);
    }

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error(code)),
        Some(Err(())) => {
            return Err(SendError::Transport(
                "the response was taken already".into(),
            ));
        }
        None => return Err(SendError::Transport("no response after waiting".into())),
    };
    drop(pending);

    let status = response.status();
    let retry_after = {
        let headers = response.headers();
        let values = headers.get("retry-after");
        values
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let mut excerpt = Vec::new();
    if let Ok(incoming) = response.consume() {
        if let Ok(stream) = incoming.stream() {
            // A body that fails half-way still leaves the status to act on.
            let _ = stream.take(BODY_LIMIT).read_to_end(&mut excerpt);
        }
        // The stream is gone; finishing the body drops it.
        drop(IncomingBody::finish(incoming));
    }
    Ok(Response {
        status,
        retry_after,
        body: excerpt,
    })
}

fn write_body(outgoing: &OutgoingBody, body: &[u8]) -> Result<(), String> {
    let mut stream = outgoing
        .write()
        .map_err(|()| "the body stream was taken already".to_owned())?;
    stream
        .write_all(body)
        .map_err(|e| format!("writing the body: {e}"))?;
    match stream.blocking_flush() {
        // Closed after the whole body went out: nothing left to flush.
        Ok(()) | Err(StreamError::Closed) => Ok(()),
        Err(StreamError::LastOperationFailed(e)) => {
            Err(format!("writing the body: {}", e.to_debug_string()))
        }
    }
}

fn error(code: ErrorCode) -> SendError {
    match code {
        ErrorCode::HttpRequestDenied => SendError::Denied,
        ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestBodySize(_) => SendError::Invalid(describe(&code)),
        other => SendError::Transport(describe(&other)),
    }
}

/// `ErrorCode::ConnectionRefused` → `connection refused`.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsError(e) => format!(
            "DNS error{}{}",
            e.rcode
                .as_deref()
                .map(|r| format!(" {r}"))
                .unwrap_or_default(),
            e.info_code
                .map(|c| format!(" (info code {c})"))
                .unwrap_or_default()
        ),
        ErrorCode::InternalError(Some(message)) => format!("internal error: {message}"),
        ErrorCode::TlsAlertReceived(alert) => format!(
            "TLS alert received{}",
            alert
                .alert_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        other => {
            let debug = format!("{other:?}");
            let name = debug.trim_start_matches("ErrorCode::");
            let name = name.split('(').next().unwrap_or(name);
            let mut words = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    words.push(' ');
                }
                words.push(c.to_ascii_lowercase());
            }
            words
        }
    }
}
