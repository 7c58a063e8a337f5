//! The `raw` profile: the JSON document itself is `data`. The id comes from
//! `_id` or `id` (ObjectIds as their hex), else from a hash of the record;
//! `type` and `source` come from the mapping config (required).

use cloudevents::{EventBuilder, EventBuilderV10, event::Event};
use serde_json::Value;

use super::{MapError, derive_id, extjson};

pub fn map(record: &[u8]) -> Result<Event, MapError> {
    let doc: Value = serde_json::from_slice(record)
        .map_err(|e| MapError::new(None, format!("not JSON: {e}")))?;
    let own_id = doc
        .get("_id")
        .or_else(|| doc.get("id"))
        .and_then(extjson::id_text)
        // An empty id is no id (a CloudEvent's must not be empty).
        .filter(|id| !id.is_empty());
    let id = own_id
        .clone()
        .unwrap_or_else(|| derive_id("raw-content", record));
    // `type` and `source` are always overridden by the mapping templates;
    // the builder needs placeholders to build.
    EventBuilderV10::new()
        .id(id)
        .ty("switchyard.raw")
        .source("switchyard")
        .data("application/json", doc)
        .build()
        .map_err(|e| MapError::new(own_id, format!("cannot build CloudEvent: {e}")))
}
