//! The event model: CloudEvents 1.0 as the official SDK's [`Event`],
//! [`FieldPath`], the one way routes and templates read a field of it, and
//! [`trace`], the W3C trace context an event carries.

pub mod enums;
mod path;
pub mod trace;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
pub use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
pub use path::{FieldPath, PathError, Scalar};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The names CloudEvents 1.0 gives its context attributes and data members,
/// in structured mode: no extension may take one.
pub const RESERVED_NAMES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// Serialises an event as one structured-mode JSON document (no newline).
pub fn write_json(event: &Event, out: &mut Vec<u8>) {
    // Serialising an `Event` into memory cannot fail: every key is a string.
    serde_json::to_writer(&mut *out, &Structured(event)).expect("CloudEvent serialises to JSON");
}

/// An event as a structured-mode JSON document, the way Switchyard puts it on
/// the wire: the SDK's member order, `time` in Go's `time.RFC3339Nano` form
/// (what NVSentinel's exporter sends: trailing zeros of the fraction
/// removed), extensions sorted by name so equal events serialise equally.
pub struct Structured<'a>(pub &'a Event);

impl Serialize for Structured<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("specversion", e.specversion().as_str())?;
        map.serialize_entry("id", e.id())?;
        map.serialize_entry("type", e.ty())?;
        map.serialize_entry("source", e.source())?;
        if let Some(v) = e.datacontenttype() {
            map.serialize_entry("datacontenttype", v)?;
        }
        if let Some(v) = e.dataschema() {
            map.serialize_entry("dataschema", v.as_str())?;
        }
        if let Some(v) = e.subject() {
            map.serialize_entry("subject", v)?;
        }
        if let Some(t) = e.time() {
            map.serialize_entry("time", &rfc3339_nano(t))?;
        }
        match e.data() {
            Some(Data::Json(v)) => map.serialize_entry("data", v)?,
            Some(Data::String(v)) => map.serialize_entry("data", v)?,
            Some(Data::Binary(v)) => {
                use base64::Engine as _;
                let text = base64::engine::general_purpose::STANDARD.encode(v);
                map.serialize_entry("data_base64", &text)?
            }
            None => {}
        }
        let mut extensions: Vec<_> = e.iter_extensions().collect();
        extensions.sort_unstable_by_key(|(name, _)| *name);
        for (name, value) in extensions {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The event as a JSON value, as [`write_json`] writes it.
pub fn to_value(event: &Event) -> serde_json::Value {
    serde_json::to_value(Structured(event)).expect("CloudEvent serialises to JSON")
}

/// Formats like Go's `time.RFC3339Nano` in UTC, as NVSentinel does:
/// nanoseconds with trailing zeros removed, `Z` suffix.
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    // In a leap second chrono counts the nanoseconds past 1e9 (and `%S`
    // says 60): the fraction is what is past the second.
    let nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos > 0 {
        let mut frac = format!("{nanos:09}");
        while frac.ends_with('0') {
            frac.pop();
        }
        let _ = write!(s, ".{frac}");
    }
    s.push('Z');
    s
}

/// Whether RFC 3339 can write `t`: its years have four digits (0000–9999).
/// A time a mapping reads outside them is not one a CloudEvent can carry.
pub fn rfc3339_writes(t: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&t.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_in_go_rfc3339nano_form() {
        let at = |s, n| rfc3339_nano(&DateTime::from_timestamp(s, n).unwrap());
        assert_eq!(at(1790812800, 0), "2026-10-01T00:00:00Z");
        assert_eq!(at(1790812800, 650_934_000), "2026-10-01T00:00:00.650934Z");
        assert_eq!(at(1790812800, 35_490_000), "2026-10-01T00:00:00.03549Z");
        assert_eq!(at(1790812800, 120_000_000), "2026-10-01T00:00:00.12Z");
        assert_eq!(at(1790812800, 1), "2026-10-01T00:00:00.000000001Z");
        // A leap second (found by the http_decode fuzz target: it read back
        // as another time).
        let leap = DateTime::parse_from_rfc3339("2016-12-31T23:59:60.372398Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339_nano(&leap), "2016-12-31T23:59:60.372398Z");
        assert!(rfc3339_writes(&leap));
        // Five-digit years (from a timestamp in seconds) are not RFC 3339.
        assert!(!rfc3339_writes(
            &DateTime::from_timestamp(1_796_677_958_436, 0).unwrap()
        ));
    }

    #[test]
    fn structured_matches_the_sdk_but_for_time_and_extension_order() {
        let event = EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .subject("n")
            .time(DateTime::from_timestamp(1790812800, 120_000_000).unwrap())
            .extension("zeta", "z")
            .extension("alpha", 3i64)
            .data("application/json", serde_json::json!({"a": [1, 2]}))
            .build()
            .unwrap();
        let mut ours = Vec::new();
        write_json(&event, &mut ours);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            r#"{"specversion":"1.0","id":"1","type":"t","source":"s","datacontenttype":"application/json","subject":"n","time":"2026-10-01T00:00:00.12Z","data":{"a":[1,2]},"alpha":3,"zeta":"z"}"#
        );
        // The SDK reads it back as the same event.
        let back: Event = serde_json::from_value(to_value(&event)).unwrap();
        assert_eq!(back, event);
    }
}
