//! What the CloudEvents protocol bindings share: every attribute as text
//! (times in RFC 3339, Go's `RFC3339Nano` form), and the data as bytes.

use cloudevents::event::AttributeValue;
use cloudevents::{AttributesReader, Data, Event};

/// Each attribute (`specversion`, `id`, … and extensions) with its text,
/// except `datacontenttype`, which bindings carry as a content type.
pub fn attributes(event: &Event) -> impl Iterator<Item = (&str, String)> {
    event
        .iter()
        .filter(|(name, _)| *name != "datacontenttype")
        .map(|(name, value)| {
            let text = match value {
                AttributeValue::Time(t) => crate::event::rfc3339_nano(t),
                other => other.to_string(),
            };
            (name, text)
        })
}

/// The event's content type, if it says.
pub fn content_type(event: &Event) -> Option<&str> {
    event.datacontenttype()
}

/// The data as bytes (JSON serialised).
pub fn data(event: &Event) -> Vec<u8> {
    match event.data() {
        Some(Data::Json(v)) => serde_json::to_vec(v).expect("JSON value serialises"),
        Some(Data::String(s)) => s.clone().into_bytes(),
        Some(Data::Binary(b)) => b.clone(),
        None => Vec::new(),
    }
}
