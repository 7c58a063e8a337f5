//! What the CloudEvents protocol bindings share: every attribute as text
//! (times in RFC 3339, Go's `RFC3339Nano` form), the data as bytes, and
//! the trace context a transport header carries.

use cloudevents::event::AttributeValue;
use cloudevents::{AttributesReader, Data, Event};

use super::Item;
use crate::event::trace::{self, TraceParent};

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

/// The W3C trace context a single-event message carries in its transport's
/// headers (`traceparent`, `tracestate`): the delivery attempt's span when
/// tracing, else the event's own distributed tracing extension.
pub fn trace_context(item: &Item) -> Option<(String, Option<&str>)> {
    if let Some(tp) = &item.trace {
        return Some((tp.to_string(), None));
    }
    let tp = TraceParent::of_event(item.event())?;
    Some((tp.to_string(), trace::tracestate(item.event())))
}
