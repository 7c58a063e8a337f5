//! The example plugins (`plugins/`, built by `scripts/build-plugins` into
//! `plugins/dist/`) running in the real pipeline: a Rust transform feeding
//! a webhook, a Rust sink posting over `wasi:http` to its allowed host (and
//! refused anywhere else), the Python `redact` and the JavaScript
//! `teams-card` transforms, and `switchyard plugin check`.

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::http::{self, Reply};
use support::pipeline::{Run, SAMPLES, dead_letters};
use switchyard::stats::Stats;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// The built plugin `name`. The first call runs `scripts/build-plugins`
/// (it installs the toolchains on first use and rebuilds only what changed).
fn plugin(name: &str) -> String {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    BUILT.get_or_init(|| {
        let out = Command::new(root.join("scripts/build-plugins"))
            .output()
            .expect("run scripts/build-plugins");
        assert!(
            out.status.success(),
            "scripts/build-plugins failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let path = root.join(format!("plugins/dist/{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path.display().to_string()
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_rust_transform_feeds_a_webhook() {
    let server = http::receiver(http::always(200)).await;
    let run = Run::new(
        30,
        &["slack"],
        &support::yaml(
            "  - name: slack\n    webhook: {endpoint: \"$server\", body: \"{{{json data}}}\", contentType: application/json}\n\
             \x20   transforms: [{wasm: {plugin: $plugin, config: {mention: \"<!here>\", channel: \"#gpu\"}}, onError: drop}]\n",
            &[
                ("server", &server.url()),
                ("plugin", &plugin("slack-blocks")),
            ],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 30);
    let requests = server.requests();
    assert_eq!(requests.len(), 30);
    let docs: Vec<&str> = SAMPLES.lines().take(30).collect();
    for (request, doc) in requests.iter().zip(&docs) {
        let message = request.json();
        assert_eq!(message["channel"], "#gpu");
        let blocks = message["blocks"].as_array().expect("Block Kit blocks");
        assert_eq!(blocks[0]["type"], "header");
        let doc: Value = serde_json::from_str(doc).unwrap();
        let node = doc["healthevent"]["nodename"].as_str().unwrap();
        assert!(message.to_string().contains(node), "{message}");
        let fatal = doc["healthevent"]["isfatal"].as_bool().unwrap()
            && !doc["healthevent"]["ishealthy"].as_bool().unwrap();
        assert_eq!(
            message["text"].as_str().unwrap().starts_with("<!here>"),
            fatal,
            "{message}"
        );
    }
}

/// A PagerDuty stand-in on loopback: 500 for the first request, then 202.
async fn pagerduty(
    allowed: &str,
    server: &http::Receiver,
    run_events: usize,
) -> (Run, std::sync::Arc<Stats>) {
    let run = Run::new(
        run_events,
        &["pagerduty"],
        &support::yaml(
            "  - name: pagerduty\n    wasm:\n      plugin: $plugin\n      config: {routingKey: test-routing-key, endpoint: \"http://$server/v2/enqueue\"}\n\
             \x20     allowedHosts: [\"$allowed\"]\n      limits: {memory: 32MiB, timeout: 5s}\n\
             \x20   queue: {maxBatch: 5}\n\
             \x20   retry: {maxRetries: 3, initialBackoff: 10ms, maxBackoff: 50ms}\n\
             \x20   deadLetter: {file: @DIR@/pd-dlq.jsonl}\n",
            &[
                ("plugin", &plugin("pagerduty")),
                ("server", &server.addr),
                ("allowed", &allowed),
            ],
        ),
    );
    let stats = run.run_to_end().await;
    (run, stats)
}

#[tokio::test]
async fn a_rust_sink_posts_to_its_allowed_host_and_retries() {
    let server = http::receiver(std::sync::Arc::new(|n, _: &http::Recorded| {
        Reply::status(if n == 0 { 500 } else { 202 })
    }))
    .await;
    let (run, stats) = pagerduty(&server.addr.to_string(), &server, 20).await;
    assert!(dead_letters(&run.path("pd-dlq.jsonl")).is_empty());
    assert_eq!(Stats::get(&stats.delivered), 20);
    assert_eq!(Stats::get(&stats.retries), 1);
    let mut keys: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["routing_key"], "test-routing-key");
            assert_eq!(r.uri, "/v2/enqueue");
            body["dedup_key"].as_str().unwrap().to_owned()
        })
        .collect();
    keys.sort();
    keys.dedup();
    // Each event's id is its dedup key: every event arrived (the first twice:
    // the 500 stopped its batch, which was sent again).
    assert_eq!(server.count(), 21);
    assert_eq!(keys, run_ids(20));
}

/// The ids the mapping gives the first `n` samples, sorted.
fn run_ids(n: usize) -> Vec<String> {
    let mapper = switchyard::config::validate(
        &switchyard::config::parse(
            "metadata: {cluster: test}\nsource: {stdin: {}}\nreceivers: [{name: o, stdout: {}}]\nroute: {match: [{receiver: o}]}\n",
        )
        .unwrap(),
    )
    .unwrap()
    .0
    .mapper;
    let mut ids: Vec<String> = SAMPLES
        .lines()
        .take(n)
        .map(|l| {
            use switchyard::event::AttributesReader;
            mapper.map(l.as_bytes()).unwrap().id().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_sink_plugin_is_refused_a_host_it_was_not_granted() {
    let server = http::receiver(http::always(202)).await;
    // Granted another port of the same address only.
    let (run, stats) = pagerduty("127.0.0.1:1", &server, 10).await;
    assert_eq!(server.count(), 0, "no request reached the server");
    let dead = dead_letters(&run.path("pd-dlq.jsonl"));
    assert_eq!(dead.len(), 10);
    for entry in &dead {
        let error = entry["error"].as_str().unwrap();
        assert!(
            error.contains("rejected") && error.contains("denied"),
            "{error}"
        );
    }
    assert_eq!(Stats::get(&stats.rejected), 10);
    assert_eq!(Stats::get(&stats.delivered), 0);
}

#[tokio::test]
async fn the_python_redact_plugin_removes_and_hashes_fields() {
    let mut run = Run::new(
        40,
        &["out"],
        "  - name: out\n    file: {path: @DIR@/out.jsonl}\n",
    );
    run.yaml = run.yaml.replace(
        "route:",
        &support::yaml(
            "transforms:\n  - wasm: {plugin: $plugin, config: {remove: \"data.healthEvent.metadata\", hash: \"subject,data.healthEvent.nodeName\", salt: s3cret}}\n    onError: drop\nroute:", &[("plugin", &plugin("redact"))],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.transform_failures), 0);
    let out = lines(&run.path("out.jsonl"));
    assert_eq!(out.len(), 40);
    for event in &out {
        let subject = event["subject"].as_str().unwrap();
        assert!(
            subject.starts_with("sha256:") && subject.len() == 7 + 64,
            "{subject}"
        );
        assert_eq!(event["data"]["healthEvent"]["nodeName"], subject);
        assert!(event["data"]["healthEvent"].get("metadata").is_none());
        // Fields not listed are untouched (the message names the node).
        assert!(
            event["data"]["healthEvent"]["message"]
                .as_str()
                .unwrap()
                .contains("gpu-node-")
        );
    }
}

#[tokio::test]
async fn the_javascript_teams_card_plugin_filters_and_builds_cards() {
    let run = Run::new(
        60,
        &["teams"],
        &support::yaml(
            "  - name: teams\n    file: {path: @DIR@/out.jsonl}\n\
             \x20   transforms: [{wasm: {plugin: $plugin, config: {dropHealthy: \"true\", title: dgx-east}}, onError: drop}]\n",
            &[("plugin", &plugin("teams-card"))],
        ),
    );
    let stats = run.run_to_end().await;
    let unhealthy = SAMPLES
        .lines()
        .take(60)
        .filter(|l| l.contains("\"ishealthy\":false"))
        .count();
    assert!(unhealthy > 0 && unhealthy < 60);
    let out = lines(&run.path("out.jsonl"));
    assert_eq!(out.len(), unhealthy);
    assert_eq!(Stats::get(&stats.filtered), (60 - unhealthy) as u64);
    for event in &out {
        assert_eq!(event["data"]["type"], "message");
        let card = &event["data"]["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert!(card.to_string().contains("dgx-east"), "{card}");
    }
}

#[test]
fn plugin_check_reports_world_imports_and_missing_grants() {
    let check = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["plugin", "check"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = check(&[&plugin("slack-blocks")]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("implements switchyard:plugin/transform@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("switchyard:plugin/host@0.1.0: granted"),
        "{stdout}"
    );
    assert!(stdout.contains("instantiated: ok"), "{stdout}");

    let (code, _, stderr) = check(&[&plugin("pagerduty")]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("outgoing HTTP) but allowedHosts is empty"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: test}\nsource: {stdin: {}}\nstate: {dir: $dir}\n\
             route: {match: [{receiver: pd}]}\n\
             receivers:\n  - name: pd\n    wasm: {plugin: $plugin, allowedHosts: [events.pagerduty.com]}\n", &[("dir", &dir.path().display()), ("plugin", &plugin("pagerduty"))],
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&[&plugin("pagerduty"), "-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("receivers[0].wasm (pagerduty):"),
        "{stdout}"
    );
    assert!(
        stdout.contains("implements switchyard:plugin/sink@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("wasi:http/outgoing-handler@0.2.12: granted to events.pagerduty.com"),
        "{stdout}"
    );

    let (code, _, stderr) = check(&[&plugin("slack-blocks"), "-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not used by"), "{stderr}");
}

/// The whole path through the binary: file source → route → a transform
/// plugin → webhook on loopback, and → a sink plugin → a loopback server
/// standing in for its allowed host.
#[tokio::test]
async fn switchyard_run_with_a_transform_and_a_sink_plugin() {
    let slack = http::receiver(http::always(200)).await;
    let pd = http::receiver(http::always(202)).await;
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<&str> = SAMPLES.lines().take(50).collect();
    let fatal = docs
        .iter()
        .filter(|d| d.contains("\"isfatal\":true"))
        .count();
    assert!(fatal > 0);
    std::fs::write(dir.path().join("input.jsonl"), docs.join("\n") + "\n").unwrap();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: dgx-east}\n\
             source: {file: {path: $dir/input.jsonl}}\n\
             state: {dir: $dir/state}\n\
             pluginCache: $cache\n\
             route:\n  match: [{receiver: slack}]\n  routes:\n    - match: [{data.healthEvent.isFatal: true, receiver: pagerduty}]\n\
             receivers:\n\
             \x20 - name: slack\n    webhook: {endpoint: \"$slack\", body: \"{{json data}}\", contentType: application/json}\n\
             \x20   transforms: [{wasm: {plugin: $blocks}}]\n    deadLetter: {file: $dir/slack-dlq.jsonl}\n\
             \x20 - name: pagerduty\n    wasm:\n      plugin: $pagerduty\n      config: {routingKey: rk, endpoint: \"http://$pd/v2/enqueue\"}\n      allowedHosts: [\"$pd\"]\n\
             \x20   deadLetter: {file: $dir/pd-dlq.jsonl}\n", &[("dir", &dir.path().display()), ("cache", &support::pipeline::plugin_cache().display()), ("slack", &slack.url()), ("blocks", &plugin("slack-blocks")), ("pagerduty", &plugin("pagerduty")), ("pd", &pd.addr)],
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["run", "-c", config.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(slack.count(), 50, "{log}");
    assert!(
        slack
            .requests()
            .iter()
            .all(|r| r.json()["blocks"].is_array())
    );
    assert_eq!(pd.count(), fatal, "{log}");
    assert!(
        pd.requests()
            .iter()
            .all(|r| r.json()["payload"]["severity"] == "critical")
    );
    assert!(!dir.path().join("slack-dlq.jsonl").exists());
    assert!(!dir.path().join("pd-dlq.jsonl").exists());
}
