//! Field paths into a CloudEvent: attributes by name (`id`, `type`, `source`,
//! `subject`, `time`, `specversion`, `datacontenttype`, `dataschema`),
//! extensions by name, and `data.a.b.c` into JSON data. Through arrays a path
//! visits every element; a numeric segment indexes an array.
//!
//! Reading a field allocates nothing: numbers and times are rendered into a
//! stack buffer.

use std::fmt::{self, Write as _};

use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event};
use serde_json::Value;

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    Id,
    Type,
    Source,
    Subject,
    Time,
    SpecVersion,
    DataContentType,
    DataSchema,
    Extension(Box<str>),
    /// `data` itself (empty) or a dot path into it.
    Data(Box<[Segment]>),
}

/// One step of a data path: an object key, which is also an array index
/// when it is a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    key: Box<str>,
    index: Option<usize>,
}

impl Segment {
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

/// Why a path is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("empty segment in field path {0:?}")]
    EmptySegment(String),
    #[error(
        "{0:?} is neither a CloudEvents attribute nor a valid extension name (lower-case letters and digits); event data is addressed as data.<path>"
    )]
    BadName(String),
}

/// A scalar value read from an event, rendered as its JSON text for
/// non-strings (`true`, `42`, `1.5`).
pub type Scalar<'a> = &'a str;

impl FieldPath {
    /// Parses `id`, `subject`, `data.healthEvent.nodeName`, an extension name …
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let attr = match path {
            "id" => Self::Id,
            "type" => Self::Type,
            "source" => Self::Source,
            "subject" => Self::Subject,
            "time" => Self::Time,
            "specversion" => Self::SpecVersion,
            "datacontenttype" => Self::DataContentType,
            "dataschema" => Self::DataSchema,
            "data" => Self::Data(Box::new([])),
            _ => {
                if let Some(rest) = path.strip_prefix("data.") {
                    let segments: Vec<Segment> = rest
                        .split('.')
                        .map(|s| Segment {
                            key: s.into(),
                            index: s.parse().ok(),
                        })
                        .collect();
                    if segments.iter().any(|s| s.key.is_empty()) {
                        return Err(PathError::EmptySegment(path.to_owned()));
                    }
                    return Ok(Self::Data(segments.into()));
                }
                if path.is_empty()
                    || !path
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                {
                    return Err(PathError::BadName(path.to_owned()));
                }
                Self::Extension(path.into())
            }
        };
        Ok(attr)
    }

    /// True for names the CloudEvents spec does not define (read as extensions).
    pub fn is_extension(&self) -> bool {
        matches!(self, Self::Extension(_))
    }

    /// Calls `f` with every scalar value at this path until it returns true;
    /// returns whether it did. A missing field or `null` yields nothing.
    pub fn any(&self, event: &Event, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        match self {
            Self::Id => f(event.id()),
            Self::Type => f(event.ty()),
            Self::Source => f(event.source()),
            Self::Subject => event.subject().is_some_and(f),
            Self::SpecVersion => f(event.specversion().as_str()),
            Self::DataContentType => event.datacontenttype().is_some_and(f),
            Self::DataSchema => event.dataschema().is_some_and(|u| f(u.as_str())),
            Self::Time => event.time().is_some_and(|t| {
                let mut buf = StackStr::new();
                write_time(&mut buf, t);
                f(buf.as_str())
            }),
            Self::Extension(name) => match event.extension(name) {
                Some(ExtensionValue::String(s)) => f(s),
                Some(ExtensionValue::Boolean(b)) => f(if *b { "true" } else { "false" }),
                Some(ExtensionValue::Integer(i)) => {
                    let mut buf = StackStr::new();
                    let _ = write!(buf, "{i}");
                    f(buf.as_str())
                }
                None => false,
            },
            Self::Data(segments) => match event.data() {
                Some(Data::Json(v)) => visit(v, segments, f),
                Some(Data::String(s)) if segments.is_empty() => f(s),
                _ => false,
            },
        }
    }

    /// The first scalar at this path, rendered as text.
    pub fn first(&self, event: &Event) -> Option<String> {
        let mut found = None;
        self.any(event, &mut |v| {
            found = Some(v.to_owned());
            true
        });
        found
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Id => "id",
            Self::Type => "type",
            Self::Source => "source",
            Self::Subject => "subject",
            Self::Time => "time",
            Self::SpecVersion => "specversion",
            Self::DataContentType => "datacontenttype",
            Self::DataSchema => "dataschema",
            Self::Extension(name) => name,
            Self::Data(segments) => {
                f.write_str("data")?;
                for s in segments.iter() {
                    write!(f, ".{}", s.key)?;
                }
                return Ok(());
            }
        };
        f.write_str(name)
    }
}

fn visit(value: &Value, segments: &[Segment], f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
    match (value, segments.split_first()) {
        (Value::Object(map), Some((seg, rest))) => {
            field(map, &seg.key).is_some_and(|v| visit(v, rest, f))
        }
        (Value::Array(items), Some((seg, rest))) => match seg.index {
            Some(i) => items.get(i).is_some_and(|v| visit(v, rest, f)),
            None => items.iter().any(|v| visit(v, segments, f)),
        },
        (_, Some(_)) => false,
        (Value::String(s), None) => f(s),
        (Value::Bool(b), None) => f(if *b { "true" } else { "false" }),
        (Value::Number(n), None) => {
            let mut buf = StackStr::new();
            let _ = write!(buf, "{n}");
            f(buf.as_str())
        }
        (Value::Array(items), None) => items.iter().any(|v| visit(v, &[], f)),
        (Value::Null | Value::Object(_), None) => false,
    }
}

/// Objects up to this size are searched linearly: comparing a few keys
/// (lengths first) is cheaper than hashing one (serde_json keeps insertion
/// order, so its map is an `IndexMap` with SipHash).
const LINEAR_LOOKUP: usize = 32;

#[inline]
fn field<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= LINEAR_LOOKUP {
        map.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get(key)
    }
}

/// Renders a time exactly as the event's JSON form does.
fn write_time(buf: &mut StackStr, t: &chrono::DateTime<chrono::Utc>) {
    let _ = write!(buf, "{}", t.format("%Y-%m-%dT%H:%M:%S%.fZ"));
}

/// A fixed-size string buffer for rendering numbers and times without
/// allocating.
pub(super) struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl StackStr {
    pub(super) fn new() -> Self {
        Self {
            buf: [0; 64],
            len: 0,
        }
    }

    pub(super) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this is valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use serde_json::json;

    fn event() -> Event {
        EventBuilderV10::new()
            .id("e1")
            .ty("t")
            .source("s://x")
            .subject("node-1")
            .extension("tenant", "acme")
            .extension("count", 3i64)
            .data(
                "application/json",
                json!({"a": {"b": [ {"c": "x"}, {"c": 5} ], "n": null, "f": 1.5, "t": true}, "codes": ["X", "Y"]}),
            )
            .build()
            .unwrap()
    }

    fn all(path: &str) -> Vec<String> {
        let mut out = Vec::new();
        FieldPath::parse(path).unwrap().any(&event(), &mut |v| {
            out.push(v.to_owned());
            false
        });
        out
    }

    #[test]
    fn reads_attributes_extensions_and_data() {
        assert_eq!(all("id"), ["e1"]);
        assert_eq!(all("subject"), ["node-1"]);
        assert_eq!(all("tenant"), ["acme"]);
        assert_eq!(all("count"), ["3"]);
        assert_eq!(all("data.a.b.c"), ["x", "5"]);
        assert_eq!(all("data.a.b.1.c"), ["5"]);
        assert_eq!(all("data.codes"), ["X", "Y"]);
        assert_eq!(all("data.a.f"), ["1.5"]);
        assert_eq!(all("data.a.t"), ["true"]);
        assert!(all("data.a.n").is_empty(), "null never matches");
        assert!(all("data.a.missing").is_empty());
        assert!(all("dataschema").is_empty());
        assert!(all("data.a").is_empty(), "objects are not scalars");
    }

    #[test]
    fn large_objects_are_looked_up_by_hash() {
        let mut data = serde_json::Map::new();
        for i in 0..(LINEAR_LOOKUP * 2) {
            data.insert(format!("k{i}"), json!(i));
        }
        let event = EventBuilderV10::new()
            .id("e")
            .ty("t")
            .source("s")
            .data("application/json", Value::Object(data))
            .build()
            .unwrap();
        let last = format!("data.k{}", LINEAR_LOOKUP * 2 - 1);
        assert_eq!(
            FieldPath::parse(&last).unwrap().first(&event).as_deref(),
            Some(&*format!("{}", LINEAR_LOOKUP * 2 - 1))
        );
        assert_eq!(
            FieldPath::parse("data.k0")
                .unwrap()
                .first(&event)
                .as_deref(),
            Some("0")
        );
        assert_eq!(FieldPath::parse("data.nope").unwrap().first(&event), None);
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(matches!(
            FieldPath::parse("data..x"),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(
            FieldPath::parse("Namespace"),
            Err(PathError::BadName(_))
        ));
        assert!(FieldPath::parse("namespace").unwrap().is_extension());
        assert_eq!(
            FieldPath::parse("data.a.b").unwrap().to_string(),
            "data.a.b"
        );
    }
}
