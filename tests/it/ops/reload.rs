//! Hot reload, end to end through the `switchyard` binary: the config file
//! is rewritten (as an editor does) or its ConfigMap symlink swapped (as
//! Kubernetes does) while events flow.
//!
//! - Routes change mid-stream: every event is delivered by exactly the
//!   routes in force when it was routed (the old receiver gets a prefix of
//!   the stream, the new one the rest, none twice, none lost), and an
//!   unchanged receiver keeps its connection and OAuth2 token.
//! - A broken file is refused line by line and counted; the old config
//!   keeps running; fixing the file applies it.
//! - The `..data` symlink swap of a mounted ConfigMap is detected.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http;
use support::metrics::scrape;
use support::pipeline::SAMPLES;
use support::process::Process;

const WAIT: Duration = Duration::from_secs(30);

/// A run's directory: the source file and the receivers' files.
struct Setup {
    dir: tempfile::TempDir,
    /// The sample documents, in the order they are written.
    lines: Vec<&'static str>,
}

impl Setup {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("input.jsonl"), "").unwrap();
        Self {
            dir,
            lines: SAMPLES.lines().take(n).collect(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config: a followed file source, receivers `a` and `b` (files)
    /// and `extra` (YAML for more receivers); the route sends every event
    /// to `to`.
    fn config(&self, to: &[&str], extra: &str) -> String {
        let rules: Vec<String> = to
            .iter()
            .map(|r| support::yaml("{receiver: $r}", &[("r", &r)]))
            .collect();
        support::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input, follow: true, pollInterval: 20ms}}\n\
             state: {dir: $state, flushInterval: 100ms}\n\
             shutdownTimeout: 5s\n\
             telemetry: {listen: 127.0.0.1:0}\n\
             route:\n  match: [$rules]\n\
             receivers:\n\
             \x20 - {name: a, file: {path: $a}}\n\
             \x20 - {name: b, file: {path: $b}}\n$extra",
            &[
                ("input", &self.path("input.jsonl").display()),
                ("state", &self.path("state").display()),
                ("rules", &rules.join(", ")),
                ("a", &self.path("a.jsonl").display()),
                ("b", &self.path("b.jsonl").display()),
                ("extra", &extra),
            ],
        )
    }

    /// Appends documents `range` to the source file.
    fn append(&self, range: std::ops::Range<usize>) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path("input.jsonl"))
            .unwrap();
        for line in &self.lines[range] {
            writeln!(f, "{line}").unwrap();
        }
    }

    /// The event ids the documents become, in order.
    fn ids(&self) -> Vec<String> {
        let events = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["route", "test", "-c"])
            .arg(self.path("config.yaml"))
            .arg(self.path("input.jsonl"))
            .output()
            .unwrap();
        assert!(events.status.success());
        support::ids_in(&String::from_utf8(events.stdout).unwrap())
    }
}

/// Writes `text` the way editors and `kubectl cp` do: a new file renamed
/// over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_until(what: &str, done: impl FnMut() -> bool) {
    support::wait_until(what, WAIT, done).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_change_while_events_flow() {
    const N: usize = 1000;
    let setup = Setup::new(N);
    // `keep` is in both configs, unchanged: it must keep its token. It is
    // slow, so events are queued for it when the reload lands.
    let tokens = http::token_server(3600, Duration::ZERO, 0).await;
    let keep = http::receiver(Arc::new(|_, _| {
        http::Reply::status(202).after(Duration::from_millis(5))
    }))
    .await;
    let extra = support::yaml(
        "  - name: keep\n    http:\n      endpoint: $keep\n      mode: structured\n      concurrency: 1\n      \
         oauth2: {tokenUrl: $tokens, clientId: $http, clientSecret: $http2}\n",
        &[
            ("keep", &keep.url()),
            ("tokens", &tokens.url()),
            ("http", &http::CLIENT_ID),
            ("http2", &http::CLIENT_SECRET),
        ],
    );
    let config = setup.path("config.yaml");
    std::fs::write(&config, setup.config(&["a", "keep"], &extra)).unwrap();
    let mut process = Process::run(&config, &[]);
    let metrics = process.telemetry_addr().await;
    process.wait_for("watching the config file", WAIT).await;

    // Events flow to `a` all along; the routes switch to `b` somewhere in
    // the stream, while `keep` still has a backlog; 100 more follow.
    let mut written = 0;
    let mut reloaded_at = None;
    while reloaded_at.is_none_or(|at| written < at + 100) {
        assert!(written + 10 <= N, "the reload took too long");
        setup.append(written..written + 10);
        written += 10;
        if written == 100 {
            replace(&config, &setup.config(&["b", "keep"], &extra));
        }
        if reloaded_at.is_none() && process.log().contains("config reloaded") {
            reloaded_at = Some(written);
            assert!(
                keep.count() < written,
                "events were still in flight at the reload"
            );
        }
        // 500 events/s: faster than `keep` (200/s), slow enough to leave
        // the reload two seconds before the samples run out.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = written;

    let want = setup.ids();
    assert_eq!(want.len(), n);
    let (a, b) = (setup.path("a.jsonl"), setup.path("b.jsonl"));
    wait_until("every event in a or b", || {
        support::event_ids(&a).len() + support::event_ids(&b).len() >= n
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while keep.count() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} events at keep:\n{}\n{}",
            keep.count(),
            scrape(&metrics).await.text,
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scraped = scrape(&metrics).await;
    assert!(process.terminate().success(), "{}", process.log());

    let (a, b) = (support::event_ids(&a), support::event_ids(&b));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "a: {}, b: {}",
        a.len(),
        b.len()
    );
    assert_eq!(
        a,
        want[..a.len()],
        "the old route got a prefix of the stream"
    );
    assert_eq!(b, want[a.len()..], "the new route got the rest, once each");
    let mut at_keep: Vec<String> = keep
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    at_keep.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(
        at_keep, sorted,
        "the unchanged receiver got each event once"
    );
    assert_eq!(tokens.count(), 1, "the unchanged receiver kept its token");
    assert_eq!(
        scraped.get(
            "switchyard_receiver_oauth2_token_refreshes_total",
            &[("receiver", "keep")]
        ),
        1.0
    );
    assert_eq!(
        scraped.get(
            "switchyard_receiver_oauth2_token_failures_total",
            &[("receiver", "keep")]
        ),
        0.0
    );

    assert_eq!(
        scraped.get("switchyard_config_reloads_total", &[("result", "success")]),
        1.0
    );
    // The rule at route.match[0] sent to `a`, then to `b`: one counter.
    assert_eq!(
        scraped.get(
            "switchyard_route_matches_total",
            &[("rule", "route.match[0]")]
        ),
        n as f64
    );
    assert_eq!(
        scraped.get(
            "switchyard_receiver_events_delivered_total",
            &[("receiver", "keep")]
        ),
        n as f64
    );
    eprintln!(
        "{} events routed by the old config, {} by the new one",
        a.len(),
        b.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_running_config() {
    let setup = Setup::new(60);
    let config = setup.path("config.yaml");
    std::fs::write(&config, setup.config(&["a"], "")).unwrap();
    let mut process = Process::run(&config, &[]);
    let metrics = process.telemetry_addr().await;
    process.wait_for("watching the config file", WAIT).await;

    // An unknown receiver and a bad duration: both reported, with lines.
    let broken = setup
        .config(&["nope"], "")
        .replace("flushInterval: 100ms", "flushInterval: 100 parsecs");
    replace(&config, &broken);
    process.wait_for("config reload refused", WAIT).await;
    let log = process.log();
    let file = config.display().to_string();
    assert!(
        log.contains(&format!("{file}:3:")) && log.contains("invalid duration"),
        "the YAML error is logged with its line:\n{log}"
    );
    let scraped = scrape(&metrics).await;
    assert_eq!(
        scraped.get("switchyard_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(
        scraped.get("switchyard_config_last_reload_successful", &[]),
        0.0
    );

    // A file that parses but does not validate: every error, with lines.
    replace(&config, &setup.config(&["nope", "ghost"], ""));
    process.wait_for_n("config reload refused", 2, WAIT).await;
    let log = process.log();
    for (i, name) in ["nope", "ghost"].iter().enumerate() {
        let want = format!("route.match[{i}]: unknown receiver \"{name}\"");
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{file}:7:")) && l.contains(&want)),
            "{want} reported at line 7:\n{log}"
        );
    }

    // The old config still runs.
    setup.append(0..30);
    let a = setup.path("a.jsonl");
    wait_until("30 events at a", || support::event_ids(&a).len() == 30).await;

    // Fixed: it applies.
    replace(&config, &setup.config(&["b"], ""));
    process.wait_for("config reloaded", WAIT).await;
    setup.append(30..60);
    let b = setup.path("b.jsonl");
    wait_until("30 events at b", || support::event_ids(&b).len() == 30).await;
    let scraped = scrape(&metrics).await;
    assert!(process.terminate().success());
    assert_eq!(support::event_ids(&a).len(), 30, "nothing more at a");
    assert_eq!(
        scraped.get("switchyard_config_reloads_total", &[("result", "failure")]),
        2.0
    );
    assert_eq!(
        scraped.get("switchyard_config_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        scraped.get("switchyard_config_last_reload_successful", &[]),
        1.0
    );
}

/// Lays out a directory as the kubelet mounts a ConfigMap:
/// `config.yaml -> ..data/config.yaml`, `..data -> ..<version>/`.
fn configmap_version(dir: &Path, version: &str, text: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("config.yaml"), text).unwrap();
    // The kubelet's atomic swap: a new symlink renamed over `..data`.
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("config.yaml");
    if link.symlink_metadata().is_err() {
        std::os::unix::fs::symlink("..data/config.yaml", &link).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_detected() {
    let setup = Setup::new(40);
    let mount = setup.path("mount");
    std::fs::create_dir_all(&mount).unwrap();
    configmap_version(&mount, "2026_11_22_01", &setup.config(&["a"], ""));
    let config = mount.join("config.yaml");
    let mut process = Process::run(&config, &[]);
    let metrics = process.telemetry_addr().await;
    process.wait_for("watching the config file", WAIT).await;

    setup.append(0..20);
    let a = setup.path("a.jsonl");
    wait_until("20 events at a", || support::event_ids(&a).len() == 20).await;

    // No write to config.yaml itself: only the `..data` symlink changes.
    configmap_version(&mount, "2026_11_22_02", &setup.config(&["b"], ""));
    std::fs::remove_dir_all(mount.join("..2026_11_22_01")).unwrap();
    process.wait_for("config reloaded", WAIT).await;
    setup.append(20..40);
    let b = setup.path("b.jsonl");
    wait_until("20 events at b", || support::event_ids(&b).len() == 20).await;
    let scraped = scrape(&metrics).await;
    assert!(process.terminate().success());
    assert_eq!(support::event_ids(&a).len(), 20);
    assert_eq!(
        scraped.get("switchyard_config_reloads_total", &[("result", "success")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let setup = Setup::new(20);
    let config = setup.path("config.yaml");
    std::fs::write(&config, setup.config(&["a"], "")).unwrap();
    let mut process = Process::run(&config, &[]);
    process.wait_for("watching the config file", WAIT).await;
    process.signal("-HUP");
    process.wait_for("config reloaded", WAIT).await;
    setup.append(0..20);
    let a = setup.path("a.jsonl");
    wait_until("20 events at a", || support::event_ids(&a).len() == 20).await;
    assert!(process.terminate().success());
    assert!(
        !process.log().contains("receiver changed"),
        "an unchanged config changes no receiver:\n{}",
        process.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_a_receiver_delivers_its_backlog_at_once() {
    const N: usize = 50;
    let setup = Setup::new(N);
    let broken = http::receiver(http::always(503)).await;
    let fixed = http::receiver(http::always(202)).await;
    // A receiver whose endpoint is wrong, retrying with a long backoff and
    // no dead letter file: its events wait.
    let receiver = |url: &str| {
        support::yaml(
            "  - name: hook\n    http: {endpoint: \"$url\", mode: batch, batch: {maxEvents: 10}}\n    \
             retry: {initialBackoff: 1h, maxBackoff: 1h}\n",
            &[("url", &url)],
        )
    };
    let config = setup.path("config.yaml");
    std::fs::write(&config, setup.config(&["hook"], &receiver(&broken.url()))).unwrap();
    let mut process = Process::run(&config, &[]);
    let metrics = process.telemetry_addr().await;
    process.wait_for("watching the config file", WAIT).await;
    setup.append(0..N);
    wait_until("the first failed attempts", || broken.count() >= 1).await;

    // The fix: queued events and those waiting an hour to retry go to the
    // new endpoint now, once each.
    replace(&config, &setup.config(&["hook"], &receiver(&fixed.url())));
    process.wait_for("receiver changed", WAIT).await;
    let ids = || -> Vec<String> {
        fixed
            .requests()
            .iter()
            .flat_map(|r| {
                r.json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    wait_until("the backlog at the fixed endpoint", || ids().len() >= N).await;
    let scraped = scrape(&metrics).await;
    assert!(process.terminate().success(), "{}", process.log());

    let mut got = ids();
    let mut want = setup.ids();
    got.sort();
    want.sort();
    assert_eq!(got, want, "each event once");
    assert_eq!(
        scraped.get("switchyard_events_in_flight", &[]),
        0.0,
        "the position moved past all of them"
    );
    assert_eq!(
        scraped.get(
            "switchyard_receiver_events_delivered_total",
            &[("receiver", "hook")]
        ),
        N as f64
    );
}

/// A disk-buffered receiver across reloads: a reload that changes its
/// buffer is refused (its old buffer must drain first: a restart), and one
/// that changes the receiver otherwise keeps its buffer, in order, with
/// nothing lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_buffer_keeps_across_reloads_and_a_buffer_change_needs_a_restart() {
    let setup = Setup::new(60);
    let config = setup.path("config.yaml");
    let c = setup.path("c.jsonl");
    let with = |buffer: &str, batch: usize| {
        setup.config(
            &["c"],
            &support::yaml(
                "  - name: c\n    file: {path: $c}\n    queue: {maxBatch: $batch}\n    buffer: $buffer\n", &[("c", &c.display()), ("batch", &batch), ("buffer", &buffer)],
            ),
        )
    };
    std::fs::write(&config, with("{type: disk}", 500)).unwrap();
    let mut process = Process::run(&config, &[]);
    process.wait_for("watching the config file", WAIT).await;
    setup.append(0..20);
    wait_until("20 events at c", || support::event_ids(&c).len() == 20).await;

    replace(&config, &with("{type: memory}", 500));
    process.wait_for("config reload refused", WAIT).await;
    assert!(
        process
            .log()
            .contains("its buffer settings changed; that needs a restart"),
        "{}",
        process.log()
    );

    // Another change to the receiver: applied, the buffer carries on.
    replace(&config, &with("{type: disk}", 7));
    process.wait_for("config reloaded", WAIT).await;
    setup.append(20..60);
    wait_until("60 events at c", || support::event_ids(&c).len() == 60).await;
    let ids = setup.ids();
    assert_eq!(support::event_ids(&c), ids, "every event once, in order");
    assert!(setup.path("state/buffers/c").is_dir());
    assert!(process.terminate().success());
}
