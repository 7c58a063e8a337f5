//! The CloudEvents HTTP protocol binding, receiving side: a request in
//! structured, binary or batch mode becomes structured-mode JSON lines (one
//! per event), each checked to be a valid CloudEvent 1.0. A batch is all or
//! nothing: one bad event rejects the request, naming it.
//!
//! The request's W3C `traceparent` (and `tracestate`) header continues in
//! the events: an event without a distributed tracing extension of its own
//! gets the header's as its `traceparent` attribute.

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use base64::Engine;
use serde_json::{Map, Value};

use super::check::{Mode, check};
use crate::event::trace::{self, TraceParent};

/// Why a request holds no acceptable events.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// 400: the request is not valid CloudEvents.
    #[error("{0}")]
    Invalid(String),
    /// 415: a CloudEvents format other than JSON.
    #[error(
        "unsupported CloudEvents format {0:?}; send application/cloudevents+json, application/cloudevents-batch+json or binary mode"
    )]
    Unsupported(String),
}

/// The events of a request: JSON lines, each ending with `\n`.
#[derive(Debug, Default)]
pub struct Lines {
    pub bytes: Vec<u8>,
    pub count: u64,
}

impl Lines {
    fn push(&mut self, event: &Value) {
        serde_json::to_writer(&mut self.bytes, event).expect("JSON value serialises");
        self.bytes.push(b'\n');
        self.count += 1;
    }
}

fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(message.into())
}

/// Decodes a request by its content type and headers.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Lines, DecodeError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map_err(|_| invalid("the Content-Type header is not text"))
        })
        .transpose()?;
    let media = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let mut lines = Lines::default();
    let trace = TraceHeaders::of(headers);
    if media == "application/cloudevents-batch+json" {
        let mut events: Vec<Value> = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("the batch is not a JSON array: {e}")))?;
        if events.is_empty() {
            return Err(invalid("the batch holds no events"));
        }
        for (i, event) in events.iter().enumerate() {
            check(event, Mode::Structured)
                .map_err(|e| invalid(format!("batch event {i} (from 0): {e}")))?;
        }
        for event in &mut events {
            trace.continue_in(event);
            lines.push(event);
        }
    } else if media == "application/cloudevents+json" {
        let mut event: Value = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
        check(&event, Mode::Structured).map_err(invalid)?;
        trace.continue_in(&mut event);
        lines.push(&event);
    } else if media.starts_with("application/cloudevents") {
        return Err(DecodeError::Unsupported(media));
    } else if headers.contains_key("ce-specversion") {
        let mut event = binary(headers, content_type, body)?;
        check(&event, Mode::Binary).map_err(invalid)?;
        trace.continue_in(&mut event);
        lines.push(&event);
    } else {
        return Err(invalid(
            "not a CloudEvent: no ce-specversion header (binary mode) and the content type is neither application/cloudevents+json nor application/cloudevents-batch+json",
        ));
    }
    Ok(lines)
}

/// The request's W3C trace context, if its `traceparent` is valid.
struct TraceHeaders<'a> {
    parent: Option<&'a str>,
    state: Option<&'a str>,
}

impl<'a> TraceHeaders<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let parent = text("traceparent").filter(|t| TraceParent::parse(t).is_some());
        Self {
            parent,
            state: parent.and(text("tracestate")),
        }
    }

    /// Gives `event` the request's context unless it has one of its own.
    fn continue_in(&self, event: &mut Value) {
        let (Some(parent), Some(event)) = (self.parent, event.as_object_mut()) else {
            return;
        };
        if event.contains_key(trace::TRACEPARENT) {
            return;
        }
        event.insert(trace::TRACEPARENT.into(), parent.trim().into());
        if let Some(state) = self.state.filter(|s| !s.trim().is_empty()) {
            event.insert(trace::TRACESTATE.into(), state.trim().into());
        }
    }
}

/// A structured event from binary mode: `ce-*` headers (percent-decoded)
/// are the attributes, `Content-Type` the `datacontenttype`, the body the data.
fn binary(
    headers: &HeaderMap,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, DecodeError> {
    let mut event = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let text = value
            .to_str()
            .ok()
            .and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok())
            .ok_or_else(|| invalid(format!("header ce-{attribute}: not UTF-8 text")))?;
        if event
            .insert(attribute.to_owned(), Value::String(text.into_owned()))
            .is_some()
        {
            return Err(invalid(format!("header ce-{attribute} is repeated")));
        }
    }
    if let Some(t) = content_type {
        event.insert("datacontenttype".into(), Value::String(t.to_owned()));
    }
    if body.is_empty() {
        return Ok(Value::Object(event));
    }
    let media = content_type.map(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let json = |m: &str| m == "application/json" || m.ends_with("+json") || m == "text/json";
    match media.as_deref() {
        Some(m) if json(m) => {
            let data: Value = serde_json::from_slice(body).map_err(|e| {
                invalid(format!(
                    "the body is not the JSON its content type {m} says: {e}"
                ))
            })?;
            event.insert("data".into(), data);
        }
        // No content type: JSON if it parses, else text, else bytes.
        None if serde_json::from_slice::<Value>(body).is_ok() => {
            let data = serde_json::from_slice(body).expect("parsed just now");
            event.insert("data".into(), data);
        }
        m => match std::str::from_utf8(body) {
            Ok(text) if m.is_none_or(|m| m.starts_with("text/")) => {
                event.insert("data".into(), Value::String(text.to_owned()));
            }
            _ => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                event.insert("data_base64".into(), Value::String(encoded));
            }
        },
    }
    Ok(Value::Object(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    fn events(lines: &Lines) -> Vec<Value> {
        lines
            .bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OWN: &str = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01";

    #[test]
    fn the_traceparent_header_continues_in_events_without_their_own() {
        // Binary: the header, unless the event says ce-traceparent itself.
        let mut h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "b"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("traceparent", TP),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let e = &events(&decode(&h, b"").unwrap())[0];
        assert_eq!(e["traceparent"], TP);
        assert_eq!(e["tracestate"], "congo=t61rcWkgMzE");
        h.insert("ce-traceparent", OWN.parse().unwrap());
        let e = &events(&decode(&h, b"").unwrap())[0];
        assert_eq!(
            e["traceparent"], OWN,
            "the event's own creation context stays"
        );
        // Structured and batch: the same, per event.
        let h = headers(&[
            ("content-type", "application/cloudevents-batch+json"),
            ("traceparent", TP),
        ]);
        let body = format!(
            r#"[{{"specversion":"1.0","id":"1","source":"s","type":"t"}},
                {{"specversion":"1.0","id":"2","source":"s","type":"t","traceparent":"{OWN}"}}]"#
        );
        let got = events(&decode(&h, body.as_bytes()).unwrap());
        assert_eq!(got[0]["traceparent"], TP);
        assert!(got[0].get("tracestate").is_none());
        assert_eq!(got[1]["traceparent"], OWN);
        // A header that is not a traceparent is ignored.
        let h = headers(&[("content-type", STRUCTURED), ("traceparent", "00-zz-1-01")]);
        let body = br#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
        assert!(
            events(&decode(&h, body).unwrap())[0]
                .get("traceparent")
                .is_none()
        );
    }

    #[test]
    fn structured_events_become_one_line() {
        let body = b"{\n \"specversion\": \"1.0\", \"id\": \"a\", \"source\": \"s\", \"type\": \"t\",\n \"data\": {\"x\": 1}}";
        let lines = decode(&headers(&[("content-type", STRUCTURED)]), body).unwrap();
        assert_eq!(lines.count, 1);
        assert_eq!(lines.bytes.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(events(&lines)[0]["data"]["x"], 1);
    }

    #[test]
    fn binary_events_take_headers_and_data() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "b%201"),
            ("ce-source", "s"),
            ("ce-type", "t"),
            ("ce-myext", "v"),
            ("content-type", "application/json"),
        ]);
        let lines = decode(&h, br#"{"x":2}"#).unwrap();
        let e = &events(&lines)[0];
        assert_eq!(e["id"], "b 1", "percent-decoded");
        assert_eq!(e["myext"], "v");
        assert_eq!(e["data"]["x"], 2);
        assert_eq!(e["datacontenttype"], "application/json");

        let mut h = h.clone();
        h.insert("content-type", "application/octet-stream".parse().unwrap());
        let e = &events(&decode(&h, &[0xff, 0x01]).unwrap())[0];
        assert_eq!(e["data_base64"], "/wE=");
        h.insert("content-type", "text/plain".parse().unwrap());
        let e = &events(&decode(&h, b"hello").unwrap())[0];
        assert_eq!(e["data"], "hello");
        h.insert("content-type", "application/json".parse().unwrap());
        assert!(
            matches!(decode(&h, b"{oops"), Err(DecodeError::Invalid(m)) if m.contains("not the JSON"))
        );
    }

    #[test]
    fn a_batch_is_all_or_nothing_and_names_the_bad_event() {
        let h = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let ok = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
        let lines = decode(&h, format!("[{ok},{ok}]").as_bytes()).unwrap();
        assert_eq!(lines.count, 2);
        let bad = r#"{"specversion":"1.0","source":"s","type":"t"}"#;
        let err = decode(&h, format!("[{ok},{bad}]").as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch event 1 (from 0): not a valid CloudEvent: id: missing (required)"
        );
        assert!(decode(&h, b"[]").is_err());
        assert!(decode(&h, ok.as_bytes()).is_err(), "not an array");
    }

    #[test]
    fn invalid_events_are_named() {
        let h = headers(&[("content-type", STRUCTURED)]);
        let err = |body: &str| decode(&h, body.as_bytes()).unwrap_err().to_string();
        assert!(err("{nope").starts_with("the body is not JSON"));
        assert_eq!(
            err(r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#),
            "not a valid CloudEvent: specversion: \"0.3\" is not supported (only \"1.0\")"
        );
        assert_eq!(
            err(r#"{"specversion":"1.0","id":"1","source":"s","type":""}"#),
            "not a valid CloudEvent: type: must be a non-empty string, not the empty string"
        );
        let plain = headers(&[("content-type", "application/json")]);
        assert!(
            decode(&plain, b"{}")
                .unwrap_err()
                .to_string()
                .starts_with("not a CloudEvent")
        );
        let avro = headers(&[("content-type", "application/cloudevents+avro")]);
        assert!(matches!(
            decode(&avro, b""),
            Err(DecodeError::Unsupported(_))
        ));
    }

    const OK: &str = r#""specversion":"1.0","id":"1","source":"s","type":"t""#;

    #[test]
    fn a_structured_refusal_names_the_attribute() {
        let h = headers(&[("content-type", STRUCTURED)]);
        let cases = [
            (
                r#"{"id":"1","source":"s","type":"t"}"#,
                "specversion: missing (required)",
            ),
            (
                r#"{"specversion":1.0,"id":"1","source":"s","type":"t"}"#,
                "specversion: 1.0 is not supported (only \"1.0\")",
            ),
            (
                r#"{"specversion":"1.0","source":"s","type":"t"}"#,
                "id: missing (required)",
            ),
            (
                r#"{"specversion":"1.0","id":7,"source":"s","type":"t"}"#,
                "id: must be a non-empty string, not the integer 7",
            ),
            (
                r#"{"specversion":"1.0","id":"1","type":"t"}"#,
                "source: missing (required)",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"s","type":null}"#,
                "type: missing (required)",
            ),
            (
                &format!(r#"{{{OK},"datacontenttype":5}}"#),
                "datacontenttype: must be a string, not the integer 5",
            ),
            (
                &format!(r#"{{{OK},"subject":["a"]}}"#),
                "subject: must be a string, not an array",
            ),
            (
                &format!(r#"{{{OK},"dataschema":"schemas/v1"}}"#),
                "dataschema: \"schemas/v1\" is not an absolute URI (relative URL without a base)",
            ),
            (
                &format!(r#"{{{OK},"time":"yesterday"}}"#),
                "time: \"yesterday\" is not an RFC 3339 timestamp (like 2026-12-02T13:00:00Z)",
            ),
            (
                &format!(r#"{{{OK},"time":"0000-01-01T00:30:00+01:00"}}"#),
                "time: \"0000-01-01T00:30:00+01:00\" is outside the years 0000 to 9999 in UTC",
            ),
            (
                &format!(r#"{{{OK},"data_base64":"!!!!"}}"#),
                "data_base64: not base64 (invalid symbol '!' at offset 0)",
            ),
            (
                &format!(r#"{{{OK},"data_base64":"QUJD="}}"#),
                "data_base64: not base64 (invalid symbol '=' at offset 4)",
            ),
            (
                &format!(r#"{{{OK},"data_base64":{{"x":1}}}}"#),
                "data_base64: must be a base64 string, not an object",
            ),
            (
                &format!(r#"{{{OK},"data":1,"data_base64":"AA=="}}"#),
                "data_base64: an event has data or data_base64, not both",
            ),
            (
                &format!(r#"{{{OK},"datacontenttype":"text/plain","data":{{"x":1}}}}"#),
                "data: must be a string, not an object, when datacontenttype \"text/plain\" is not JSON (binary data goes in data_base64)",
            ),
            (
                &format!(r#"{{{OK},"gpu":1.5}}"#),
                "gpu: an extension attribute is a string, a boolean or an integer, not the number 1.5",
            ),
            (
                &format!(r#"{{{OK},"labels":{{"a":"b"}}}}"#),
                "labels: an extension attribute is a string, a boolean or an integer, not an object",
            ),
        ];
        for (body, expected) in cases {
            let got = decode(&h, body.as_bytes()).unwrap_err().to_string();
            assert_eq!(got, format!("not a valid CloudEvent: {expected}"), "{body}");
        }
        assert_eq!(
            decode(&h, b"[1]").unwrap_err().to_string(),
            "not a valid CloudEvent: an event is a JSON object, not an array"
        );
        // What the checks let through, the SDK reads.
        for body in [
            format!(r#"{{{OK},"data":null,"ext":null,"flag":true,"n":-3}}"#),
            format!(
                r#"{{{OK},"datacontenttype":"application/octet-stream","data_base64":"AAH/"}}"#
            ),
            format!(r#"{{{OK},"time":"2026-12-02T13:00:00.5Z","dataschema":"https://x/s"}}"#),
        ] {
            assert_eq!(decode(&h, body.as_bytes()).unwrap().count, 1, "{body}");
        }
    }

    #[test]
    fn a_binary_refusal_names_the_header() {
        let base = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ];
        let with = |extra: &[(&'static str, &str)], without: &str| {
            let mut pairs: Vec<(&'static str, &str)> = base
                .iter()
                .copied()
                .filter(|(n, _)| *n != without)
                .collect();
            pairs.extend_from_slice(extra);
            headers(&pairs)
        };
        let cases = [
            (with(&[], "ce-id"), "header ce-id: missing (required)"),
            (with(&[], "ce-type"), "header ce-type: missing (required)"),
            (
                with(&[("ce-source", "")], "ce-source"),
                "header ce-source: must be a non-empty string, not the empty string",
            ),
            (
                with(&[("ce-specversion", "0.3")], "ce-specversion"),
                "header ce-specversion: \"0.3\" is not supported (only \"1.0\")",
            ),
            (
                with(&[("ce-time", "noon")], ""),
                "header ce-time: \"noon\" is not an RFC 3339 timestamp (like 2026-12-02T13:00:00Z)",
            ),
            (
                with(&[("ce-dataschema", "x")], ""),
                "header ce-dataschema: \"x\" is not an absolute URI (relative URL without a base)",
            ),
        ];
        for (h, expected) in cases {
            let got = decode(&h, b"").unwrap_err().to_string();
            assert_eq!(got, format!("not a valid CloudEvent: {expected}"), "{h:?}");
        }
        let h = with(&[("content-type", "application/json")], "");
        assert!(
            decode(&h, b"{oops")
                .unwrap_err()
                .to_string()
                .starts_with("the body is not the JSON its content type application/json says")
        );
    }

    #[test]
    fn a_batch_refusal_names_the_event_and_the_attribute() {
        let h = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let body = format!(r#"[{{{OK}}},{{{OK},"data_base64":"!"}}]"#);
        assert_eq!(
            decode(&h, body.as_bytes()).unwrap_err().to_string(),
            "batch event 1 (from 0): not a valid CloudEvent: data_base64: not base64 (invalid symbol '!' at offset 0)"
        );
        let body = format!(r#"[{{{OK},"time":"now"}}]"#);
        assert_eq!(
            decode(&h, body.as_bytes()).unwrap_err().to_string(),
            "batch event 0 (from 0): not a valid CloudEvent: time: \"now\" is not an RFC 3339 timestamp (like 2026-12-02T13:00:00Z)"
        );
    }
}
