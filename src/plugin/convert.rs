//! CloudEvents between the host's model ([`Event`]) and the WIT record
//! (`switchyard:plugin/types.cloud-event`): attributes as text, data as the
//! bytes a receiver would get (JSON for JSON data).
//!
//! What a plugin returns is checked like any input: required attributes,
//! an RFC 3339 `time`, an absolute `dataschema` URI, extension names of
//! lower-case letters and digits, and JSON data that parses when the
//! content type says JSON. A malformed event is an error of the plugin.

use chrono::{DateTime, SecondsFormat, Utc};

use super::bindings::switchyard::plugin::types::CloudEvent;
use cloudevents::AttributesWriter;
use cloudevents::event::ExtensionValue;

use crate::event::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};

/// The WIT record for `event`.
pub fn to_wit(event: &Event) -> CloudEvent {
    CloudEvent {
        id: event.id().to_owned(),
        source: event.source().clone(),
        type_: event.ty().to_owned(),
        subject: event.subject().map(str::to_owned),
        time: event
            .time()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        datacontenttype: event.datacontenttype().map(str::to_owned),
        dataschema: event.dataschema().map(|u| u.to_string()),
        extensions: event
            .iter_extensions()
            .map(|(k, v)| {
                let text = match v {
                    ExtensionValue::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.to_owned(), text)
            })
            .collect(),
        data: event.data().map(data_bytes),
    }
}

/// The bytes of an event's data as a receiver gets them.
pub fn data_bytes(data: &Data) -> Vec<u8> {
    match data {
        Data::Json(v) => {
            // Sized for a typical health event: one allocation, no regrowth.
            let mut out = Vec::with_capacity(1024);
            serde_json::to_writer(&mut out, v).expect("a JSON value serialises");
            out
        }
        Data::String(s) => s.clone().into_bytes(),
        Data::Binary(b) => b.clone(),
    }
}

/// The event for a WIT record a plugin returned. `reuse`: the parsed data
/// to use instead of parsing the record's bytes (the caller checked they
/// are the bytes of that data).
pub fn from_wit(ce: CloudEvent, reuse: Option<Data>) -> Result<Event, String> {
    for (name, value) in [("id", &ce.id), ("source", &ce.source), ("type", &ce.type_)] {
        if value.is_empty() {
            return Err(format!("returned an event without {name}"));
        }
    }
    let mut builder = EventBuilderV10::new()
        .id(ce.id)
        .source(ce.source)
        .ty(ce.type_);
    if let Some(subject) = ce.subject {
        builder = builder.subject(subject);
    }
    if let Some(time) = ce.time {
        let parsed = DateTime::parse_from_rfc3339(&time)
            .map_err(|e| format!("returned an event with time {time:?}: {e}"))?;
        builder = builder.time(parsed.with_timezone(&Utc));
    }
    for (name, value) in ce.extensions {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "returned an event with extension {name:?}: names are lower-case letters and digits"
            ));
        }
        if crate::event::RESERVED_NAMES.contains(&name.as_str()) {
            return Err(format!(
                "returned an event with extension {name:?}: that is a CloudEvents attribute"
            ));
        }
        builder = builder.extension(&name, value);
    }
    let mut event = builder
        .build()
        .map_err(|e| format!("returned a malformed event: {e}"))?;
    let ct = ce.datacontenttype;
    if let Some(bytes) = ce.data {
        event.set_data_unchecked(match reuse {
            Some(data) => data,
            None => data(&ct, bytes)?,
        });
    }
    event.set_datacontenttype(ct);
    if let Some(schema) = ce.dataschema {
        let url: url::Url = schema
            .parse()
            .map_err(|e| format!("returned an event with dataschema {schema:?}: {e}"))?;
        event.set_dataschema(Some(url));
    }
    Ok(event)
}

fn is_json(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || essence.to_ascii_lowercase().ends_with("+json")
}

fn data(ct: &Option<String>, bytes: Vec<u8>) -> Result<Data, String> {
    match ct.as_deref() {
        Some(ct) if is_json(ct) => serde_json::from_slice(&bytes)
            .map(Data::Json)
            .map_err(|e| format!("returned an event whose {ct} data is not JSON: {e}")),
        Some(ct) if ct.starts_with("text/") => Ok(match String::from_utf8(bytes) {
            Ok(s) => Data::String(s),
            Err(e) => Data::Binary(e.into_bytes()),
        }),
        Some(_) => Ok(Data::Binary(bytes)),
        None => Ok(match serde_json::from_slice(&bytes) {
            Ok(v) => Data::Json(v),
            Err(_) => Data::Binary(bytes),
        }),
    }
}
