//! The event model: CloudEvents 1.0 as the official SDK's [`Event`],
//! [`FieldPath`], the one way routes and templates read a field of it, and
//! [`trace`], the W3C trace context an event carries.

mod path;
pub mod trace;

pub use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
pub use path::{FieldPath, PathError, Scalar};

/// Serialises an event as one structured-mode JSON document (no newline).
pub fn write_json(event: &Event, out: &mut Vec<u8>) {
    // Serialising an `Event` into memory cannot fail: every key is a string.
    serde_json::to_writer(&mut *out, event).expect("CloudEvent serialises to JSON");
}
