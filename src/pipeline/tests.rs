//! Pipeline behaviour with a receiver that can be paused: queues, backpressure
//! and ordered checkpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{parse, validate};
use crate::sink::{Delivery, Item, Sink};

/// Counts delivered events; waits for a permit per batch when gated.
struct Counting {
    count: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
}

impl Sink for Counting {
    fn deliver<'a>(&'a self, events: &'a [Item]) -> crate::BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate open").forget();
            }
            self.count.fetch_add(events.len(), Ordering::SeqCst);
            Delivery::Delivered
        })
    }
}

fn setup(dir: &std::path::Path, records: usize) -> Compiled {
    let input = dir.join("input.jsonl");
    let lines: String = (0..records).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let yaml = format!(
        "source: {{file: {{path: {}}}}}\n\
         mapping: {{profile: raw, type: t, source: s}}\n\
         state: {{dir: {}, flushInterval: 10ms}}\n\
         route: {{match: [{{receiver: fast}}, {{receiver: slow}}]}}\n\
         receivers:\n\
         - {{name: fast, stdout: {{}}, queue: {{maxEvents: 1000, maxBatch: 1}}}}\n\
         - {{name: slow, stdout: {{}}, queue: {{maxEvents: 10, maxBatch: 1}}}}\n",
        input.display(),
        dir.join("state").display()
    );
    validate(&parse(&yaml).unwrap()).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_receiver_fills_its_queue_then_backpressure_stops_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let compiled = setup(dir.path(), 100);
    let fast = Arc::new(AtomicUsize::new(0));
    let slow = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(Counting {
            count: fast.clone(),
            gate: None,
        }),
        Arc::new(Counting {
            count: slow.clone(),
            gate: Some(gate.clone()),
        }),
    ];
    let run = tokio::spawn(run_with_sinks(compiled, sinks, CancellationToken::new()));

    // The fast receiver gets events while the slow one's queue fills: one
    // event held by the blocked delivery, ten queued, one more that the
    // router is waiting to queue.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fast.load(Ordering::SeqCst) < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fast receiver was held back by the slow one"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slow.load(Ordering::SeqCst), 0);
    assert_eq!(
        fast.load(Ordering::SeqCst),
        12,
        "once slow's queue is full, everything waits"
    );
    let position = std::fs::read_dir(dir.path().join("state")).unwrap().count();
    assert_eq!(
        position, 0,
        "no position past events the slow receiver has not finished"
    );

    gate.add_permits(1000);
    let stats = run.await.unwrap().unwrap();
    assert_eq!(fast.load(Ordering::SeqCst), 100);
    assert_eq!(slow.load(Ordering::SeqCst), 100);
    assert_eq!(Stats::get(&stats.delivered), 200);
    let saved = std::fs::read_to_string(
        dir.path()
            .join("state")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let expected_offset = std::fs::metadata(dir.path().join("input.jsonl"))
        .unwrap()
        .len();
    assert!(
        saved.contains(&format!("\"offset\":{expected_offset}")),
        "{saved}"
    );
}

#[tokio::test]
async fn shutdown_times_out_on_a_stuck_receiver_and_keeps_its_events_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let mut compiled = setup(dir.path(), 5);
    compiled.shutdown_timeout = Duration::from_millis(100);
    let gate = Arc::new(Semaphore::new(0));
    let slow = Arc::new(AtomicUsize::new(0));
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(Counting {
            count: Arc::new(AtomicUsize::new(0)),
            gate: None,
        }),
        Arc::new(Counting {
            count: slow.clone(),
            gate: Some(gate),
        }),
    ];
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_with_sinks(compiled, sinks, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), run).await;
    assert!(
        result
            .expect("stops within the shutdown timeout")
            .unwrap()
            .is_ok()
    );
    assert_eq!(slow.load(Ordering::SeqCst), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("state")).unwrap().count(),
        0,
        "nothing finished, nothing persisted"
    );
}

/// Records what it is given, in order: each event's `data.n`.
struct Recording(Arc<std::sync::Mutex<Vec<u64>>>);

impl Sink for Recording {
    fn deliver<'a>(&'a self, events: &'a [Item]) -> crate::BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let mut seen = self.0.lock().unwrap();
            for item in events {
                let data = match item.event().data() {
                    Some(crate::event::Data::Json(v)) => v.clone(),
                    other => panic!("raw events carry JSON data, not {other:?}"),
                };
                seen.push(data["n"].as_u64().expect("data.n"));
            }
            Delivery::Delivered
        })
    }
}

/// Records are mapped a batch per task on every core; what comes out is as
/// one task would make it: each receiver gets its events in the order they
/// were read, malformed and unrouted records are counted and skipped, and
/// the position ends past the last record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_mapping_keeps_every_receivers_order_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let records = 10_000u64;
    let mut lines = String::new();
    for n in 0..records {
        match n % 7 {
            3 => lines.push_str("not json\n"),
            5 => lines.push_str(&format!("{{\"n\": {n}, \"skip\": true}}\n")),
            _ => lines.push_str(&format!("{{\"n\": {n}, \"even\": {}}}\n", n % 2 == 0)),
        }
    }
    std::fs::write(&input, &lines).unwrap();
    let yaml = format!(
        "source: {{file: {{path: {}}}}}\n\
         mapping: {{profile: raw, type: t, source: s}}\n\
         state: {{dir: {}, flushInterval: 10ms, maxInFlight: 300}}\n\
         route:\n  drop: [{{data.skip: true}}]\n  match: [{{receiver: all}}, {{receiver: even, data.even: true}}]\n\
         receivers:\n\
         - {{name: all, stdout: {{}}, queue: {{maxEvents: 50, maxBatch: 7}}}}\n\
         - {{name: even, stdout: {{}}, queue: {{maxEvents: 50, maxBatch: 3}}}}\n",
        input.display(),
        dir.path().join("state").display()
    );
    let compiled = validate(&parse(&yaml).unwrap()).unwrap().0;
    let all = Arc::new(std::sync::Mutex::new(Vec::new()));
    let even = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(Recording(all.clone())),
        Arc::new(Recording(even.clone())),
    ];
    let stats = run_with_sinks(compiled, sinks, CancellationToken::new())
        .await
        .unwrap();

    let routed: Vec<u64> = (0..records).filter(|n| n % 7 != 3 && n % 7 != 5).collect();
    assert_eq!(*all.lock().unwrap(), routed);
    let evens: Vec<u64> = routed.iter().copied().filter(|n| n % 2 == 0).collect();
    assert_eq!(*even.lock().unwrap(), evens);
    assert_eq!(Stats::get(&stats.read), records);
    let every = |k: u64| (0..records).filter(|n| n % 7 == k).count() as u64;
    assert_eq!(Stats::get(&stats.malformed), every(3));
    assert_eq!(Stats::get(&stats.unrouted), every(5));
    assert_eq!(
        Stats::get(&stats.delivered),
        (routed.len() + evens.len()) as u64
    );
    let saved = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        saved.contains(&format!("\"offset\":{}", lines.len())),
        "{saved}"
    );
}

/// Records mapped straight to JSON (the `nvsentinel` profile, routes on
/// paths and on NVSentinel's CEL view) reach the same receivers with the
/// same bytes as through the DOM (an override, even one that changes
/// nothing, makes the mapping build it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mapping_delivers_what_the_dom_delivers() {
    let samples = include_str!("../../examples/health-events.jsonl");
    let run = |mapping: &'static str| async move {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.jsonl");
        std::fs::write(&input, samples).unwrap();
        let out = dir.path().join("out.jsonl");
        let yaml = format!(
            "metadata: {{cluster: c}}\n\
             source: {{file: {{path: {}}}}}\n\
             mapping: {mapping}\n\
             state: {{dir: {}}}\n\
             route:\n  drop: [{{data.healthEvent.entitiesImpacted.entityType: NIC}}, {{expr: \"event.checkName == 'GpuMemWatch'\"}}]\n  match: [{{receiver: out, data.healthEvent.isFatal: true}}]\n\
             receivers:\n- {{name: out, file: {{path: {}}}}}\n",
            input.display(),
            dir.path().join("state").display(),
            out.display()
        );
        let compiled = validate(&parse(&yaml).unwrap()).unwrap().0;
        let direct = compiled.mapper.encodes() && compiled.routes.data_paths().is_some();
        let stats = run(compiled, CancellationToken::new()).await.unwrap();
        (direct, std::fs::read_to_string(out).unwrap(), stats)
    };
    let (direct, by_json, stats) = run("{profile: nvsentinel}").await;
    assert!(
        direct,
        "paths and NVSentinel's CEL view map straight to JSON"
    );
    let (dom, by_dom, _) =
        run("{profile: nvsentinel, type: com.nvidia.nvsentinel.health.v1}").await;
    assert!(!dom, "an override needs the DOM");
    assert_eq!(by_json, by_dom);
    let fatal = samples
        .lines()
        .filter(|l| {
            l.contains("\"isfatal\":true")
                && !l.contains("\"entitytype\":\"NIC\"")
                && !l.contains("\"checkname\":\"GpuMemWatch\"")
        })
        .count();
    assert!(fatal > 0);
    assert_eq!(by_json.lines().count(), fatal);
    assert_eq!(Stats::get(&stats.delivered), fatal as u64);
}
