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
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// Read by the Go driver's names, written by NVSentinel's transformer's.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Entity {
    #[serde(
        rename(serialize = "entityType"),
        deserialize_with = "nullable_required"
    )]
    entitytype: String,
    #[serde(
        rename(serialize = "entityValue"),
        default,
        deserialize_with = "nullable"
    )]
    entityvalue: String,
}

#[derive(Deserialize)]
struct Timestamp {
    #[serde(default, deserialize_with = "nullable")]
    seconds: i64,
    #[serde(default, deserialize_with = "nullable")]
    nanos: i64,
}

#[derive(Deserialize, Serialize, Default)]
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

/// A document read: what both of the profile's outputs are made from.
struct Parsed {
    record_id: Option<String>,
    he: HealthEvent,
    time: DateTime<Utc>,
    /// `time` as NVSentinel writes `generatedTimestamp`.
    timestamp: String,
    /// The last GPU_UUID entity's value, when not empty (as NVSentinel).
    gpu_uuid: Option<String>,
    traceparent: Option<TraceParent>,
}

fn parse(record: &[u8]) -> Result<Parsed, MapError> {
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
    let gpu_uuid = he
        .entitiesimpacted
        .iter()
        .rev()
        .find(|e| e.entitytype == "GPU_UUID")
        .map(|e| e.entityvalue.clone())
        .filter(|g| !g.is_empty());
    // The platform connector's span: the context the event was created in.
    let traceparent = he.metadata.get("trace_id").and_then(|t| {
        let status: Status = serde_json::from_str(doc.healtheventstatus?.get()).ok()?;
        TraceParent::from_ids(t, &status.spanids.platform_connector)
    });
    Ok(Parsed {
        record_id,
        he,
        time,
        timestamp,
        gpu_uuid,
        traceparent,
    })
}

pub fn map(
    record: &[u8],
    metadata: &Map<String, Value>,
    style: EnumStyle,
) -> Result<Event, MapError> {
    let p = parse(record)?;
    let mut event = attributes(&p, record, metadata)?;
    let data = serde_json::to_value(Data {
        metadata,
        p: &p,
        style,
    })
    .expect("health event data is JSON");
    event.set_data_unchecked(data);
    Ok(event)
}

/// The profile without a DOM: the event's attributes (its data left out)
/// and its structured-mode JSON, written straight from the document read —
/// the same bytes [`crate::event::write_json`] writes for [`map`]'s event.
pub fn encode(
    record: &[u8],
    metadata: &Map<String, Value>,
    style: EnumStyle,
    out: &mut Vec<u8>,
) -> Result<Event, MapError> {
    let p = parse(record)?;
    let event = attributes(&p, record, metadata)?;
    let data = Data {
        metadata,
        p: &p,
        style,
    };
    crate::event::write_json_with_data(&event, &data, out);
    Ok(event)
}

/// The CloudEvent's attributes, `datacontenttype` JSON (no data yet).
fn attributes(p: &Parsed, record: &[u8], metadata: &Map<String, Value>) -> Result<Event, MapError> {
    let cluster = metadata
        .get("cluster")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = match &p.record_id {
        Some(oid) => derive_id("nvsentinel", oid.as_bytes()),
        None => derive_id("nvsentinel-content", record),
    };
    let mut builder = EventBuilderV10::new()
        .id(id)
        .ty(EVENT_TYPE)
        .source(format!("nvsentinel://{cluster}/healthevents"))
        .time(p.time);
    if !p.he.nodename.is_empty() {
        builder = builder.subject(p.he.nodename.clone());
    }
    let mut event = builder
        .build()
        .map_err(|e| MapError::new(p.record_id.clone(), format!("cannot build CloudEvent: {e}")))?;
    if let Some(tp) = &p.traceparent {
        trace::set_extension(&mut event, tp, None);
    }
    use cloudevents::event::AttributesWriter;
    event.set_datacontenttype(Some("application/json"));
    Ok(event)
}

/// The CloudEvent's `data`: `{"metadata": <config metadata>, "healthEvent":
/// {…}}`, members in NVSentinel's order, presence rules as its transformer.
struct Data<'a> {
    metadata: &'a Map<String, Value>,
    p: &'a Parsed,
    style: EnumStyle,
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("metadata", self.metadata)?;
        map.serialize_entry("healthEvent", &Health(self))?;
        map.end()
    }
}

struct Health<'a, 'b>(&'b Data<'a>);

impl Serialize for Health<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Data { p, style, .. } = self.0;
        let he = &p.he;
        let enum_value = |table, n| EnumOut(*style, table, n);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("version", &he.version)?;
        map.serialize_entry("agent", &he.agent)?;
        map.serialize_entry("componentClass", &he.componentclass)?;
        map.serialize_entry("checkName", &he.checkname)?;
        map.serialize_entry("isFatal", &he.isfatal)?;
        map.serialize_entry("isHealthy", &he.ishealthy)?;
        map.serialize_entry("message", &he.message)?;
        map.serialize_entry(
            "recommendedAction",
            &enum_value(enums::RECOMMENDED_ACTION, he.recommendedaction),
        )?;
        map.serialize_entry("errorCode", &he.errorcode)?;
        map.serialize_entry("entitiesImpacted", &he.entitiesimpacted)?;
        map.serialize_entry("generatedTimestamp", &p.timestamp)?;
        map.serialize_entry("nodeName", &he.nodename)?;
        map.serialize_entry(
            "processingStrategy",
            &enum_value(enums::PROCESSING_STRATEGY, he.processingstrategy),
        )?;
        if !he.customrecommendedaction.is_empty() {
            map.serialize_entry("customRecommendedAction", &he.customrecommendedaction)?;
        }
        if !he.metadata.is_empty() {
            map.serialize_entry("metadata", &he.metadata)?;
        }
        if let Some(o) = &he.quarantineoverrides {
            map.serialize_entry("quarantineOverrides", o)?;
        }
        if let Some(o) = &he.drainoverrides {
            map.serialize_entry("drainOverrides", o)?;
        }
        if let Some(g) = &p.gpu_uuid {
            map.serialize_entry("gpuUUID", g)?;
        }
        map.end()
    }
}

/// An enum member as NVSentinel's exporter sends it (its number, an int32
/// in Go), or by name when `mapping.enums: names`.
struct EnumOut(EnumStyle, &'static [(i64, &'static str)], i64);

impl Serialize for EnumOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            EnumStyle::Numbers => s.serialize_i64(self.2),
            EnumStyle::Names => s.serialize_str(&enums::name(self.1, self.2)),
        }
    }
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
