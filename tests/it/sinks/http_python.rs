//! Switchyard's HTTP requests checked by an independent implementation of the
//! CloudEvents HTTP protocol binding: the official Python SDK (PyPI
//! `cloudevents`, installed by `scripts/py-cloudevents`) behind
//! `tests/it/support/ce_receiver.py`. The real pipeline sends sample health
//! events to three `http` receivers — structured, binary and batch — and
//! every event the SDK parsed must be the event Switchyard's own mapper makes
//! of that document: same attributes, same data.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use switchyard::config::{parse, validate};
use switchyard::stats::Stats;

use crate::support;

use support::pipeline::{Run, SAMPLES};
use support::python::PyServer;

/// How many sample documents are exported.
const EVENTS: usize = 25;

/// The three receivers: name (= last URL path segment the Python receiver
/// records as `mode`) and the YAML after `mode:`.
const MODES: [(&str, &str); 3] = [
    ("structured", "structured"),
    ("binary", "binary"),
    ("batch", "batch, batch: {maxEvents: 10}"),
];

/// `ce_receiver.py`, the official SDK behind an HTTP server.
fn receiver(out: PathBuf) -> PyServer {
    PyServer::start("ce_receiver.py", "py-cloudevents", out)
}

fn url(receiver: &PyServer, path: &str) -> String {
    format!("http://127.0.0.1:{}/{path}", receiver.ports[0])
}

/// Every 40th sample document: `EVENTS` of them, spread over the file.
fn sample_lines() -> Vec<&'static str> {
    let lines: Vec<&str> = SAMPLES.lines().collect();
    let stride = lines.len() / EVENTS;
    lines.into_iter().step_by(stride).take(EVENTS).collect()
}

/// The shared pipeline harness with the three receivers, every event to each.
fn run(lines: &[&str], receiver: &PyServer) -> Run {
    let mut receivers = String::new();
    for (name, mode) in MODES {
        // A query string too: the receiver must tell the path from it.
        receivers += &support::yaml(
            "  - name: $name\n    http: {endpoint: \"$url?from=switchyard\", mode: $mode}\n",
            &[
                ("name", &name),
                ("url", &url(receiver, &format!("events/{name}"))),
                ("mode", &mode),
            ],
        );
    }
    let names: Vec<&str> = MODES.iter().map(|(name, _)| *name).collect();
    Run::with_documents(lines, &names, &receivers)
}

/// What Switchyard itself makes of each document, by id, as the JSON of the
/// CloudEvent (attributes and `data`).
fn expected_events(yaml: &str, lines: &[&str]) -> BTreeMap<String, Value> {
    let (compiled, _) = validate(&parse(yaml).unwrap()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let mut events = BTreeMap::new();
    for line in lines {
        let event = compiled
            .mapper
            .map(line.as_bytes())
            .unwrap_or_else(|e| panic!("sample does not map: {e}: {line}"));
        let json = switchyard::event::to_value(&event);
        let id = json["id"].as_str().unwrap().to_owned();
        assert!(
            events.insert(id.clone(), json).is_none(),
            "duplicate id {id}"
        );
    }
    events
}

fn time(value: &Value, what: &str) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: time is not a string: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what}: time {text:?} is not RFC 3339: {e}"))
}

/// The differences between the attributes the SDK reported and Switchyard's
/// own event (empty when they agree).
fn attribute_differences(sdk: &Value, expected: &Value, what: &str) -> Vec<String> {
    let sdk = sdk
        .as_object()
        .unwrap_or_else(|| panic!("{what}: attributes {sdk}"));
    let expected = expected.as_object().unwrap();
    let mut differences = Vec::new();
    // Attributes Switchyard set: every one must reach the SDK unchanged.
    for (name, want) in expected {
        if name == "data" || name == "data_base64" {
            continue;
        }
        let Some(got) = sdk.get(name) else {
            differences.push(format!("{what}: the SDK saw no {name} (want {want})"));
            continue;
        };
        let same = if name == "time" {
            time(got, what) == time(want, "Switchyard")
        } else {
            got == want
        };
        if !same {
            differences.push(format!("{what}: {name} is {got}, Switchyard made {want}"));
        }
    }
    // And nothing else: an attribute the SDK found that Switchyard did not
    // set (the SDK also invents `time` when a request has none).
    for (name, got) in sdk {
        if !expected.contains_key(name) {
            differences.push(format!(
                "{what}: the SDK saw {name} = {got}, not in the event"
            ));
        }
    }
    differences
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_cloudevents_sdk_accepts_every_mode_and_sees_the_mapped_events() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = receiver(dir.path().join("sdk.jsonl"));
    let lines = sample_lines();
    assert_eq!(lines.len(), EVENTS);
    let run = run(&lines, &receiver);
    let expected = expected_events(&run.yaml, &lines);
    assert_eq!(expected.len(), EVENTS);
    let stats = run.run_to_end().await;

    let records = receiver.records();
    let errors: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(
        errors.is_empty(),
        "the SDK rejected {} request(s):\n{}",
        errors.len(),
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(Stats::get(&stats.delivered), (EVENTS * MODES.len()) as u64);
    assert_eq!(Stats::get(&stats.rejected), 0);
    assert_eq!(Stats::get(&stats.retries), 0);

    let mut by_mode: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in &records {
        let mode = r["mode"].as_str().expect("a mode");
        by_mode.entry(mode).or_default().push(r);
    }
    let mut differences = Vec::new();
    for (mode, _) in MODES {
        let got = by_mode.remove(mode).unwrap_or_default();
        // Exactly the expected ids, each once.
        let mut ids: Vec<&str> = got
            .iter()
            .map(|r| r["attributes"]["id"].as_str().expect("an id"))
            .collect();
        ids.sort_unstable();
        let want: Vec<&str> = expected.keys().map(String::as_str).collect();
        assert_eq!(ids, want, "{mode}: the event ids the SDK saw");

        for r in got {
            let id = r["attributes"]["id"].as_str().unwrap();
            let what = format!("{mode} {id}");
            let event = &expected[id];
            // The request was recognised as what the receiver is configured
            // to send, from its headers alone.
            assert_eq!(r["binding"], mode, "{what}: recognised as {}", r["binding"]);
            let content_type = r["contentType"].as_str().unwrap_or_default();
            match mode {
                "structured" => assert!(
                    content_type.starts_with("application/cloudevents+json"),
                    "{what}: Content-Type {content_type}"
                ),
                "batch" => assert!(
                    content_type.starts_with("application/cloudevents-batch+json"),
                    "{what}: Content-Type {content_type}"
                ),
                _ => assert_eq!(
                    Some(content_type),
                    event["datacontenttype"].as_str(),
                    "{what}: binary Content-Type is the datacontenttype"
                ),
            }
            differences.extend(attribute_differences(&r["attributes"], event, &what));
            for name in [
                "specversion",
                "id",
                "type",
                "source",
                "subject",
                "time",
                "datacontenttype",
            ] {
                assert!(
                    event.get(name).is_some(),
                    "Switchyard's event has no {name}: {event}"
                );
            }
            if r["data"] != event["data"] {
                differences.push(format!(
                    "{what}: the SDK decoded data {}, Switchyard made {}",
                    r["data"], event["data"]
                ));
            }
        }
    }
    assert!(
        by_mode.is_empty(),
        "requests to unknown paths: {:?}",
        by_mode.keys()
    );
    assert!(
        differences.is_empty(),
        "the SDK disagrees with Switchyard:\n{}",
        differences.join("\n")
    );
}
