//! `http`: CloudEvents over HTTP (the CloudEvents HTTP protocol binding) in
//! structured, binary or batch mode, with TLS options and OAuth2 client
//! credentials. Responses are classified by the shared policy in
//! [`super::status`].

pub mod config;
pub mod oauth2;

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use self::config::{HttpMode, HttpSpec};
use self::oauth2::TokenSource;
use super::{Delivery, Item, Sink, status};
use crate::BoxFuture;
use crate::config::common::Secret;
use crate::event::Event;

pub const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";
pub const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

/// What every HTTP-speaking receiver shares: the client (TLS), fixed
/// headers, the OAuth2 token source, and the one answer policy.
pub struct Transport {
    client: reqwest::Client,
    headers: HeaderMap,
    tokens: Option<Arc<TokenSource>>,
}

impl Transport {
    pub fn new(
        tls: &crate::config::common::TlsSpec,
        timeout: std::time::Duration,
        headers: &[(String, Secret)],
        oauth2: Option<&config::OAuth2Spec>,
    ) -> Result<Self, String> {
        let client = crate::net::http_client::build(tls, timeout, "http receiver")?;
        let tokens = match oauth2 {
            Some(o) => Some(Arc::new(TokenSource::new(o, timeout)?)),
            None => None,
        };
        Ok(Self {
            client,
            headers: header_map(headers)?,
            tokens,
        })
    }

    pub fn tokens(&self) -> Option<&Arc<TokenSource>> {
        self.tokens.as_ref()
    }

    /// One request; with OAuth2, a 401 fetches a new token and tries once
    /// more. Errors never include the URL (it may hold a secret).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Delivery {
        let mut retried_401 = false;
        loop {
            let token = match &self.tokens {
                Some(t) => match t.token().await {
                    Ok(token) => Some(token),
                    Err(e) => return Delivery::retry(e),
                },
                None => None,
            };
            let mut request = self
                .client
                .request(method.clone(), url)
                .headers(self.headers.clone())
                .headers(headers.clone());
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let response = match request.body(body.clone()).send().await {
                Ok(r) => r,
                Err(e) => return Delivery::retry(crate::net::http_client::describe(e)),
            };
            let code = response.status().as_u16();
            if code == 401
                && !retried_401
                && let (Some(tokens), Some(token)) = (&self.tokens, &token)
            {
                tokens.invalidate(token).await;
                retried_401 = true;
                continue;
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return status::classify(code, retry_after.as_deref());
        }
    }
}

pub struct HttpSink {
    endpoint: Secret,
    mode: HttpMode,
    transport: Transport,
}

impl HttpSink {
    pub fn new(spec: &HttpSpec) -> Result<Self, String> {
        Ok(Self {
            endpoint: spec.endpoint.clone(),
            mode: spec.mode,
            transport: Transport::new(
                &spec.tls,
                spec.timeout,
                &spec.headers,
                spec.oauth2.as_ref(),
            )?,
        })
    }

    async fn send(&self, headers: HeaderMap, body: Vec<u8>) -> Delivery {
        self.transport
            .send(reqwest::Method::POST, &self.endpoint.0, headers, body)
            .await
    }
}

fn header_map(headers: &[(String, Secret)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("header name {name:?}"))?;
        let value =
            HeaderValue::from_str(&value.0).map_err(|_| format!("value of header {name}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

impl HttpSink {
    /// Its OAuth2 token source, if it has one.
    pub fn tokens(&self) -> Option<&Arc<TokenSource>> {
        self.transport.tokens()
    }
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            match self.mode {
                HttpMode::Batch => {
                    let mut body = Vec::with_capacity(
                        items.iter().map(|i| i.json().len() + 1).sum::<usize>() + 2,
                    );
                    body.push(b'[');
                    for (n, item) in items.iter().enumerate() {
                        if n > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(item.json());
                    }
                    body.push(b']');
                    self.send(content_type(BATCH), body).await
                }
                HttpMode::Structured => {
                    for item in items {
                        let body = item.json().to_vec();
                        let mut headers = content_type(STRUCTURED);
                        trace_headers(&mut headers, item);
                        let result = self.send(headers, body).await;
                        if result != Delivery::Delivered {
                            return result;
                        }
                    }
                    Delivery::Delivered
                }
                HttpMode::Binary => {
                    for item in items {
                        let (mut headers, body) = binary(item.event());
                        trace_headers(&mut headers, item);
                        let result = self.send(headers, body).await;
                        if result != Delivery::Delivered {
                            return result;
                        }
                    }
                    Delivery::Delivered
                }
            }
        })
    }

    /// A batch is its events' JSON; one event's request also carries its
    /// trace context (structured) or attributes (binary).
    fn wants_event(&self) -> bool {
        self.mode != HttpMode::Batch
    }
}

/// The W3C `traceparent` (and `tracestate`) of a one-event request: the
/// delivery attempt's span, or the event's own context. In binary mode the
/// event's extension also goes as `ce-traceparent`, unchanged.
fn trace_headers(headers: &mut HeaderMap, item: &Item) {
    let Some((parent, state)) = super::binding::trace_context(item) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&parent) {
        headers.insert("traceparent", v);
    }
    if let Some(v) = state.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert("tracestate", v);
    }
}

fn content_type(value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(value));
    h
}

/// Binary mode: every attribute as a `ce-` header (percent-encoding what a
/// header cannot carry), the data as the body with its content type.
pub fn binary(event: &Event) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    if let Some(v) = super::binding::content_type(event).and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert(CONTENT_TYPE, v);
    }
    for (name, text) in super::binding::attributes(event) {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(format!("ce-{name}").as_bytes()),
            HeaderValue::from_str(&percent_encode(&text)),
        ) else {
            continue;
        };
        headers.insert(n, v);
    }
    (headers, super::binding::data(event))
}

/// The CloudEvents HTTP binding (3.1.3.2): header values are percent-encoded
/// outside U+0021–U+007E, and space, `%` and `"` themselves.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' && b != b'"' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Encoded;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn binary_mode_headers_and_body() {
        let event = EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("nvsentinel://c/healthevents")
            .subject("gpu nöde")
            .extension("tenant", "acme")
            .time("2026-10-01T00:00:00.65Z")
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        let (h, body) = binary(&event);
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(h["ce-id"], "1");
        assert_eq!(h["ce-type"], "t");
        assert_eq!(h["ce-source"], "nvsentinel://c/healthevents");
        assert_eq!(h["ce-subject"], "gpu%20n%C3%B6de");
        assert_eq!(h["ce-tenant"], "acme");
        // Go's RFC3339Nano form, as NVSentinel sends it.
        assert_eq!(h["ce-time"], "2026-10-01T00:00:00.65Z");
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(body, br#"{"a":1}"#);
    }

    #[test]
    fn trace_headers_carry_the_attempt_or_the_events_context() {
        use crate::event::trace::{self, TraceParent};
        let created =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let mut event = EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .build()
            .unwrap();
        let mut item = Item::new(Arc::new(Encoded::new(event.clone(), true)));
        let mut h = HeaderMap::new();
        trace_headers(&mut h, &item);
        assert!(h.is_empty(), "no context, no headers");
        trace::set_extension(&mut event, &created, Some("congo=t61rcWkgMzE"));
        item.encoded = Arc::new(Encoded::new(event, false));
        // Not tracing: the event's own context, hop and extension alike.
        let (mut h, _) = binary(item.event());
        trace_headers(&mut h, &item);
        assert_eq!(h["ce-traceparent"], created.to_string());
        assert_eq!(h["traceparent"], created.to_string());
        assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
        // Tracing: the attempt's span is the hop; the extension stays.
        let attempt = TraceParent {
            span_id: [7; 8],
            ..created
        };
        item.trace = Some(attempt);
        let (mut h, _) = binary(item.event());
        trace_headers(&mut h, &item);
        assert_eq!(h["ce-traceparent"], created.to_string());
        assert_eq!(h["traceparent"], attempt.to_string());
        assert!(h.get("tracestate").is_none());
    }
}
