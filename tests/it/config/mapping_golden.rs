//! Golden test: every shared NVSentinel sample document (good and malformed)
//! through the `nvsentinel` profile. Each output line is the CloudEvent JSON
//! or `error: <_id>: <reason>`; the result must equal the committed golden
//! file. `UPDATE_GOLDEN=1` rewrites it after a deliberate change: review the
//! diff, because event ids and shapes are a contract with receivers.

use std::path::Path;

use switchyard::event::AttributesReader as _;
use switchyard::mapping::Profile;
use switchyard::mapping::{Mapper, Overrides};

fn map_all(input: &str) -> String {
    let metadata = serde_json::json!({"cluster": "golden"})
        .as_object()
        .unwrap()
        .clone();
    let mapper = Mapper::new(Profile::Nvsentinel, metadata, Overrides::default());
    let mut out = String::new();
    for line in input.lines() {
        // Mapped straight to JSON (the pipeline's way when nothing needs
        // the DOM): the same bytes, or the same error.
        let mut direct = Vec::new();
        let encoded = mapper.encode(line.as_bytes(), &mut direct);
        match mapper.map(line.as_bytes()) {
            Ok(event) => {
                let mut json = Vec::new();
                switchyard::event::write_json(&event, &mut json);
                let attributes = encoded.expect("encodes as it maps");
                assert_eq!(
                    std::str::from_utf8(&direct).unwrap(),
                    std::str::from_utf8(&json).unwrap()
                );
                assert_eq!(attributes.id(), event.id());
                out.push_str(std::str::from_utf8(&json).unwrap());
            }
            Err(e) => {
                assert_eq!(encoded.unwrap_err(), e, "encodes as it maps");
                out.push_str(&format!(
                    "error: {}: {}",
                    e.id.as_deref().unwrap_or("-"),
                    e.reason
                ))
            }
        }
        out.push('\n');
    }
    out
}

fn check(input: &str, golden: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let input = std::fs::read_to_string(root.join(input)).unwrap();
    let actual = map_all(&input);
    let golden = root.join(golden);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    for (n, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "line {} of {}", n + 1, golden.display());
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

#[test]
fn sample_documents_match_golden() {
    check(
        "examples/health-events.jsonl",
        "tests/testdata/nvsentinel/health-events.golden.jsonl",
    );
}

#[test]
fn malformed_documents_match_golden() {
    check(
        "tests/testdata/nvsentinel/malformed-health-events.jsonl",
        "tests/testdata/nvsentinel/malformed-health-events.golden.jsonl",
    );
}

/// What NVSentinel's transformer (`event-exporter/pkg/transformer/
/// cloudevents.go`) sends for a HealthEvent, written out by hand from its
/// code, member by member and type by type: enums as int32 numbers,
/// `errorCode` and `entitiesImpacted` always arrays (a nil slice becomes
/// `[]`), `metadata` and the overrides only when set, `gpuUUID` only when a
/// GPU_UUID entity has a value, times in Go's RFC3339Nano form. Switchyard's
/// additions are checked separately and then removed, so what remains must
/// equal NVSentinel's event exactly.
#[test]
fn the_default_profile_sends_what_nvsentinels_transformer_sends() {
    use serde_json::{Value, json};
    let metadata = json!({"cluster": "c1", "csp": "aws"})
        .as_object()
        .unwrap()
        .clone();
    let mapper = Mapper::new(Profile::Nvsentinel, metadata, Overrides::default());
    let cases = [
        (
            // Nil slices, nil overrides, empty metadata, a fraction with trailing zeros.
            r#"{"_id":{"$oid":"64b000000000000000000001"},"createdAt":{"$date":"2026-10-01T00:00:01Z"},"healthevent":{"version":1,"agent":"gpu-health-monitor","componentclass":"GPU","checkname":"GpuXidError","isfatal":true,"ishealthy":false,"message":"XID 79","recommendedaction":15,"errorcode":null,"entitiesimpacted":null,"metadata":{},"generatedtimestamp":{"seconds":1790812800,"nanos":120000000},"nodename":"gpu-node-7","quarantineoverrides":null,"drainoverrides":null,"processingstrategy":1}}"#,
            json!({
                "specversion": "1.0",
                "type": "com.nvidia.nvsentinel.health.v1",
                "source": "nvsentinel://c1/healthevents",
                "time": "2026-10-01T00:00:00.12Z",
                "data": {
                    "metadata": {"cluster": "c1", "csp": "aws"},
                    "healthEvent": {
                        "version": 1,
                        "agent": "gpu-health-monitor",
                        "componentClass": "GPU",
                        "checkName": "GpuXidError",
                        "isFatal": true,
                        "isHealthy": false,
                        "message": "XID 79",
                        "recommendedAction": 15,
                        "errorCode": [],
                        "entitiesImpacted": [],
                        "generatedTimestamp": "2026-10-01T00:00:00.12Z",
                        "nodeName": "gpu-node-7"
                    }
                }
            }),
        ),
        (
            // A GPU_UUID entity, both overrides, metadata, error codes.
            r#"{"_id":{"$oid":"64b000000000000000000002"},"healthevent":{"version":1,"agent":"syslog-health-monitor","componentclass":"GPU","checkname":"SysLogsXIDError","isfatal":true,"message":"XID 48","recommendedaction":2,"errorcode":["48","79"],"entitiesimpacted":[{"entitytype":"GPU_UUID","entityvalue":"GPU-aaaa"},{"entitytype":"PCI","entityvalue":"0000:3b:00.0"}],"metadata":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","rack":"r1"},"generatedtimestamp":{"seconds":1790812800},"nodename":"gpu-node-8","quarantineoverrides":{"force":true},"drainoverrides":{"skip":true}}}"#,
            json!({
                "specversion": "1.0",
                "type": "com.nvidia.nvsentinel.health.v1",
                "source": "nvsentinel://c1/healthevents",
                "time": "2026-10-01T00:00:00Z",
                "data": {
                    "metadata": {"cluster": "c1", "csp": "aws"},
                    "healthEvent": {
                        "version": 1,
                        "agent": "syslog-health-monitor",
                        "componentClass": "GPU",
                        "checkName": "SysLogsXIDError",
                        "isFatal": true,
                        "isHealthy": false,
                        "message": "XID 48",
                        "recommendedAction": 2,
                        "errorCode": ["48", "79"],
                        "entitiesImpacted": [
                            {"entityType": "GPU_UUID", "entityValue": "GPU-aaaa"},
                            {"entityType": "PCI", "entityValue": "0000:3b:00.0"}
                        ],
                        "generatedTimestamp": "2026-10-01T00:00:00Z",
                        "nodeName": "gpu-node-8",
                        "metadata": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "rack": "r1"},
                        "quarantineOverrides": {"force": true, "skip": false},
                        "drainOverrides": {"force": false, "skip": true},
                        "gpuUUID": "GPU-aaaa"
                    }
                }
            }),
        ),
        (
            // A GPU_UUID entity without a value: no gpuUUID. Unknown enum number kept.
            r#"{"_id":{"$oid":"64b000000000000000000003"},"healthevent":{"recommendedaction":12345,"entitiesimpacted":[{"entitytype":"GPU_UUID","entityvalue":""}],"generatedtimestamp":{"seconds":1790812800,"nanos":1},"nodename":""}}"#,
            json!({
                "specversion": "1.0",
                "type": "com.nvidia.nvsentinel.health.v1",
                "source": "nvsentinel://c1/healthevents",
                "time": "2026-10-01T00:00:00.000000001Z",
                "data": {
                    "metadata": {"cluster": "c1", "csp": "aws"},
                    "healthEvent": {
                        "version": 0,
                        "agent": "",
                        "componentClass": "",
                        "checkName": "",
                        "isFatal": false,
                        "isHealthy": false,
                        "message": "",
                        "recommendedAction": 12345,
                        "errorCode": [],
                        "entitiesImpacted": [{"entityType": "GPU_UUID", "entityValue": ""}],
                        "generatedTimestamp": "2026-10-01T00:00:00.000000001Z",
                        "nodeName": ""
                    }
                }
            }),
        ),
    ];
    for (doc, nvsentinel) in cases {
        let event = mapper.map(doc.as_bytes()).unwrap();
        let mut json = Vec::new();
        switchyard::event::write_json(&event, &mut json);
        let mut ours: Value = serde_json::from_slice(&json).unwrap();
        let top = ours.as_object_mut().unwrap();
        // Switchyard's additions: a deterministic id (NVSentinel: a random
        // UUID), the content type, the node as subject, processingStrategy.
        let id = top.remove("id").unwrap();
        assert_eq!(uuid_version(id.as_str().unwrap()), 5, "{doc}");
        assert_eq!(
            top.remove("datacontenttype"),
            Some(json!("application/json"))
        );
        let node = nvsentinel["data"]["healthEvent"]["nodeName"].clone();
        let subject = top.remove("subject");
        assert_eq!(subject, (node != "").then_some(node));
        let he = top["data"]["healthEvent"].as_object_mut().unwrap();
        assert!(he.remove("processingStrategy").unwrap().is_number());
        assert_eq!(ours, nvsentinel, "{doc}");
    }
}

fn uuid_version(id: &str) -> u32 {
    // xxxxxxxx-xxxx-Vxxx-…
    id.as_bytes()[14].to_ascii_lowercase() as u32 - b'0' as u32
}
