//! Source record → CloudEvent. One [`Mapper`] per pipeline, built from the
//! `mapping` config: a profile plus optional templated overrides.

pub mod config;
mod extjson;
pub(crate) mod kubernetes;
mod nomad;
mod nvsentinel;
mod raw;
mod template;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use cloudevents::event::Event;
use serde_json::{Map, Value};

pub use config::{EnumStyle, MappingConfig, Profile};
pub use template::{Template, TemplateError};

/// Why a record could not be mapped. `id` is the record's `_id` (or `id`)
/// when it could be read, for the log line that reports it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{reason}")]
pub struct MapError {
    pub id: Option<String>,
    pub reason: String,
}

impl MapError {
    fn new(id: Option<String>, reason: impl Into<String>) -> Self {
        Self {
            id,
            reason: reason.into(),
        }
    }
}

/// Templated overrides of the CloudEvent `type`, `source` and `subject`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub ty: Option<Template>,
    pub source: Option<Template>,
    pub subject: Option<Template>,
}

/// Turns records into CloudEvents.
#[derive(Debug, Clone)]
pub struct Mapper {
    profile: Profile,
    /// `metadata` from the config, as the JSON object put into `data.metadata`.
    metadata: Arc<Map<String, Value>>,
    overrides: Overrides,
    enums: EnumStyle,
}

impl Mapper {
    /// `metadata` must contain `cluster` for the nvsentinel profile (checked
    /// by config validation).
    pub fn new(profile: Profile, metadata: Map<String, Value>, overrides: Overrides) -> Self {
        Self {
            profile,
            metadata: Arc::new(metadata),
            overrides,
            enums: EnumStyle::default(),
        }
    }

    /// How the `nvsentinel` profile writes enums (numbers unless told).
    pub fn with_enums(mut self, enums: EnumStyle) -> Self {
        self.enums = enums;
        self
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Maps one record (one line of JSON).
    pub fn map(&self, record: &[u8]) -> Result<Event, MapError> {
        let mut event = match self.profile {
            Profile::Nvsentinel => nvsentinel::map(record, &self.metadata, self.enums)?,
            Profile::Raw => raw::map(record)?,
            Profile::KubernetesEvent => kubernetes::map(record, &self.metadata)?,
            Profile::Cloudevents => cloudevent(record)?,
            Profile::Nomad => nomad::map(record, &self.metadata)?,
        };
        self.apply_overrides(&mut event)?;
        Ok(event)
    }

    /// Whether [`Mapper::encode`] can map this profile without a DOM: the
    /// `nvsentinel` profile without templated overrides (which read the
    /// event they change).
    pub fn encodes(&self) -> bool {
        self.profile == Profile::Nvsentinel
            && self.overrides.ty.is_none()
            && self.overrides.source.is_none()
            && self.overrides.subject.is_none()
    }

    /// Maps one record straight to its structured-mode JSON, appended to
    /// `out` (the bytes [`crate::event::write_json`] writes for what
    /// [`Mapper::map`] makes), and returns the event's attributes without
    /// its data. Only when [`Mapper::encodes`].
    pub fn encode(&self, record: &[u8], out: &mut Vec<u8>) -> Result<Event, MapError> {
        debug_assert!(self.encodes());
        nvsentinel::encode(record, &self.metadata, self.enums, out)
    }

    fn apply_overrides(&self, event: &mut Event) -> Result<(), MapError> {
        use cloudevents::event::AttributesWriter;
        let err =
            |e: TemplateError, event: &Event| MapError::new(Some(event_id(event)), e.to_string());
        if let Some(t) = &self.overrides.subject {
            let v = t.render(event).map_err(|e| err(e, event))?;
            event.set_subject(Some(v));
        }
        if let Some(t) = &self.overrides.ty {
            let v = t.render(event).map_err(|e| err(e, event))?;
            event.set_type(v);
        }
        if let Some(t) = &self.overrides.source {
            let v = t.render(event).map_err(|e| err(e, event))?;
            event.set_source(v);
        }
        Ok(())
    }
}

/// The `cloudevents` profile: the record is a structured-mode CloudEvent,
/// whose time must still be one RFC 3339 writes in UTC.
fn cloudevent(record: &[u8]) -> Result<Event, MapError> {
    use cloudevents::AttributesReader;
    let event = serde_json::from_slice::<Event>(record)
        .map_err(|e| MapError::new(None, format!("not a structured CloudEvent: {e}")))?;
    if event
        .time()
        .is_some_and(|t| !crate::event::rfc3339_writes(t))
    {
        return Err(MapError::new(
            Some(event.id().to_owned()),
            "its time is outside the years 0000 to 9999 in UTC (RFC 3339 cannot write it)",
        ));
    }
    Ok(event)
}

fn event_id(event: &Event) -> String {
    use cloudevents::AttributesReader;
    event.id().to_owned()
}

/// The namespace of the UUIDv5 ids Switchyard derives from record ids, so the
/// same record always gets the same CloudEvent id.
pub const ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6a1f_5c3e_2b8d_4f07_9e21_7d4c_0b9a_3e55);

/// A deterministic id for a record: UUIDv5 of its own id, or of its bytes
/// when it has none.
pub fn derive_id(kind: &str, key: &[u8]) -> String {
    let mut name = Vec::with_capacity(kind.len() + 1 + key.len());
    name.extend_from_slice(kind.as_bytes());
    name.push(b'/');
    name.extend_from_slice(key);
    uuid::Uuid::new_v5(&ID_NAMESPACE, &name).to_string()
}
