//! `source.http` intake: CloudEvents POSTed in batch mode (100 events per
//! request, 16 senders at once) to the whole pipeline in one process
//! (`source.http` → `cloudevents` mapping → route → `file` receiver).
//!
//!   cargo bench --bench source_http [-- RUNS]      BENCH_EVENTS (default 200,000)
//!
//! Prints per run: accepted events/s (first request to last 202: journaled
//! and fsynced) and delivered events/s (to the last event in the file), then
//! the medians. The senders share the machine with switchyard.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use switchyard::config::{parse, validate};
use tokio_util::sync::CancellationToken;

const PER_REQUEST: usize = 100;
const SENDERS: usize = 16;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Request bodies: batches of CloudEvents whose data are the sample health
/// events, with distinct ids.
fn bodies(events: usize) -> Vec<Vec<u8>> {
    let samples: Vec<serde_json::Value> = include_str!("../examples/health-events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (0..events)
        .collect::<Vec<_>>()
        .chunks(PER_REQUEST)
        .map(|ids| {
            let batch: Vec<serde_json::Value> = ids
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "specversion": "1.0",
                        "id": format!("ev-{i}"),
                        "source": "bench://source-http",
                        "type": "com.nvidia.nvsentinel.health.v1",
                        "datacontenttype": "application/json",
                        "data": samples[i % samples.len()],
                    })
                })
                .collect();
            serde_json::to_vec(&batch).unwrap()
        })
        .collect()
}

/// Counts the lines of a growing file, reading only what was added.
#[derive(Default)]
struct LineCounter {
    read: u64,
    lines: usize,
}

impl LineCounter {
    fn count(&mut self, path: &std::path::Path) -> usize {
        use std::io::{Read, Seek};
        if let Ok(mut f) = std::fs::File::open(path) {
            let mut buf = Vec::new();
            f.seek(std::io::SeekFrom::Start(self.read)).unwrap();
            f.read_to_end(&mut buf).unwrap();
            self.read += buf.len() as u64;
            self.lines += buf.iter().filter(|c| **c == b'\n').count();
        }
        self.lines
    }
}

async fn run(events: usize, bodies: &[Vec<u8>]) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let yaml = format!(
        "source: {{http: {{listen: \"127.0.0.1:{port}\", maxQueuedEvents: 1000000}}}}\n\
         state: {{dir: {}}}\n\
         route: {{match: [{{receiver: out}}]}}\n\
         receivers:\n  - name: out\n    file: {{path: {}, maxSize: 10GiB}}\n",
        dir.path().join("state").display(),
        out.display(),
    );
    let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
    let shutdown = CancellationToken::new();
    let pipeline = tokio::spawn(switchyard::pipeline::run(compiled, shutdown.clone()));
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/");
    let started = Instant::now();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, url) = (client.clone(), url.clone());
        let mine: Vec<Vec<u8>> = bodies.iter().skip(s).step_by(SENDERS).cloned().collect();
        senders.push(tokio::spawn(async move {
            for body in mine {
                let r = client
                    .post(&url)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let accepted = started.elapsed().as_secs_f64();
    let mut counter = LineCounter::default();
    while counter.count(&out) < events {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed().as_secs_f64();
    shutdown.cancel();
    pipeline.await.unwrap().unwrap();
    assert_eq!(counter.count(&out), events, "every event delivered once");
    (events as f64 / accepted, events as f64 / delivered)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--bench")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let events: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let bodies = bodies(events);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut accepted, mut delivered) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        let (a, d) = runtime.block_on(run(events, &bodies));
        println!("run {i}: {events} events, accepted {a:.0} events/s, delivered {d:.0} events/s");
        accepted.push(a);
        delivered.push(d);
    }
    println!(
        "median of {runs}: accepted {:.0} events/s, delivered {:.0} events/s",
        median(accepted),
        median(delivered)
    );
}
