//! Mapping tests over the shared NVSentinel sample documents. The whole
//! sample set is also covered by the golden test in `tests/it/config/mapping_golden.rs`.

use serde_json::{Map, Value, json};

use super::*;
use crate::event::AttributesReader;
use crate::mapping::{EnumStyle, Profile};

const SAMPLES: &str = include_str!("../../examples/health-events.jsonl");
const MALFORMED: &str =
    include_str!("../../tests/testdata/nvsentinel/malformed-health-events.jsonl");

fn metadata() -> Map<String, Value> {
    json!({"cluster": "prod-us-west", "environment": "production"})
        .as_object()
        .unwrap()
        .clone()
}

fn nvsentinel() -> Mapper {
    Mapper::new(Profile::Nvsentinel, metadata(), Overrides::default())
}

fn to_json(event: &Event) -> Value {
    crate::event::to_value(event)
}

#[test]
fn first_sample_maps_to_the_nvsentinel_cloudevent() {
    let line = SAMPLES.lines().next().unwrap();
    let event = nvsentinel().map(line.as_bytes()).unwrap();
    let expected = json!({
        "specversion": "1.0",
        // UUIDv5 of the _id: fixed for ever, so receivers can deduplicate replays.
        "id": "1e40eb44-7491-5e8c-9554-b64dce52a75a",
        "type": "com.nvidia.nvsentinel.health.v1",
        "source": "nvsentinel://prod-us-west/healthevents",
        "subject": "gpu-node-1618",
        "time": "2026-10-01T00:00:00.650934Z",
        "datacontenttype": "application/json",
        "data": {
            "metadata": {"cluster": "prod-us-west", "environment": "production"},
            "healthEvent": {
                "version": 1,
                "agent": "csp-health-monitor",
                "componentClass": "NIC",
                "checkName": "InfiniBandError",
                "isFatal": false,
                "isHealthy": true,
                "message": "InfiniBandError on gpu-node-1618: cleared",
                "recommendedAction": 0,
                "errorCode": [],
                "entitiesImpacted": [{"entityType": "NIC", "entityValue": "mlx5_1"}],
                "generatedTimestamp": "2026-10-01T00:00:00.650934Z",
                "nodeName": "gpu-node-1618",
                "processingStrategy": 0,
                "metadata": {"rack": "r28", "zone": "us-west-2b"}
            }
        }
    });
    assert_eq!(to_json(&event), expected);
}

#[test]
fn ids_are_stable_and_distinct() {
    let first = SAMPLES.lines().next().unwrap().as_bytes();
    let id = nvsentinel().map(first).unwrap().id().to_owned();
    // Pinned: changing how ids are derived would break deduplication downstream.
    assert_eq!(id, "1e40eb44-7491-5e8c-9554-b64dce52a75a");
    assert_eq!(id, derive_id("nvsentinel", b"0f21ddb66cad4a268d116ece"));
    assert_eq!(
        nvsentinel().map(first).unwrap().id(),
        id,
        "same document, same id"
    );
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(uuid.get_version_num(), 5);
    let ids: std::collections::HashSet<String> = SAMPLES
        .lines()
        .map(|l| nvsentinel().map(l.as_bytes()).unwrap().id().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        SAMPLES.lines().count(),
        "every document gets its own id"
    );
}

#[test]
fn optional_fields_appear_only_when_set() {
    let line = SAMPLES.lines().nth(3).unwrap();
    let data = to_json(&nvsentinel().map(line.as_bytes()).unwrap())["data"]["healthEvent"].clone();
    assert_eq!(
        data["quarantineOverrides"],
        json!({"force": true, "skip": false})
    );
    assert!(data.get("drainOverrides").is_none());
    assert!(data.get("customRecommendedAction").is_none());
    assert_eq!(data["processingStrategy"], 1);
    let custom = SAMPLES.lines().nth(19).unwrap();
    let data =
        to_json(&nvsentinel().map(custom.as_bytes()).unwrap())["data"]["healthEvent"].clone();
    assert!(
        data["customRecommendedAction"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

#[test]
fn enums_render_as_numbers_by_default_and_as_names_when_asked() {
    let doc = |ra: i64, ps: i64| {
        format!(
            r#"{{"_id":{{"$oid":"aa"}},"healthevent":{{"recommendedaction":{ra},"processingstrategy":{ps},"nodename":"n"}}}}"#
        )
    };
    let names = nvsentinel().with_enums(EnumStyle::Names);
    for (ra, name) in [
        (0, "NONE"),
        (2, "COMPONENT_RESET"),
        (5, "CONTACT_SUPPORT"),
        (6, "RUN_FIELDDIAG"),
        (15, "RESTART_VM"),
        (24, "RESTART_BM"),
        (25, "REPLACE_VM"),
        (26, "RUN_DCGMEUD"),
        (27, "CUSTOM"),
        (99, "UNKNOWN"),
        (12345, "12345"),
    ] {
        let ev = to_json(&nvsentinel().map(doc(ra, 0).as_bytes()).unwrap());
        // A JSON number, as NVSentinel's transformer sends (int32 of the enum).
        assert_eq!(ev["data"]["healthEvent"]["recommendedAction"], json!(ra));
        let ev = to_json(&names.map(doc(ra, 0).as_bytes()).unwrap());
        assert_eq!(ev["data"]["healthEvent"]["recommendedAction"], name);
    }
    for (ps, name) in [
        (0, "UNSPECIFIED"),
        (1, "EXECUTE_REMEDIATION"),
        (2, "STORE_ONLY"),
        (3, "STORE_AND_ANALYSE"),
        (7, "7"),
    ] {
        let ev = to_json(&nvsentinel().map(doc(0, ps).as_bytes()).unwrap());
        assert_eq!(ev["data"]["healthEvent"]["processingStrategy"], json!(ps));
        let ev = to_json(&names.map(doc(0, ps).as_bytes()).unwrap());
        assert_eq!(ev["data"]["healthEvent"]["processingStrategy"], name);
    }
}

#[test]
fn time_falls_back_to_created_at_then_now() {
    let no_generated = r#"{"_id":{"$oid":"ab"},"createdAt":{"$date":"2026-10-01T00:00:09.544Z"},"healthevent":{"nodename":"n","generatedtimestamp":null}}"#;
    let ev = to_json(&nvsentinel().map(no_generated.as_bytes()).unwrap());
    assert_eq!(ev["time"], "2026-10-01T00:00:09.544Z");
    assert_eq!(
        ev["data"]["healthEvent"]["generatedTimestamp"],
        "2026-10-01T00:00:09.544Z"
    );
    let nothing = r#"{"_id":{"$oid":"ac"},"healthevent":{"nodename":"n"}}"#;
    let before = chrono::Utc::now();
    let ev = nvsentinel().map(nothing.as_bytes()).unwrap();
    assert!(*ev.time().unwrap() >= before);
}

/// An offset can carry a time written in year 0000 or 9999 out of those
/// years in UTC, where RFC 3339 cannot write it (the mapping fuzzer's find):
/// a CloudEvent record with one is refused, a Kubernetes Event's such time
/// is passed over like an unreadable one.
#[test]
fn a_time_outside_rfc_3339_years_in_utc_is_not_carried() {
    let ce = Mapper::new(Profile::Cloudevents, Map::new(), Overrides::default());
    for time in ["0000-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"] {
        let record =
            format!(r#"{{"specversion":"1.0","id":"a","source":"b","type":"c","time":"{time}"}}"#);
        let err = ce.map(record.as_bytes()).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("a"));
        assert!(
            err.reason.contains("outside the years 0000 to 9999"),
            "{err}"
        );
    }
    let inside = r#"{"specversion":"1.0","id":"a","source":"b","type":"c","time":"0000-01-01T01:30:00+01:00"}"#;
    let ev = to_json(&ce.map(inside.as_bytes()).unwrap());
    assert_eq!(ev["time"], "0000-01-01T00:30:00Z");

    let k8s = Mapper::new(Profile::KubernetesEvent, metadata(), Overrides::default());
    let record = r#"{"metadata":{"uid":"u","creationTimestamp":"2026-11-20T10:00:00Z"},"involvedObject":{"kind":"Pod"},"lastTimestamp":"0000-01-01T00:30:00+01:00"}"#;
    let ev = to_json(&k8s.map(record.as_bytes()).unwrap());
    assert_eq!(ev["time"], "2026-11-20T10:00:00Z");
}

#[test]
fn gpu_uuid_entity_is_lifted_like_nvsentinel_does() {
    let doc = r#"{"_id":{"$oid":"ad"},"healthevent":{"nodename":"n","entitiesimpacted":[{"entitytype":"GPU_UUID","entityvalue":"GPU-1"}]}}"#;
    let ev = to_json(&nvsentinel().map(doc.as_bytes()).unwrap());
    assert_eq!(ev["data"]["healthEvent"]["gpuUUID"], "GPU-1");
}

/// Every malformed sample: mapped (when the document is merely odd) or
/// rejected with a reason naming the field. None panics.
#[test]
fn malformed_samples() {
    let expected: [Result<(), &str>; 16] = [
        Err("document has no healthevent"),
        Err("healthevent.isfatal: invalid type: string \"yes\", expected a boolean"),
        Ok(()), // 200 KB unicode message
        Ok(()), // generatedtimestamp null: time from createdAt
        Ok(()), // unknown recommendedaction: "12345"
        Err("healthevent.entitiesimpacted[0].entitytype: must not be null"),
        Ok(()), // NUL byte in the node name: kept, JSON-escaped on output
        Err("healthevent.errorcode: invalid type: string \"XID_79\", expected a sequence"),
        Err("document has no healthevent"),
        Err("healthevent.isfatal: invalid type: string \"yes\", expected a boolean"),
        Ok(()),
        Ok(()),
        Ok(()),
        Err("healthevent.entitiesimpacted[0].entitytype: must not be null"),
        Ok(()),
        Err("healthevent.errorcode: invalid type: string \"XID_79\", expected a sequence"),
    ];
    let lines: Vec<&str> = MALFORMED.lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (i, (line, want)) in lines.iter().zip(expected).enumerate() {
        let got = nvsentinel().map(line.as_bytes());
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(reason)) => {
                assert_eq!(e.reason, reason, "line {}", i + 1);
                assert!(e.id.is_some(), "line {}: the _id is reported", i + 1);
            }
            (got, want) => panic!("line {}: got {got:?}, want {want:?}", i + 1),
        }
    }
    let big = to_json(&nvsentinel().map(lines[2].as_bytes()).unwrap());
    assert!(
        big["data"]["healthEvent"]["message"]
            .as_str()
            .unwrap()
            .len()
            > 200_000
    );
    let nul = nvsentinel().map(lines[6].as_bytes()).unwrap();
    assert_eq!(nul.subject(), Some("gpu-node-\0-nul"));
}

#[test]
fn not_json_is_malformed() {
    let e = nvsentinel().map(b"{\"_id\": ").unwrap_err();
    assert!(e.reason.contains("EOF"), "{}", e.reason);
    assert!(nvsentinel().map(b"[1,2]").is_err());
}

fn raw(ty: &str, source: &str) -> Mapper {
    let meta = metadata();
    let overrides = Overrides {
        ty: Some(Template::compile(ty, &meta).unwrap()),
        source: Some(Template::compile(source, &meta).unwrap()),
        subject: None,
    };
    Mapper::new(Profile::Raw, meta, overrides)
}

#[test]
fn raw_profile() {
    let m = raw("k8s.{{data.kind}}", "cluster://{{metadata.cluster}}");
    let ev = m.map(br#"{"_id":{"$oid":"0f21"},"kind":"Pod"}"#).unwrap();
    assert_eq!(ev.id(), "0f21");
    assert_eq!(ev.ty(), "k8s.Pod");
    assert_eq!(ev.source(), "cluster://prod-us-west");
    assert_eq!(
        to_json(&ev)["data"],
        json!({"_id": {"$oid": "0f21"}, "kind": "Pod"})
    );
    assert_eq!(m.map(br#"{"id":7,"kind":"Pod"}"#).unwrap().id(), "7");
    let a = m.map(br#"{"kind":"Pod"}"#).unwrap();
    let b = m.map(br#"{"kind":"Pod"}"#).unwrap();
    assert_eq!(a.id(), b.id(), "content hash id is stable");
    assert_ne!(a.id(), m.map(br#"{"kind":"Node"}"#).unwrap().id());
    let e = m.map(br#"{"_id":"x"}"#).unwrap_err();
    assert_eq!(e.reason, "{{data.kind}}: the event has no such field");
    assert_eq!(e.id.as_deref(), Some("x"));
}

#[test]
fn cloudevents_profile() {
    let m = Mapper::new(Profile::Cloudevents, metadata(), Overrides::default());
    let line = r#"{"specversion":"1.0","id":"x1","type":"t","source":"s","data":{"a":1}}"#;
    let ev = m.map(line.as_bytes()).unwrap();
    assert_eq!((ev.id(), ev.ty(), ev.source().as_str()), ("x1", "t", "s"));
    let e = m.map(br#"{"id":"x1"}"#).unwrap_err();
    assert!(
        e.reason.starts_with("not a structured CloudEvent"),
        "{}",
        e.reason
    );
}

#[test]
fn nvsentinel_trace_context_becomes_the_traceparent_extension() {
    use crate::event::trace::TraceParent;
    let first = SAMPLES.lines().next().unwrap();
    let mut doc: Value = serde_json::from_str(first).unwrap();
    assert_eq!(
        TraceParent::of_event(&nvsentinel().map(first.as_bytes()).unwrap()),
        None,
        "the samples carry no trace context"
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    doc["healthevent"]["metadata"]["trace_id"] = json!(trace_id);
    // A trace id without the platform connector's span: nothing to link to.
    let event = nvsentinel().map(doc.to_string().as_bytes()).unwrap();
    assert_eq!(TraceParent::of_event(&event), None);
    for key in ["platform-connector", "platform_connector"] {
        doc["healtheventstatus"]["spanids"] =
            json!({key: "00f067aa0ba902b7", "fault-quarantine": "1111111111111111"});
        let event = nvsentinel().map(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            to_json(&event)["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "{key}"
        );
        // The trace id stays in the data, as NVSentinel sends it.
        assert_eq!(
            to_json(&event)["data"]["healthEvent"]["metadata"]["trace_id"],
            trace_id
        );
    }
    // Not hex: no extension, and the document still maps.
    doc["healtheventstatus"]["spanids"] = json!({"platform-connector": "not a span id"});
    let event = nvsentinel().map(doc.to_string().as_bytes()).unwrap();
    assert_eq!(TraceParent::of_event(&event), None);
    // A status of the wrong shape gives no trace context; the event maps.
    doc["healtheventstatus"] = json!({"spanids": {"platform-connector": 7}});
    let event = nvsentinel().map(doc.to_string().as_bytes()).unwrap();
    assert_eq!(TraceParent::of_event(&event), None);
}
