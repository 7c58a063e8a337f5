//! The `webhook` receiver against a real HTTP server: the shipped Slack,
//! Teams, Opsgenie and PagerDuty configs render what those services expect;
//! layouts keep JSON types; raw body templates; a template that fails for
//! one event dead-letters that event only.

use crate::support;

use std::time::Duration;

use switchyard::config::{parse, validate};
use switchyard::pipeline;
use switchyard::stats::Stats;
use tokio_util::sync::CancellationToken;

use support::http;

const SAMPLES: &str = include_str!("../../../examples/health-events.jsonl");

/// The first `n` sample documents that are fatal (the examples route those).
fn fatal_samples(n: usize) -> Vec<&'static str> {
    SAMPLES
        .lines()
        .filter(|l| l.contains("\"isfatal\":true"))
        .take(n)
        .collect()
}

async fn run(yaml: &str) -> std::sync::Arc<Stats> {
    let (compiled, _) = validate(&parse(yaml).unwrap()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    tokio::time::timeout(
        Duration::from_secs(60),
        pipeline::run(compiled, CancellationToken::new()),
    )
    .await
    .expect("finishes")
    .unwrap()
}

/// An example config with its source replaced by a file of `docs`, its
/// secrets and endpoint replaced for the test.
fn example(name: &str, url: &str, dir: &std::path::Path, docs: &[&str]) -> String {
    let input = dir.join("input.jsonl");
    std::fs::write(&input, docs.join("\n") + "\n").unwrap();
    let text = std::fs::read_to_string(format!(
        "{}/config/examples/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    text.replace(
        "mongodb: {uri: \"${MONGODB_URI}\"}",
        &support::yaml("file: {path: $input}", &[("input", &input.display())]),
    )
    .replace("${CLUSTER_NAME}", "dgx-east")
    .replace("${SLACK_WEBHOOK_URL}", url)
    .replace("${TEAMS_WEBHOOK_URL}", url)
    .replace("https://api.opsgenie.com/v2/alerts", url)
    .replace("https://events.pagerduty.com/v2/enqueue", url)
    .replace("${OPSGENIE_API_KEY}", "test-genie-key")
    .replace("${PD_ROUTING_KEY}", "test-routing-key")
    .replace(
        "/var/lib/switchyard/dlq",
        &dir.join("dlq").display().to_string(),
    ) + &support::yaml(
        "state: {dir: $dir}\n",
        &[("dir", &dir.join("state").display())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_examples_render_what_each_service_expects() {
    let docs = fatal_samples(3);
    assert_eq!(docs.len(), 3);
    for name in ["slack", "teams", "opsgenie", "pagerduty"] {
        let receiver = http::receiver(http::always(202)).await;
        let dir = tempfile::tempdir().unwrap();
        let stats = run(&example(name, &receiver.url(), dir.path(), &docs)).await;
        assert_eq!(Stats::get(&stats.delivered), 3, "{name}");
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3, "{name}");
        for r in &requests {
            assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
            let body = r.json();
            match name {
                "slack" => {
                    assert!(body["text"].as_str().unwrap().contains(" on gpu-node-"));
                    assert_eq!(body["blocks"][0]["type"], "header");
                    assert!(
                        body["blocks"][0]["text"]["text"]
                            .as_str()
                            .unwrap()
                            .starts_with("Fatal: ")
                    );
                    assert_eq!(
                        body["blocks"][1]["fields"][0]["text"],
                        "*Cluster*\ndgx-east"
                    );
                }
                "teams" => {
                    assert_eq!(body["type"], "message");
                    let card = &body["attachments"][0]["content"];
                    assert_eq!(card["type"], "AdaptiveCard");
                    assert_eq!(card["body"][1]["facts"][3]["value"], "yes");
                }
                "opsgenie" => {
                    assert_eq!(r.header("authorization"), Some("GenieKey test-genie-key"));
                    assert!(body["message"].as_str().unwrap().starts_with("[dgx-east] "));
                    assert!(matches!(body["priority"].as_str().unwrap(), "P1" | "P2"));
                    assert_eq!(body["tags"][0], "dgx-east");
                    assert_eq!(body["details"]["eventId"].as_str().unwrap().len(), 36);
                }
                "pagerduty" => {
                    assert_eq!(body["routing_key"], "test-routing-key");
                    assert_eq!(body["event_action"], "trigger");
                    assert_eq!(body["payload"]["severity"], "critical");
                    assert!(
                        body["payload"]["source"]
                            .as_str()
                            .unwrap()
                            .starts_with("gpu-node-")
                    );
                    assert_eq!(
                        body["payload"]["custom_details"]["isFatal"], true,
                        "json keeps the object"
                    );
                    assert!(
                        body["dedup_key"]
                            .as_str()
                            .unwrap()
                            .starts_with("dgx-east/gpu-node-")
                    );
                }
                _ => unreachable!(),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_bodies_and_per_event_template_failures() {
    let receiver = http::receiver(http::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let docs: Vec<&str> = SAMPLES.lines().take(30).collect();
    std::fs::write(&input, docs.join("\n") + "\n").unwrap();
    let with_custom = docs
        .iter()
        .filter(|d| d.contains("\"customrecommendedaction\":\""))
        .count();
    assert!(
        with_custom > 0 && with_custom < 30,
        "the samples mix events with and without a custom action"
    );
    let yaml = support::yaml(
        "metadata: {cluster: c1, team: gpu-ops}\n\
         source: {file: {path: $input}}\n\
         state: {dir: $state}\n\
         route: {match: [{receiver: typed}, {receiver: text}, {receiver: custom}]}\n\
         receivers:\n\
         \x20 - name: typed\n    webhook:\n      endpoint: \"$url/{{metadata.team}}/{{data.healthEvent.componentClass}}\"\n      method: PUT\n\
         \x20     layout: {fatal: \"{{data.healthEvent.isFatal}}\", version: \"{{data.healthEvent.version}}\", node: \"{{upper data.healthEvent.nodeName}}\", literal: 7}\n\
         \x20 - name: text\n    webhook:\n      endpoint: \"$url/text\"\n      body: \"{{id}} {{data.healthEvent.nodeName}}\"\n      contentType: text/plain\n\
         \x20 - name: custom\n    webhook:\n      endpoint: \"$url/custom\"\n      layout: {action: \"{{data.healthEvent.customRecommendedAction}}\"}\n\
         \x20   deadLetter: {file: $dlq}\n",
        &[
            ("input", &input.display()),
            ("state", &dir.path().join("state").display()),
            ("url", &receiver.url()),
            ("dlq", &dir.path().join("dlq.jsonl").display()),
        ],
    );
    let stats = run(&yaml).await;
    let requests = receiver.requests();

    let typed: Vec<_> = requests
        .iter()
        .filter(|r| r.uri.starts_with("/events/gpu-ops/"))
        .collect();
    assert_eq!(typed.len(), 30);
    for r in &typed {
        let body = r.json();
        assert!(
            body["fatal"].is_boolean(),
            "a single expression keeps its JSON type"
        );
        assert_eq!(body["version"], 1);
        assert!(body["node"].as_str().unwrap().starts_with("GPU-NODE-"));
        assert_eq!(body["literal"], 7);
    }
    assert!(
        typed.iter().any(|r| r.uri == "/events/gpu-ops/GPU"),
        "the endpoint is a template"
    );

    let text: Vec<_> = requests
        .iter()
        .filter(|r| r.uri == "/events/text")
        .collect();
    assert_eq!(text.len(), 30);
    assert_eq!(text[0].header("content-type"), Some("text/plain"));
    assert!(String::from_utf8_lossy(&text[0].body).contains(" gpu-node-"));

    let custom = requests
        .iter()
        .filter(|r| r.uri == "/events/custom")
        .count();
    assert_eq!(custom, with_custom, "events that have the field are sent");
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dlq.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        dead.len(),
        30 - with_custom,
        "the others are dead-lettered, one by one"
    );
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("rejected: layout: "),
        "{}",
        dead[0]["error"]
    );
    assert_eq!(Stats::get(&stats.delivered) as usize, 60 + with_custom);
}
