//! Throughput of `source.kubernetes`, end to end through the release
//! binary, against the in-process API server replica (tests/it/support/kube.rs):
//!
//! - `list`: 50,000 Events exist when the exporter starts; timed from its
//!   start until the file receiver holds all of them (paged list, mapping,
//!   routing, file writes).
//! - `watch`: the exporter is watching; 50,000 Events are created as fast
//!   as the replica takes them, about 100 distinct Pods involved, with the
//!   involved objects' labels fetched (and cached); timed from the first
//!   creation until the file holds all of them.
//!
//! Prints events/s per run and the median.
//!
//!   cargo bench --bench source_kubernetes [-- RUNS [CASE…]]   CASE: list, watch

#[path = "../tests/it/support/kube.rs"]
#[allow(dead_code)]
mod kube;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const EVENTS: usize = 50_000;
const PODS: usize = 100;
const TOKEN: &str = "bench-token";

fn event(i: usize) -> serde_json::Value {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let pod = format!("web-{}", i % PODS);
    json!({
        "metadata": {"name": format!("{pod}.{i:x}"), "namespace": "shop"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": pod},
        "reason": if i.is_multiple_of(3) { "BackOff" } else { "Started" },
        "message": "Back-off restarting failed container web in pod",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "type": if i.is_multiple_of(3) { "Warning" } else { "Normal" },
    })
}

fn lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

fn spawn(dir: &Path, server: &kube::ApiServer, metadata: bool) -> Child {
    let kubeconfig = server.kubeconfig(dir, TOKEN);
    let config = dir.join("switchyard.yaml");
    std::fs::write(
        &config,
        format!(
            "metadata: {{cluster: bench}}\n\
             source: {{kubernetes: {{kind: events, kubeconfig: {}, involvedObjectMetadata: {metadata}}}}}\n\
             state: {{dir: {}}}\n\
             route: {{match: [{{receiver: out}}]}}\n\
             receivers: [{{name: out, file: {{path: {}}}}}]\n",
            kubeconfig.display(),
            dir.join("state").display(),
            dir.join("out.jsonl").display(),
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn wait_for(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while lines(path) < n {
        assert!(Instant::now() < deadline, "{} of {n} events", lines(path));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn list_case() -> f64 {
    let server = kube::ApiServer::start(TOKEN, None).await;
    for i in 0..EVENTS {
        server.create("events", event(i));
    }
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut child = spawn(dir.path(), &server, false);
    wait_for(&dir.path().join("out.jsonl"), EVENTS).await;
    let rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    child.kill().unwrap();
    child.wait().unwrap();
    rate
}

async fn watch_case() -> f64 {
    let server = kube::ApiServer::start(TOKEN, None).await;
    for p in 0..PODS {
        server.create(
            "pods",
            json!({"metadata": {"name": format!("web-{p}"), "namespace": "shop",
            "labels": {"app": "web", "shard": p.to_string()}}}),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(dir.path(), &server, true);
    // Watching: the (empty) list is done once a watch request was served.
    while server.requests("watch") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    for i in 0..EVENTS {
        server.create("events", event(i));
        if i % 1000 == 999 {
            tokio::task::yield_now().await;
        }
    }
    wait_for(&dir.path().join("out.jsonl"), EVENTS).await;
    let rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    child.kill().unwrap();
    child.wait().unwrap();
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut cases: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if cases.is_empty() {
        cases = vec!["list", "watch"];
    }
    for case in cases {
        let mut rates = Vec::new();
        for run in 1..=runs {
            let rate = match case {
                "list" => list_case().await,
                "watch" => watch_case().await,
                other => panic!("unknown case {other}: list, watch"),
            };
            println!("{case} run {run}: {rate:.0} events/s");
            rates.push(rate);
        }
        println!(
            "{case}: median {:.0} events/s over {runs} runs",
            median(rates)
        );
    }
}
