//! What the source reads from an object: its identity, and the document
//! the `nvsentinel` mapping reads (`HealthEventResource`s).

use chrono::DateTime;
use serde_json::{Map, Value, json};

/// The object's `metadata.uid` and `metadata.resourceVersion`.
pub fn identity(obj: &Value) -> Option<(&str, &str)> {
    let meta = obj.get("metadata")?;
    Some((
        meta.get("uid")?.as_str()?,
        meta.get("resourceVersion")?.as_str()?,
    ))
}

/// An Event object as the `kubernetes-event` mapping reads it: a watch
/// leaves out `apiVersion` and `kind`, the record has them.
pub fn with_event_kind(obj: &mut Value) {
    if let Value::Object(m) = obj {
        m.entry("apiVersion").or_insert_with(|| "v1".into());
        m.entry("kind").or_insert_with(|| "Event".into());
    }
}

/// A `HealthEventResource` as the document NVSentinel's MongoDB store
/// holds: `_id` (the object uid), `createdAt` and `healthevent`, whose
/// keys are the spec's lower-cased (the Go driver's names) and whose
/// `generatedTimestamp` is `{seconds, nanos}`. The `nvsentinel` mapping
/// then reads it exactly as it reads MongoDB documents.
pub fn health_event_document(obj: &Value) -> Result<Value, String> {
    let spec = match obj.get("spec") {
        Some(Value::Object(spec)) => spec,
        Some(_) => return Err("spec is not an object".into()),
        None => return Err("the resource has no spec".into()),
    };
    let mut he = Map::new();
    for (key, value) in spec {
        let key = key.to_ascii_lowercase();
        let value = match key.as_str() {
            "generatedtimestamp" => timestamp(value)?,
            "entitiesimpacted" | "quarantineoverrides" | "drainoverrides" => lower_keys(value),
            // protojson writes 64-bit integers as strings.
            "recommendedaction" | "processingstrategy" => enum_number(value),
            _ => value.clone(),
        };
        he.insert(key, value);
    }
    let meta = obj.get("metadata");
    Ok(json!({
        "_id": meta.and_then(|m| m.get("uid")).cloned().unwrap_or(Value::Null),
        "createdAt": meta.and_then(|m| m.get("creationTimestamp")).cloned().unwrap_or(Value::Null),
        "healthevent": he,
    }))
}

fn lower_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), lower_keys(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(lower_keys).collect()),
        other => other.clone(),
    }
}

/// An enum written as a number (or a number in a string); a name is kept
/// (the mapping then says it is malformed).
fn enum_number(v: &Value) -> Value {
    match v {
        Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(v.clone()),
        other => other.clone(),
    }
}

/// protojson's RFC 3339 timestamp → `{seconds, nanos}`.
fn timestamp(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => {
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("spec.generatedTimestamp {s:?}: {e}"))?;
            Ok(json!({"seconds": t.timestamp(), "nanos": t.timestamp_subsec_nanos()}))
        }
        Value::Null => Ok(Value::Null),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_event_resource_becomes_the_mongodb_document() {
        let cr = json!({
            "apiVersion": "healthevents.dgxc.nvidia.com/v1",
            "kind": "HealthEventResource",
            "metadata": {"name": "he-1", "uid": "u-1", "resourceVersion": "10",
                "creationTimestamp": "2026-11-20T10:00:01Z"},
            "spec": {"version": 1, "agent": "gpu-health-monitor", "checkName": "GpuXidError",
                "isFatal": true, "recommendedAction": 24, "processingStrategy": "1",
                "entitiesImpacted": [{"entityType": "GPU_UUID", "entityValue": "GPU-1"}],
                "generatedTimestamp": "2026-11-20T10:00:00.250Z", "nodeName": "node-1",
                "quarantineOverrides": {"force": true}},
            "status": {"nodeQuarantined": "Quarantined"}
        });
        let doc = health_event_document(&cr).unwrap();
        assert_eq!(doc["_id"], "u-1");
        assert_eq!(doc["createdAt"], "2026-11-20T10:00:01Z");
        let he = &doc["healthevent"];
        assert_eq!(he["checkname"], "GpuXidError");
        assert_eq!(he["isfatal"], true);
        assert_eq!(he["processingstrategy"], 1);
        assert_eq!(he["entitiesimpacted"][0]["entitytype"], "GPU_UUID");
        assert_eq!(he["quarantineoverrides"]["force"], true);
        assert_eq!(
            he["generatedtimestamp"],
            json!({"seconds": 1_795_168_800, "nanos": 250_000_000})
        );
        let bad = json!({"metadata": {"uid": "u"}, "spec": {"generatedTimestamp": "yesterday"}});
        assert!(
            health_event_document(&bad)
                .unwrap_err()
                .contains("generatedTimestamp")
        );
        assert!(health_event_document(&json!({"metadata": {}})).is_err());
    }
}
