//! Change stream → file receiver, against a real single-node replica set.
//!
//! cargo bench --bench mongo_stream
//!
//! 1. Throughput: insert `BENCH_EVENTS` (default 100,000) NVSentinel documents
//!    as fast as one client can (batches of 1,000) and measure events/s from
//!    the first insert to the last event written by the file receiver.
//! 2. Latency: insert at a steady `BENCH_RATE` (default 5,000/s) for
//!    `BENCH_SECONDS` (default 10) and measure insert → written latency
//!    (p50/p99/max). Each document's `generatedtimestamp` is its insert time,
//!    so the CloudEvent `time` carries it; a reader tails the output file.
//!
//! Uses `SWITCHYARD_TEST_MONGODB_URI` when set, else starts its own mongod.

#[path = "../tests/it/support/mongo.rs"]
mod mongo;

use std::io::{BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc, oid::ObjectId};
use switchyard::config::{parse, validate};
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tails `path`, recording for each new line (arrival instant, its `time`).
fn tail(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(Instant, f64)>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut offset = 0u64;
        let mut line = String::new();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Ok(mut f) = std::fs::File::open(&path) {
                f.seek(std::io::SeekFrom::Start(offset)).unwrap();
                let mut reader = BufReader::new(f);
                loop {
                    line.clear();
                    let n = reader.read_line(&mut line).unwrap();
                    if n == 0 || !line.ends_with('\n') {
                        break;
                    }
                    offset += n as u64;
                    let now = Instant::now();
                    let wall = chrono::Utc::now();
                    let latency =
                        event_time(&line).map_or(f64::NAN, |t| (wall - t).as_seconds_f64());
                    seen.push((now, latency));
                }
            }
            if stopping {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

fn event_time(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let start = line.find("\"time\":\"")? + 8;
    let end = start + line[start..].find('"')?;
    chrono::DateTime::parse_from_rfc3339(&line[start..end])
        .ok()
        .map(|t| t.to_utc())
}

fn document(template: &Document) -> Document {
    let now = chrono::Utc::now();
    let mut d = template.clone();
    d.insert("_id", ObjectId::new());
    d.insert(
        "createdAt",
        mongodb::bson::DateTime::from_millis(now.timestamp_millis()),
    );
    let he = d.get_document_mut("healthevent").unwrap();
    he.insert(
        "generatedtimestamp",
        doc! {"seconds": now.timestamp(), "nanos": now.timestamp_subsec_nanos() as i64},
    );
    d
}

async fn exporter(
    uri: &str,
    db: &str,
    out: &Path,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let yaml = format!(
        "metadata: {{cluster: bench}}\n\
         source:\n  mongodb:\n    uri: \"{uri}\"\n    database: {db}\n    resumeTokens: {{database: {db}}}\n    backfill: {{enabled: false}}\n\
         route: {{match: [{{receiver: out}}]}}\n\
         receivers: [{{name: out, file: {{path: {out}, maxSize: 10GiB}}}}]\n",
        out = out.display()
    );
    let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            switchyard::pipeline::run(compiled, shutdown).await.unwrap();
        }
    });
    // The stream is open once its start token is saved.
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let tokens = client.database(db).collection::<Document>("ResumeTokens");
    while tokens.find_one(Document::new()).await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (shutdown, task)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One measured run: an exporter on a fresh database, a tailer on its output.
struct Run {
    coll: mongodb::Collection<Document>,
    out: PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    tailer: std::thread::JoinHandle<Vec<(Instant, f64)>>,
    _dir: tempfile::TempDir,
}

impl Run {
    async fn start(uri: &str, name: &str) -> Self {
        let db = mongo::unique_db(name);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let (shutdown, task) = exporter(uri, &db, &out).await;
        let stop = Arc::new(AtomicBool::new(false));
        let tailer = tail(out.clone(), stop.clone());
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        let coll = client.database(&db).collection::<Document>("HealthEvents");
        Self {
            coll,
            out,
            shutdown,
            task,
            stop,
            tailer,
            _dir: dir,
        }
    }

    /// Waits for `events` lines, then stops; returns what the tailer saw.
    async fn finish(self, events: usize) -> Vec<(Instant, f64)> {
        while std::fs::read_to_string(&self.out)
            .map(|s| s.lines().count())
            .unwrap_or(0)
            < events
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.tailer.join().unwrap();
        self.shutdown.cancel();
        self.task.await.unwrap();
        seen
    }
}

async fn throughput(uri: &str, templates: &[Document], events: usize) {
    let run = Run::start(uri, "bench_tp").await;
    let start = Instant::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Document> = chunk
            .iter()
            .map(|i| document(&templates[i % templates.len()]))
            .collect();
        run.coll.insert_many(batch).await.unwrap();
    }
    let inserted = start.elapsed();
    let seen = run.finish(events).await;
    let secs = (seen.last().unwrap().0 - start).as_secs_f64();
    println!(
        "throughput: {events} events, inserted in {:.2} s ({:.0}/s); change stream → file: {:.0} events/s sustained ({:.2} s first insert → last write)",
        inserted.as_secs_f64(),
        events as f64 / inserted.as_secs_f64(),
        events as f64 / secs,
        secs
    );
}

async fn latency(uri: &str, templates: &[Document], rate: u64, seconds: u64) {
    let run = Run::start(uri, "bench_lat").await;
    // Batches every 10 ms.
    let per_tick = (rate / 100).max(1) as usize;
    let total = per_tick * 100 * seconds as usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0;
    while sent < total {
        ticker.tick().await;
        let batch: Vec<Document> = (0..per_tick)
            .map(|i| document(&templates[(sent + i) % templates.len()]))
            .collect();
        run.coll.insert_many(batch).await.unwrap();
        sent += per_tick;
    }
    let mut latencies: Vec<f64> = run
        .finish(total)
        .await
        .into_iter()
        .map(|(_, l)| l * 1000.0)
        .filter(|l| l.is_finite())
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency at {rate} events/s for {seconds} s ({} events): insert → written p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` builds benches too but
    // must not run this one.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let uri = mongo::shared_uri().await;
        let templates = mongo::sample_documents("examples/health-events.jsonl");
        throughput(&uri, &templates, env_or("BENCH_EVENTS", 100_000) as usize).await;
        latency(
            &uri,
            &templates,
            env_or("BENCH_RATE", 5_000),
            env_or("BENCH_SECONDS", 10),
        )
        .await;
    });
}
