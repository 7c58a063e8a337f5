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
