//! Whether a JSON value is a valid CloudEvent 1.0, and if not, which
//! attribute is at fault: named as the request carried it (a member in
//! structured and batch mode; a `ce-*` header, `Content-Type` or the body
//! in binary mode). The SDK reads what these checks let through.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// How a request carried an event's attributes, to name the one at fault.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// As JSON members (structured and batch mode).
    Structured,
    /// As `ce-*` headers, `Content-Type` and the body (binary mode).
    Binary,
}

impl Mode {
    fn name(self, attribute: &str) -> String {
        match (self, attribute) {
            (Mode::Structured, a) => a.to_owned(),
            (Mode::Binary, "datacontenttype") => "header Content-Type".to_owned(),
            (Mode::Binary, "data") => "the body".to_owned(),
            (Mode::Binary, a) => format!("header ce-{a}"),
        }
    }
}

/// A valid CloudEvent 1.0: the required attributes present, and everything
/// else typed as the specification says (what the SDK would refuse to
/// read); an error names the attribute (in binary mode, the header) at
/// fault.
pub fn check(event: &Value, mode: Mode) -> Result<(), String> {
    let fault = |attribute: &str, problem: String| {
        format!(
            "not a valid CloudEvent: {}: {problem}",
            mode.name(attribute)
        )
    };
    let Some(attributes) = event.as_object() else {
        return Err(format!(
            "not a valid CloudEvent: an event is a JSON object, not {}",
            kind(event)
        ));
    };
    let present = |name: &str| attributes.get(name).filter(|v| !v.is_null());
    match present("specversion") {
        None => return Err(fault("specversion", "missing (required)".into())),
        Some(Value::String(v)) if v == "1.0" => {}
        Some(v) => {
            return Err(fault(
                "specversion",
                format!("{v} is not supported (only \"1.0\")"),
            ));
        }
    }
    for name in ["id", "source", "type"] {
        match present(name) {
            None => return Err(fault(name, "missing (required)".into())),
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(v) => {
                return Err(fault(
                    name,
                    format!("must be a non-empty string, not {}", kind(v)),
                ));
            }
        }
    }
    let text = |name: &str| match present(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(fault(name, format!("must be a string, not {}", kind(v)))),
    };
    let content_type = text("datacontenttype")?;
    text("subject")?;
    if let Some(schema) = text("dataschema")? {
        url::Url::parse(schema).map_err(|e| {
            fault(
                "dataschema",
                format!("{schema:?} is not an absolute URI ({e})"),
            )
        })?;
    }
    if let Some(time) = text("time")? {
        let t = chrono::DateTime::parse_from_rfc3339(time).map_err(|_| {
            fault(
                "time",
                format!("{time:?} is not an RFC 3339 timestamp (like 2026-12-02T13:00:00Z)"),
            )
        })?;
        // Sent on in UTC, where RFC 3339 must still be able to write it.
        if !crate::event::rfc3339_writes(&t.with_timezone(&chrono::Utc)) {
            return Err(fault(
                "time",
                format!("{time:?} is outside the years 0000 to 9999 in UTC"),
            ));
        }
    }
    // As the SDK reads data: `null` counts as present here.
    match (attributes.get("data"), attributes.get("data_base64")) {
        (Some(_), Some(_)) => {
            return Err(fault(
                "data_base64",
                format!(
                    "an event has {} or data_base64, not both",
                    mode.name("data")
                ),
            ));
        }
        (Some(data), None) => {
            let content_type = content_type.unwrap_or("application/json");
            if !is_json(content_type) && !data.is_string() {
                return Err(fault(
                    "data",
                    format!(
                        "must be a string, not {}, when datacontenttype {content_type:?} is not JSON (binary data goes in data_base64)",
                        kind(data)
                    ),
                ));
            }
        }
        (None, Some(Value::String(encoded))) => {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| fault("data_base64", format!("not base64 ({})", base64_problem(e))))?;
        }
        (None, Some(v)) => {
            return Err(fault(
                "data_base64",
                format!("must be a base64 string, not {}", kind(v)),
            ));
        }
        (None, None) => {}
    }
    for (name, value) in attributes {
        if crate::event::RESERVED_NAMES.contains(&name.as_str()) {
            continue;
        }
        match value {
            Value::Null | Value::String(_) | Value::Bool(_) => {}
            Value::Number(n) if n.is_i64() => {}
            v => {
                return Err(fault(
                    name,
                    format!(
                        "an extension attribute is a string, a boolean or an integer, not {}",
                        kind(v)
                    ),
                ));
            }
        }
    }
    // Whatever the checks above missed, the SDK would: said as it says it.
    cloudevents::Event::deserialize(event)
        .map(drop)
        .map_err(|e| format!("not a valid CloudEvent: {e}"))
}

/// A JSON content type, as the SDK tells them.
fn is_json(content_type: &str) -> bool {
    content_type.starts_with("application/json")
        || content_type.starts_with("text/json")
        || content_type.ends_with("+json")
}

/// What a JSON value is, for messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("the integer {n}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.is_empty() => "the empty string".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn base64_problem(e: base64::DecodeError) -> String {
    let symbol = |b: u8| {
        if b.is_ascii_graphic() {
            format!("'{}'", b as char)
        } else {
            format!("byte 0x{b:02x}")
        }
    };
    match e {
        base64::DecodeError::InvalidByte(offset, byte) => {
            format!("invalid symbol {} at offset {offset}", symbol(byte))
        }
        base64::DecodeError::InvalidLength(n) => {
            format!("{n} symbols: a truncated last group")
        }
        base64::DecodeError::InvalidLastSymbol {
            offset, symbol: b, ..
        } => {
            format!("invalid last symbol {} at offset {offset}", symbol(b))
        }
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}
