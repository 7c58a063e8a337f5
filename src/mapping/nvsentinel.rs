//! The `nvsentinel` profile: a document of NVSentinel's `HealthEvents`
//! collection (field names lower-cased by its Go driver) → the CloudEvent
//! NVSentinel's own event exporter sends (its transformer's members, JSON
//! types and presence rules: enums as numbers, `gpuUUID` only with a
//! GPU_UUID entity, overrides and metadata only when set), with additions:
//! the `id` is derived from `_id` (stable across replays), `subject` is the
//! node name, `processingStrategy` and `customRecommendedAction` are in
//! `data.healthEvent`.
//!
//! Missing fields take protobuf zero values, as the Go driver would give; a
//! field of the wrong type makes the document malformed.
//!
//! A document that carries NVSentinel's trace context (`metadata.trace_id`
//! and `healtheventstatus.spanids["platform-connector"]`) gets it as the
//! CloudEvents distributed tracing extension (`traceparent`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10, event::Event};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{MapError, derive_id, extjson};
use crate::event::enums;
use crate::event::trace::{self, TraceParent};
use crate::mapping::EnumStyle;

/// The CloudEvent `type` NVSentinel uses.
pub const EVENT_TYPE: &str = "com.nvidia.nvsentinel.health.v1";

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "_id", default)]
    id: Value,
    #[serde(rename = "createdAt", default)]
    created_at: Value,
    #[serde(default, deserialize_with = "nullable")]
    healthevent: Option<HealthEvent>,
    /// Read only for a document with a trace id (most have none).
    #[serde(default, borrow)]
    healtheventstatus: Option<&'a RawValue>,
}

/// What the mapping reads of `healtheventstatus`: the span id NVSentinel's
/// platform connector wrote when it stored the event (its trace id is in
/// `healthevent.metadata.trace_id`). A status it cannot read just gives no
/// trace context.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    #[serde(alias = "span_ids", deserialize_with = "nullable")]
    spanids: SpanIds,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SpanIds {
    #[serde(
        rename = "platform-connector",
        alias = "platform_connector",
        deserialize_with = "nullable"
    )]
    platform_connector: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HealthEvent {
    #[serde(deserialize_with = "nullable")]
    version: u32,
    #[serde(deserialize_with = "nullable")]
    agent: String,
    #[serde(deserialize_with = "nullable")]
    componentclass: String,
    #[serde(deserialize_with = "nullable")]
    checkname: String,
    #[serde(deserialize_with = "nullable")]
    isfatal: bool,
    #[serde(deserialize_with = "nullable")]
    ishealthy: bool,
    #[serde(deserialize_with = "nullable")]
    message: String,
    #[serde(deserialize_with = "nullable")]
    recommendedaction: i64,
    #[serde(deserialize_with = "nullable")]
    errorcode: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    entitiesimpacted: Vec<Entity>,
    #[serde(deserialize_with = "nullable")]
    metadata: BTreeMap<String, String>,
    generatedtimestamp: Option<Timestamp>,
    #[serde(deserialize_with = "nullable")]
    nodename: String,
    quarantineoverrides: Option<BehaviourOverrides>,
    drainoverrides: Option<BehaviourOverrides>,
    #[serde(deserialize_with = "nullable")]
    processingstrategy: i64,
    #[serde(deserialize_with = "nullable")]
    customrecommendedaction: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entity {
    #[serde(deserialize_with = "nullable_required")]
    entitytype: String,
    #[serde(default, deserialize_with = "nullable")]
    entityvalue: String,
}

#[derive(Deserialize)]
struct Timestamp {
    #[serde(default, deserialize_with = "nullable")]
    seconds: i64,
    #[serde(default, deserialize_with = "nullable")]
    nanos: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BehaviourOverrides {
    #[serde(deserialize_with = "nullable")]
    force: bool,
    #[serde(deserialize_with = "nullable")]
    skip: bool,
}

/// `null` reads as the zero value (a nil slice or unset scalar in Go).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An entity without a type is malformed: say so instead of exporting `""`.
fn nullable_required<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<String>::deserialize(d)?.ok_or_else(|| serde::de::Error::custom("must not be null"))
}

/// An enum member as NVSentinel's exporter sends it (its number, an int32
/// in Go), or by name when `mapping.enums: names`.
fn enum_value(style: EnumStyle, table: &[(i64, &'static str)], n: i64) -> Value {
    match style {
        EnumStyle::Numbers => Value::from(n),
        EnumStyle::Names => Value::String(enums::name(table, n).into_owned()),
    }
}

pub fn map(
    record: &[u8],
    metadata: &Map<String, Value>,
    style: EnumStyle,
) -> Result<Event, MapError> {
    let doc: Document = match serde_json::from_slice(record) {
        Ok(doc) => doc,
        Err(_) => return Err(explain(record)),
    };
    let record_id = extjson::id_text(&doc.id);
    let Some(he) = doc.healthevent else {
        return Err(MapError::new(record_id, "document has no healthevent"));
    };

    let generated = he.generatedtimestamp.as_ref().and_then(|ts| {
        let nanos = u32::try_from(ts.nanos).ok()?;
        DateTime::<Utc>::from_timestamp(ts.seconds, nanos)
    });
    if let Some(t) = generated.filter(|t| !crate::event::rfc3339_writes(t)) {
        return Err(MapError::new(
            record_id,
            format!(
                "healthevent.generatedtimestamp is in the year {}: a CloudEvent's time is RFC 3339 (years 0000 to 9999)",
                chrono::Datelike::year(&t)
            ),
        ));
    }
    let time = generated
        .or_else(|| extjson::date(&doc.created_at))
        .unwrap_or_else(Utc::now);
    let timestamp = extjson::rfc3339_nano(&time);

    let mut gpu_uuid = None;
    let entities: Vec<Value> = he
        .entitiesimpacted
        .into_iter()
        .map(|e| {
            if e.entitytype == "GPU_UUID" {
                gpu_uuid = Some(e.entityvalue.clone());
            }
            let mut entity = Map::new();
            entity.insert("entityType".into(), e.entitytype.into());
            entity.insert("entityValue".into(), e.entityvalue.into());
            Value::Object(entity)
        })
        .collect();

    let mut event_data = Map::new();
    event_data.insert("version".into(), he.version.into());
    event_data.insert("agent".into(), he.agent.into());
    event_data.insert("componentClass".into(), he.componentclass.into());
    event_data.insert("checkName".into(), he.checkname.into());
    event_data.insert("isFatal".into(), he.isfatal.into());
    event_data.insert("isHealthy".into(), he.ishealthy.into());
    event_data.insert("message".into(), he.message.into());
    event_data.insert(
        "recommendedAction".into(),
        enum_value(style, enums::RECOMMENDED_ACTION, he.recommendedaction),
    );
    event_data.insert("errorCode".into(), he.errorcode.into());
    event_data.insert("entitiesImpacted".into(), entities.into());
    event_data.insert("generatedTimestamp".into(), timestamp.clone().into());
    event_data.insert("nodeName".into(), he.nodename.clone().into());
    event_data.insert(
        "processingStrategy".into(),
        enum_value(style, enums::PROCESSING_STRATEGY, he.processingstrategy),
    );
    if !he.customrecommendedaction.is_empty() {
        event_data.insert(
            "customRecommendedAction".into(),
            he.customrecommendedaction.into(),
        );
    }
    // The platform connector's span: the context the event was created in.
    let traceparent = he.metadata.get("trace_id").and_then(|t| {
        let status: Status = serde_json::from_str(doc.healtheventstatus?.get()).ok()?;
        TraceParent::from_ids(t, &status.spanids.platform_connector)
    });
    if !he.metadata.is_empty() {
        let m: Map<String, Value> = he
            .metadata
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        event_data.insert("metadata".into(), m.into());
    }
    if let Some(o) = he.quarantineoverrides {
        event_data.insert(
            "quarantineOverrides".into(),
            json!({"force": o.force, "skip": o.skip}),
        );
    }
    if let Some(o) = he.drainoverrides {
        event_data.insert(
            "drainOverrides".into(),
            json!({"force": o.force, "skip": o.skip}),
        );
    }
    // As NVSentinel: the last GPU_UUID entity's value, when not empty.
    if let Some(g) = gpu_uuid.filter(|g| !g.is_empty()) {
        event_data.insert("gpuUUID".into(), g.into());
    }

    let cluster = metadata
        .get("cluster")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = match &record_id {
        Some(oid) => derive_id("nvsentinel", oid.as_bytes()),
        None => derive_id("nvsentinel-content", record),
    };
    let mut data = Map::new();
    data.insert("metadata".into(), Value::Object(metadata.clone()));
    data.insert("healthEvent".into(), Value::Object(event_data));
    let data = Value::Object(data);
    let mut builder = EventBuilderV10::new()
        .id(id)
        .ty(EVENT_TYPE)
        .source(format!("nvsentinel://{cluster}/healthevents"))
        .time(time)
        .data("application/json", data);
    if !he.nodename.is_empty() {
        builder = builder.subject(he.nodename);
    }
    let mut event = builder
        .build()
        .map_err(|e| MapError::new(record_id, format!("cannot build CloudEvent: {e}")))?;
    if let Some(tp) = traceparent {
        trace::set_extension(&mut event, &tp, None);
    }
    Ok(event)
}

/// Parses again, slowly, to say where a document is malformed.
fn explain(record: &[u8]) -> MapError {
    let id = serde_json::from_slice::<Value>(record)
        .ok()
        .and_then(|v| v.get("_id").and_then(extjson::id_text));
    let de = &mut serde_json::Deserializer::from_slice(record);
    let reason = match serde_path_to_error::deserialize::<_, Document>(de) {
        Err(e) if e.path().to_string() != "." => {
            format!("{}: {}", e.path(), strip_position(e.inner()))
        }
        Err(e) => strip_position(e.inner()),
        Ok(_) => "malformed document".to_owned(),
    };
    MapError::new(id, reason)
}

/// serde_json's "at line 1 column 345" says nothing useful for one-line records.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
