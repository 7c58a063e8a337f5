//! docs/migrating.md, "From kubernetes-event-exporter": the translated config
//! in tests/testdata/k8s-event-exporter/ validates, and routes real
//! Kubernetes Event objects the way the guide says. "From
//! nomad-events-sink": the same for tests/testdata/nomad-events-sink/ and
//! Nomad events.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const DIR: &str = "tests/testdata/k8s-event-exporter";

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        // The webhook's header reads it (a stand-in, not a real token).
        .env("ALERT_TOKEN", "stand-in-token")
        // The nomad-events-sink translation reads them as that tool did.
        .env("NOMAD_ADDR", "https://nomad.example:4646")
        .env("NOMAD_TOKEN", "stand-in-nomad-token")
        .output()
        .expect("run switchyard")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `switchyard validate` accepts `dir`/switchyard.yaml.
fn validates(dir: &str) {
    let config = format!("{dir}/switchyard.yaml");
    let out = switchyard(&["validate", "-c", &config]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// `switchyard route test` over `dir`/events.jsonl sends each event to the
/// receivers its line of `dir`/events.expected names; the rows it printed.
fn routes_as_expected(dir: &str) -> Vec<Value> {
    let config = format!("{dir}/switchyard.yaml");
    let events = format!("{dir}/events.jsonl");
    let out = switchyard(&["route", "test", "-c", &config, &events]);
    assert!(out.status.success(), "{}", text(&out));
    let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("route test prints JSON lines"))
        .collect();
    let expected: Vec<Value> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(dir)
            .join("events.expected"),
    )
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(got.len(), expected.len(), "{}", text(&out));
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g["receivers"],
            e["receivers"],
            "event {} of {dir}/events.jsonl",
            i + 1
        );
        assert!(g["id"].is_string(), "{g}");
    }
    got
}

#[test]
fn translated_kubernetes_event_exporter_config_validates() {
    validates(DIR);
}

/// Each event reaches the receivers in events.expected: whole-value patterns
/// (FailedMount is not Failed), drop rules per route, data. paths into the
/// Event object (mapped by the kubernetes-event profile, the default for
/// `source.kubernetes` with `kind: events`).
#[test]
fn translated_routes_send_events_where_the_guide_says() {
    routes_as_expected(DIR);
}

const NOMAD_DIR: &str = "tests/testdata/nomad-events-sink";

#[test]
fn translated_nomad_events_sink_config_validates() {
    validates(NOMAD_DIR);
}

/// Every Nomad event (as `source.nomad` hands it over, or bare) is mapped by
/// the `nomad` profile (the default for `source.nomad`) and reaches the
/// receiver that replaces `[sinks.http]`; the two allocation events of one
/// index get different ids.
#[test]
fn translated_nomad_events_sink_config_sends_every_event() {
    let got = routes_as_expected(NOMAD_DIR);
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "every event has its own id");
}
