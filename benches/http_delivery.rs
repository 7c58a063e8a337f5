//! HTTP delivery end to end, in one process: file source → `nvsentinel`
//! mapping → route → `http` receiver → a receiver on 127.0.0.1 that counts
//! bytes and answers.
//!
//! cargo bench --bench http_delivery
//!
//! (a) batch mode (500 events per request) to a receiver answering 202 at
//!     once: events/s for `BENCH_EVENTS` (default 300,000) documents;
//! (b) a receiver answering after 300 ms, `concurrency: 64`: batches of 100
//!     (`BENCH_SLOW_EVENTS`, default 60,000), and structured mode, one event
//!     per request (`BENCH_STRUCTURED_EVENTS`, default 1,500).
//!
//! The binary's allocator (mimalloc) is used here too, so the figures are
//! what `switchyard run` does.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use switchyard::config::{parse, validate};
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone)]
struct Counter {
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    delay: Duration,
}

async fn receive(State(c): State<Counter>, body: Bytes) -> StatusCode {
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    if !c.delay.is_zero() {
        tokio::time::sleep(c.delay).await;
    }
    StatusCode::ACCEPTED
}

async fn receiver(delay: Duration) -> (String, Counter) {
    let counter = Counter {
        requests: Arc::default(),
        bytes: Arc::default(),
        delay,
    };
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(counter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, counter)
}

/// `n` sample documents with distinct `_id`s, as one JSON-lines file.
fn input(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let samples: Vec<serde_json::Value> = include_str!("../examples/health-events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut out = String::with_capacity(n * 800);
    for i in 0..n {
        let mut doc = samples[i % samples.len()].clone();
        doc["_id"]["$oid"] = serde_json::Value::String(format!("{i:024x}"));
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    let path = dir.join(format!("input-{n}.jsonl"));
    std::fs::write(&path, out).unwrap();
    path
}

async fn run(label: &str, events: usize, http_yaml: &str, delay: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), events);
    let (url, counter) = receiver(delay).await;
    let yaml = format!(
        "metadata: {{cluster: bench}}\n\
         source: {{file: {{path: {}}}}}\n\
         state: {{dir: {}}}\n\
         route: {{match: [{{receiver: out}}]}}\n\
         receivers:\n  - name: out\n    http: {{endpoint: \"{url}\", {http_yaml}}}\n",
        input.display(),
        dir.path().join("state").display(),
    );
    let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
    let started = Instant::now();
    let stats = switchyard::pipeline::run(compiled, CancellationToken::new())
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let delivered = switchyard::stats::Stats::get(&stats.delivered);
    assert_eq!(delivered as usize, events, "every event delivered");
    println!(
        "{label}: {events} events in {secs:.2} s = {:.0} events/s ({} requests, {:.0} MB)",
        events as f64 / secs,
        counter.requests.load(Ordering::Relaxed),
        counter.bytes.load(Ordering::Relaxed) as f64 / 1e6
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        run(
            "(a) batch of 500, receiver answers at once",
            env_or("BENCH_EVENTS", 300_000),
            "mode: batch, batch: {maxEvents: 500, maxBytes: 4MiB, maxWait: 50ms}",
            Duration::ZERO,
        )
        .await;
        run(
            "(b) batch of 100, receiver answers after 300 ms, concurrency 64",
            env_or("BENCH_SLOW_EVENTS", 60_000),
            "mode: batch, batch: {maxEvents: 100, maxBytes: 4MiB, maxWait: 50ms}, concurrency: 64",
            Duration::from_millis(300),
        )
        .await;
        run(
            "(b) structured, receiver answers after 300 ms, concurrency 64",
            env_or("BENCH_STRUCTURED_EVENTS", 1_500),
            "mode: structured, concurrency: 64",
            Duration::from_millis(300),
        )
        .await;
    });
}
