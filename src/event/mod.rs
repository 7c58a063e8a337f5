//! The event model: CloudEvents 1.0 as the official SDK's [`Event`],
//! [`FieldPath`], the one way routes and templates read a field of it, and
//! [`trace`], the W3C trace context an event carries.

pub mod enums;
mod path;
mod prune;
pub mod trace;

use chrono::{DateTime, Utc};
pub use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
pub use path::{FieldPath, PathError, Scalar};
pub use prune::DataPaths;
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
        structured::<S, ()>(self.0, None, s)
    }
}

/// [`write_json`] with `data` written from `data` instead of the event's
/// own (a mapping that writes its data without building it as a DOM).
pub fn write_json_with_data<D: Serialize>(event: &Event, data: &D, out: &mut Vec<u8>) {
    struct With<'a, D>(&'a Event, &'a D);
    impl<D: Serialize> Serialize for With<'_, D> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            structured(self.0, Some(self.1), s)
        }
    }
    serde_json::to_writer(&mut *out, &With(event, data)).expect("CloudEvent serialises to JSON");
}

fn structured<S: Serializer, D: Serialize>(
    e: &Event,
    data: Option<&D>,
    s: S,
) -> Result<S::Ok, S::Error> {
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
        let mut buf = path::StackStr::new();
        push_rfc3339_nano(t, &mut buf);
        map.serialize_entry("time", buf.as_str())?;
    }
    match (data, e.data()) {
        (Some(d), _) => map.serialize_entry("data", d)?,
        (None, Some(Data::Json(v))) => map.serialize_entry("data", v)?,
        (None, Some(Data::String(v))) => map.serialize_entry("data", v)?,
        (None, Some(Data::Binary(v))) => {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(v);
            map.serialize_entry("data_base64", &text)?
        }
        (None, None) => {}
    }
    let mut extensions: Vec<_> = e.iter_extensions().collect();
    extensions.sort_unstable_by_key(|(name, _)| *name);
    for (name, value) in extensions {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// An event on its way to receivers: its structured-mode JSON (as
/// [`write_json`] writes it), written once and shared by every receiver the
/// event reaches — what most receivers send, what batches are measured and
/// disk buffers filled with — and the SDK event, kept only when a receiver
/// reads its attributes or data (else read back from the JSON the first
/// time something asks for it, so a queue holds bytes, not a DOM).
#[derive(Debug)]
pub struct Encoded {
    json: bytes::Bytes,
    event: std::sync::OnceLock<Event>,
}

thread_local! {
    /// Where [`Encoded::new`] writes, so the JSON kept is allocated once at
    /// its exact size.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Encoded {
    /// Encodes `event`, keeping it too when `keep` (a receiver reads it).
    pub fn new(event: Event, keep: bool) -> Self {
        let json = SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            write_json(&event, buf);
            let json = bytes::Bytes::copy_from_slice(buf);
            // A huge event does not keep its buffer's size for the thread.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            json
        });
        let kept = std::sync::OnceLock::new();
        if keep {
            let _ = kept.set(event);
        }
        Self { json, event: kept }
    }

    /// An event as its JSON alone, written by `write_json` (or as it
    /// writes); the event is read back from it when asked for.
    pub fn from_json(json: bytes::Bytes) -> Self {
        Self {
            json,
            event: std::sync::OnceLock::new(),
        }
    }

    /// An event with its JSON, as read back from it (a disk buffer).
    pub fn with_json(event: Event, json: bytes::Bytes) -> Self {
        Self {
            json,
            event: std::sync::OnceLock::from(event),
        }
    }

    /// The structured-mode JSON (no newline).
    pub fn json(&self) -> &bytes::Bytes {
        &self.json
    }

    /// The event: kept, or read back from the JSON once.
    pub fn event(&self) -> &Event {
        self.event.get_or_init(|| {
            // The JSON was written from an event: it reads back as that
            // event (`fuzz::mapping` checks it for every profile).
            serde_json::from_slice(&self.json).expect("an encoded event reads back")
        })
    }

    /// The event, owned: taken when this is its last reference.
    pub fn into_event(self: std::sync::Arc<Self>) -> Event {
        match std::sync::Arc::try_unwrap(self) {
            Ok(mut encoded) => match encoded.event.take() {
                Some(event) => event,
                None => serde_json::from_slice(&encoded.json).expect("an encoded event reads back"),
            },
            Err(shared) => shared.event().clone(),
        }
    }
}

/// The event as a JSON value, as [`write_json`] writes it.
pub fn to_value(event: &Event) -> serde_json::Value {
    serde_json::to_value(Structured(event)).expect("CloudEvent serialises to JSON")
}

/// Formats like Go's `time.RFC3339Nano` in UTC, as NVSentinel does:
/// nanoseconds with trailing zeros removed, `Z` suffix.
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let mut s = String::with_capacity(30);
    push_rfc3339_nano(t, &mut s);
    s
}

/// [`rfc3339_nano`] appended to `out`. Every event's time goes through
/// here, so the digits are written directly rather than through chrono's
/// `format` (which interprets its format string on each call).
pub fn push_rfc3339_nano(t: &DateTime<Utc>, out: &mut impl std::fmt::Write) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Not RFC 3339 (see `rfc3339_writes`); written as chrono does.
        let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
    } else {
        // In a leap second chrono counts the nanoseconds past 1e9 and
        // `second()` stays at 59: the second written is 60.
        let leap = t.nanosecond() >= 1_000_000_000;
        let mut digits = [0u8; 19];
        let mut put = |at: usize, value: u32, width: usize| {
            let mut v = value;
            for i in (0..width).rev() {
                digits[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year as u32, 4);
        put(5, t.month(), 2);
        put(8, t.day(), 2);
        put(11, t.hour(), 2);
        put(14, t.minute(), 2);
        put(17, t.second() + u32::from(leap), 2);
        digits[4] = b'-';
        digits[7] = b'-';
        digits[10] = b'T';
        digits[13] = b':';
        digits[16] = b':';
        let _ = out.write_str(std::str::from_utf8(&digits).expect("ASCII digits"));
    }
    // The fraction is what is past the second (a leap second's too).
    let mut nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
    if nanos > 0 {
        let mut width = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            width -= 1;
        }
        let mut frac = [0u8; 10];
        frac[0] = b'.';
        for i in (1..=width).rev() {
            frac[i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        let _ = out.write_str(std::str::from_utf8(&frac[..=width]).expect("ASCII digits"));
    }
    let _ = out.write_char('Z');
}

/// Whether RFC 3339 can write `t`: its years have four digits (0000–9999).
/// A time a mapping reads outside them is not one a CloudEvent can carry.
pub fn rfc3339_writes(t: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&t.year())
}

/// An RFC 3339 time read into UTC, when UTC can write it again: an offset
/// can carry a time written in year 0000 or 9999 out of those years
/// (`0000-01-01T00:30:00+01:00` is in the year −1 in UTC), and such a time
/// is not one a CloudEvent can carry.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(rfc3339_writes)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// The old formatting, through chrono: what [`rfc3339_nano`] must equal.
    fn by_chrono(t: &DateTime<Utc>) -> String {
        let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
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

    #[test]
    fn direct_digits_equal_chronos_formatting() {
        // A spread of times over years 0000–9999 and beyond, with every
        // fraction width, and leap seconds.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000u64 {
            let secs = (next() % 400_000_000_000) as i64 - 62_167_219_200;
            let nanos = match i % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1000,
                _ => (next() % 1_000_000_000) as u32,
            };
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(rfc3339_nano(&t), by_chrono(&t), "{secs} {nanos}");
        }
        for text in [
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "1990-12-31T23:59:60.000000001Z",
        ] {
            let t = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(rfc3339_nano(&t), by_chrono(&t), "{text}");
        }
        let far = DateTime::from_timestamp(1_796_677_958_436, 120).unwrap();
        assert_eq!(rfc3339_nano(&far), by_chrono(&far));
    }

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

    /// An encoded event is its JSON once; the event is kept when asked, and
    /// otherwise read back from the JSON as the same event.
    #[test]
    fn encoded_keeps_the_json_and_gives_the_event_back() {
        let event = EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .time(DateTime::from_timestamp(1790812800, 120_000_000).unwrap())
            .extension("alpha", 3i64)
            .data("application/json", serde_json::json!({"a": [1, "b"]}))
            .build()
            .unwrap();
        let mut json = Vec::new();
        write_json(&event, &mut json);
        for keep in [true, false] {
            let encoded = std::sync::Arc::new(Encoded::new(event.clone(), keep));
            assert_eq!(encoded.json()[..], json[..]);
            assert_eq!(encoded.event.get().is_some(), keep, "kept only when asked");
            assert_eq!(*encoded.event(), event);
            let shared = encoded.clone();
            assert_eq!(shared.into_event(), event, "a shared one is cloned");
            assert_eq!(encoded.into_event(), event, "the last one is taken");
        }
        let read = Encoded::with_json(event.clone(), json.clone().into());
        assert_eq!((read.event(), &read.json()[..]), (&event, &json[..]));
    }
}
