//! The `nomad` profile: one event of Nomad's event stream → a CloudEvent.
//!
//! - `id`: derived from `Topic/Type/Key/Index/ordinal`, where `ordinal`
//!   counts the events before it in its index with the same Topic, Type and
//!   Key (almost always 0), so a replayed event keeps its id whatever the
//!   source's filter.
//! - `type`: `io.hashicorp.nomad.<topic>.<type>`, lower case
//!   (`io.hashicorp.nomad.allocation.allocationupdated`).
//! - `source`: `nomad://<metadata.cluster>`, else `nomad://<host:port>` of
//!   the agent read, else `nomad`.
//! - `subject`: the event's `Key` (job ID, allocation ID, node ID …).
//! - `time`: the payload object's `ModifyTime` or `SubmitTime` (Unix
//!   nanoseconds) or `StatusUpdatedAt` (Unix seconds), when it has one.
//! - `data`: the whole Nomad event (`data.Topic`, `data.Payload.Allocation.ClientStatus`).
//!
//! A record is what `source.nomad` writes (`{"origin", "ordinal", "event"}`)
//! or a bare Nomad event (a file of them; ordinal 0).

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10, event::Event};
use serde_json::{Map, Value};

use super::{MapError, derive_id};

/// The prefix of every `type`.
pub const TYPE_PREFIX: &str = "io.hashicorp.nomad";

pub fn map(record: &[u8], metadata: &Map<String, Value>) -> Result<Event, MapError> {
    let doc: Value = serde_json::from_slice(record)
        .map_err(|e| MapError::new(None, format!("not JSON: {e}")))?;
    let (event, ordinal, origin) = match doc {
        Value::Object(mut o) if o.get("event").is_some_and(Value::is_object) => {
            let ordinal = o.get("ordinal").and_then(Value::as_u64).unwrap_or(0);
            let origin = o.get("origin").and_then(Value::as_str).map(str::to_owned);
            (o.remove("event").expect("checked"), ordinal, origin)
        }
        other => (other, 0, None),
    };
    let text = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default();
    let (topic, ty, key) = (text("Topic"), text("Type"), text("Key"));
    if topic.is_empty() || ty.is_empty() {
        return Err(MapError::new(None, "not a Nomad event (no Topic or Type)"));
    }
    let Some(index) = event.get("Index").and_then(Value::as_u64) else {
        return Err(MapError::new(None, "not a Nomad event (no Index)"));
    };
    let id = derive_id(
        "nomad",
        format!("{topic}/{ty}/{key}/{index}/{ordinal}").as_bytes(),
    );
    let source = match (metadata.get("cluster").and_then(Value::as_str), &origin) {
        (Some(cluster), _) if !cluster.is_empty() => format!("nomad://{cluster}"),
        (_, Some(origin)) => format!("nomad://{origin}"),
        _ => "nomad".to_owned(),
    };
    let ty = format!(
        "{TYPE_PREFIX}.{}.{}",
        topic.to_ascii_lowercase(),
        ty.to_ascii_lowercase()
    );
    let subject = (!key.is_empty()).then(|| key.to_owned());
    let time = payload_time(&event);
    let mut builder = EventBuilderV10::new().id(id.clone()).ty(ty).source(source);
    if let Some(subject) = subject {
        builder = builder.subject(subject);
    }
    if let Some(time) = time {
        builder = builder.time(time);
    }
    builder
        .data("application/json", event)
        .build()
        .map_err(|e| MapError::new(Some(id), format!("cannot build CloudEvent: {e}")))
}

/// The time of the object in `Payload` (`{"Allocation": {...}}`), if it has one.
fn payload_time(event: &Value) -> Option<DateTime<Utc>> {
    let object = event.get("Payload")?.as_object()?.values().next()?;
    for key in ["ModifyTime", "SubmitTime"] {
        if let Some(nanos) = object.get(key).and_then(Value::as_i64).filter(|n| *n > 0) {
            // i64 nanoseconds end in 2262: always writable.
            return Some(DateTime::from_timestamp_nanos(nanos));
        }
    }
    let secs = object
        .get("StatusUpdatedAt")
        .and_then(Value::as_i64)
        .filter(|s| *s > 0)?;
    DateTime::from_timestamp(secs, 0).filter(crate::event::rfc3339_writes)
}

#[cfg(test)]
mod tests {
    use cloudevents::AttributesReader;
    use serde_json::json;

    use super::*;

    fn allocation(index: u64) -> Value {
        json!({
            "Topic": "Allocation",
            "Type": "AllocationUpdated",
            "Key": "8c1a2f9e-5b1c-4c0e-9d0e-2a7c1b3e4f50",
            "Namespace": "default",
            "FilterKeys": ["web", "web-group"],
            "Index": index,
            "Payload": {"Allocation": {
                "ID": "8c1a2f9e-5b1c-4c0e-9d0e-2a7c1b3e4f50",
                "JobID": "web",
                "ClientStatus": "failed",
                "ModifyTime": 1_700_000_000_123_456_789_i64
            }}
        })
    }

    fn record(event: &Value, ordinal: u64) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"origin": "nomad.example:4646", "ordinal": ordinal, "event": event}),
        )
        .unwrap()
    }

    #[test]
    fn an_allocation_event_becomes_a_cloudevent() {
        let e = map(&record(&allocation(42), 1), &Map::new()).unwrap();
        assert_eq!(e.ty(), "io.hashicorp.nomad.allocation.allocationupdated");
        assert_eq!(e.source().as_str(), "nomad://nomad.example:4646");
        assert_eq!(e.subject(), Some("8c1a2f9e-5b1c-4c0e-9d0e-2a7c1b3e4f50"));
        assert_eq!(
            e.time().unwrap().to_rfc3339(),
            "2023-11-14T22:13:20.123456789+00:00"
        );
        let data: Value = match e.data().unwrap() {
            cloudevents::Data::Json(v) => v.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(data, allocation(42), "data is the whole Nomad event");
    }

    #[test]
    fn ids_are_stable_and_tell_events_of_one_index_apart() {
        let m = Map::new();
        let a = map(&record(&allocation(42), 0), &m).unwrap();
        let again = map(&record(&allocation(42), 0), &m).unwrap();
        let second = map(&record(&allocation(42), 1), &m).unwrap();
        let later = map(&record(&allocation(43), 0), &m).unwrap();
        assert_eq!(a.id(), again.id());
        assert_ne!(a.id(), second.id());
        assert_ne!(a.id(), later.id());
        // A bare event is ordinal 0.
        let bare = map(&serde_json::to_vec(&allocation(42)).unwrap(), &m).unwrap();
        assert_eq!(bare.id(), a.id());
    }

    #[test]
    fn the_cluster_names_the_source() {
        let mut m = Map::new();
        m.insert("cluster".into(), json!("prod-eu"));
        let e = map(&record(&allocation(1), 0), &m).unwrap();
        assert_eq!(e.source().as_str(), "nomad://prod-eu");
    }

    #[test]
    fn node_events_take_their_status_time_in_seconds() {
        let node = json!({"Topic": "Node", "Type": "NodeRegistration", "Key": "n1", "Namespace": "",
            "Index": 7, "Payload": {"Node": {"ID": "n1", "StatusUpdatedAt": 1602770857}}});
        let e = map(&serde_json::to_vec(&node).unwrap(), &Map::new()).unwrap();
        assert_eq!(e.time().unwrap().timestamp(), 1602770857);
        assert_eq!(e.source().as_str(), "nomad");
    }

    #[test]
    fn not_a_nomad_event() {
        for bad in [
            &b"{\"Topic\": \"Job\"}"[..],
            b"[1]",
            b"{\"Topic\":\"Job\",\"Type\":\"JobRegistered\"}",
            b"nope",
        ] {
            assert!(
                map(bad, &Map::new()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
