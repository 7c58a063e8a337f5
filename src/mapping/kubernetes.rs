//! The `kubernetes-event` profile: a core `v1` Event object (as
//! `source.kubernetes` reads it, with the involved object's labels and
//! annotations) → a CloudEvent whose `data` is the Event, so routes use
//! kubernetes-event-exporter's fields: `data.reason`, `data.type`,
//! `data.involvedObject.kind`, `data.involvedObject.labels.app`…
//!
//! - `id`: derived from the Event's uid and its count, so one occurrence
//!   keeps its id across replays and a count bump gets a new one.
//! - `type`: `io.k8s.event.<reason>` (`io.k8s.event` without a reason).
//! - `source`: `k8s://<metadata.cluster>/<namespace>` (`k8s://<cluster>`
//!   for cluster-scoped objects; the cluster is `kubernetes` when unset).
//! - `subject`: `namespace/kind/name` of the involved object (`kind/name`
//!   when it has no namespace).
//! - `time`: when the Event last happened.

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10, event::Event};
use serde_json::{Map, Value};

use super::{MapError, derive_id};

/// The CloudEvent `type` prefix.
pub const TYPE_PREFIX: &str = "io.k8s.event";

pub fn map(record: &[u8], metadata: &Map<String, Value>) -> Result<Event, MapError> {
    let event: Value = serde_json::from_slice(record)
        .map_err(|e| MapError::new(None, format!("not JSON: {e}")))?;
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let uid = text("/metadata/uid");
    let record_id = (!uid.is_empty()).then(|| uid.to_owned());
    if event.get("involvedObject").is_none_or(|o| !o.is_object()) {
        return Err(MapError::new(
            record_id,
            "not a Kubernetes Event: no involvedObject",
        ));
    }
    let count = occurrence(&event);
    let id = match &record_id {
        Some(uid) => derive_id("kubernetes-event", format!("{uid}/{count}").as_bytes()),
        None => derive_id("kubernetes-event-content", record),
    };
    let reason = text("/reason");
    let ty = if reason.is_empty() {
        TYPE_PREFIX.to_owned()
    } else {
        format!("{TYPE_PREFIX}.{reason}")
    };
    let cluster = metadata
        .get("cluster")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .unwrap_or("kubernetes");
    let namespace = text("/metadata/namespace");
    let source = if namespace.is_empty() {
        format!("k8s://{cluster}")
    } else {
        format!("k8s://{cluster}/{namespace}")
    };
    let (ns, kind, name) = (
        text("/involvedObject/namespace"),
        text("/involvedObject/kind"),
        text("/involvedObject/name"),
    );
    let subject = if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{ns}/{kind}/{name}")
    };
    let time = event_time(&event);
    let mut builder = EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source(source)
        .subject(subject);
    if let Some(t) = time {
        builder = builder.time(t);
    }
    builder
        .data("application/json", event)
        .build()
        .map_err(|e| MapError::new(record_id, format!("cannot build CloudEvent: {e}")))
}

/// How many times the Event happened: `series.count` (events.k8s.io
/// style), else `count`, else 1. A bump is a new delivery.
pub fn occurrence(event: &Value) -> u64 {
    event
        .pointer("/series/count")
        .and_then(Value::as_u64)
        .or_else(|| event.get("count").and_then(Value::as_u64))
        .unwrap_or(1)
}

fn time_at(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    crate::event::parse_rfc3339(v.pointer(pointer)?.as_str()?)
}

/// When the Event last happened: `series.lastObservedTime`,
/// `lastTimestamp`, `eventTime`, `firstTimestamp`, else its creation.
pub fn event_time(event: &Value) -> Option<DateTime<Utc>> {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| time_at(event, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn occurrence_and_time_follow_both_event_styles() {
        let core = json!({"count": 4, "lastTimestamp": "2026-11-20T10:00:00Z",
            "metadata": {"creationTimestamp": "2026-11-20T09:00:00Z"}});
        assert_eq!(occurrence(&core), 4);
        assert_eq!(
            event_time(&core).unwrap().to_rfc3339(),
            "2026-11-20T10:00:00+00:00"
        );
        let series = json!({"series": {"count": 7, "lastObservedTime": "2026-11-20T11:00:00.5Z"},
            "eventTime": "2026-11-20T08:00:00Z", "lastTimestamp": null});
        assert_eq!(occurrence(&series), 7);
        assert_eq!(event_time(&series).unwrap().timestamp(), 1_795_172_400);
        assert_eq!(occurrence(&json!({})), 1);
        assert_eq!(event_time(&json!({})), None);
    }

    fn sample() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web-1.17f", "namespace": "shop", "uid": "e-1",
                "resourceVersion": "7", "creationTimestamp": "2026-11-20T09:00:00Z"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1",
                "apiVersion": "v1", "labels": {"app": "web"}},
            "reason": "BackOff", "message": "Back-off restarting failed container",
            "type": "Warning", "count": 3, "lastTimestamp": "2026-11-20T10:00:00Z",
            "source": {"component": "kubelet", "host": "node-1"}
        })
    }

    #[test]
    fn an_event_becomes_a_cloudevent_with_the_event_as_data() {
        use cloudevents::AttributesReader;
        let metadata: Map<String, Value> = [("cluster".to_owned(), json!("eu-1"))]
            .into_iter()
            .collect();
        let record = serde_json::to_vec(&sample()).unwrap();
        let ce = map(&record, &metadata).unwrap();
        assert_eq!(ce.ty(), "io.k8s.event.BackOff");
        assert_eq!(ce.source().as_str(), "k8s://eu-1/shop");
        assert_eq!(ce.subject(), Some("shop/Pod/web-1"));
        assert_eq!(ce.time().unwrap().to_rfc3339(), "2026-11-20T10:00:00+00:00");
        assert_eq!(ce.id(), derive_id("kubernetes-event", b"e-1/3"));
        let Some(cloudevents::Data::Json(data)) = ce.data() else {
            panic!("JSON data")
        };
        assert_eq!(data["involvedObject"]["labels"]["app"], "web");
        // Replayed: the same id. Bumped: a new one.
        assert_eq!(map(&record, &metadata).unwrap().id(), ce.id());
        let mut bumped = sample();
        bumped["count"] = json!(4);
        let bumped = map(&serde_json::to_vec(&bumped).unwrap(), &metadata).unwrap();
        assert_ne!(bumped.id(), ce.id());
    }

    #[test]
    fn cluster_scoped_objects_and_bad_records() {
        use cloudevents::AttributesReader;
        let mut node = sample();
        node["involvedObject"] = json!({"kind": "Node", "name": "node-1"});
        node["metadata"]["namespace"] = json!("default");
        node["reason"] = json!("");
        let ce = map(&serde_json::to_vec(&node).unwrap(), &Map::new()).unwrap();
        assert_eq!(ce.subject(), Some("Node/node-1"));
        assert_eq!(ce.ty(), "io.k8s.event");
        assert_eq!(ce.source().as_str(), "k8s://kubernetes/default");
        let err = map(br#"{"metadata": {"uid": "x"}}"#, &Map::new()).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("x"));
        assert!(err.reason.contains("involvedObject"), "{err}");
        assert!(
            map(b"{", &Map::new())
                .unwrap_err()
                .reason
                .starts_with("not JSON")
        );
    }
}
