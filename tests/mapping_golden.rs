//! Golden test: every shared NVSentinel sample document (good and malformed)
//! through the `nvsentinel` profile. Each output line is the CloudEvent JSON
//! or `error: <_id>: <reason>`; the result must equal the committed golden
//! file. `UPDATE_GOLDEN=1` rewrites it after a deliberate change: review the
//! diff, because event ids and shapes are a contract with receivers.

use std::path::Path;

use switchyard::config::Profile;
use switchyard::mapping::{Mapper, Overrides};

fn map_all(input: &str) -> String {
    let metadata = serde_json::json!({"cluster": "golden"})
        .as_object()
        .unwrap()
        .clone();
    let mapper = Mapper::new(Profile::Nvsentinel, metadata, Overrides::default());
    let mut out = String::new();
    for line in input.lines() {
        match mapper.map(line.as_bytes()) {
            Ok(event) => out.push_str(&serde_json::to_string(&event).unwrap()),
            Err(e) => out.push_str(&format!(
                "error: {}: {}",
                e.id.as_deref().unwrap_or("-"),
                e.reason
            )),
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
