//! The running pipeline: source → mapping → route → one bounded queue and
//! task per receiver → receiver, with ordered acknowledgements back to the
//! source position.
//!
//! Backpressure: the router waits when a receiver's queue is full, and the
//! source waits on the router, so memory stays bounded; a slow receiver
//! delays the others only once its own queue is full.
//!
//! Shutdown: cancel the token; the source stops, queues drain, the last
//! finished position is persisted. Past `shutdown_timeout` the pipeline
//! stops waiting; unfinished events are read again on the next start.

mod ack;
pub mod deadletter;
mod receiver;
pub mod retry;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use ack::Tracker;

use crate::config::Compiled;
use crate::event::Event;
use crate::plugin::Plugins;
use crate::sink;
use crate::source::{self, Payload, Record, SourceContext, SourceError, SourceStats};
use crate::state::{PositionStore, StateError};
use crate::transform::Chain;

/// An event in a receiver's queue.
#[derive(Debug)]
pub struct Queued {
    pub event: Arc<Event>,
    pub seq: u64,
}

/// Counters of a run (exported as metrics by a later issue).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the source (including malformed ones).
    pub read: AtomicU64,
    /// Records mapped to CloudEvents.
    pub mapped: AtomicU64,
    /// Records that could not be read or mapped (logged and skipped).
    pub malformed: AtomicU64,
    /// Events no route sent anywhere (dropped or unmatched).
    pub unrouted: AtomicU64,
    /// Event deliveries (one per receiver) that succeeded.
    pub delivered: AtomicU64,
    /// Event deliveries rejected for good by a receiver.
    pub rejected: AtomicU64,
    /// Events written to a receiver's dead letter file.
    pub dead_lettered: AtomicU64,
    /// Failed delivery attempts that were retried.
    pub retries: AtomicU64,
    /// Events a transform returned no events for (filtered out).
    pub filtered: AtomicU64,
    /// Events a transform failed on (then dropped, passed or dead-lettered
    /// by its `onError`).
    pub transform_failures: AtomicU64,
    /// Events dropped by a transform's `onError: drop`.
    pub transform_dropped: AtomicU64,
    /// The source's own counters.
    pub source: Arc<SourceStats>,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] sink::BuildError),
    #[error(transparent)]
    Plugin(#[from] crate::plugin::LoadError),
}

/// Records buffered between the source and the router.
const SOURCE_BUFFER: usize = 1024;

/// Records the router takes from the source at once.
const ROUTER_BATCH: usize = 256;

/// Runs until the source ends (and everything is delivered) or `shutdown`
/// is cancelled.
pub async fn run(
    compiled: Compiled,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    let plugins = Plugins::load(compiled.plugins(), &compiled.plugin_cache()).await?;
    let sinks = compiled
        .receivers
        .iter()
        .map(|r| sink::build(r, &plugins))
        .collect::<Result<_, _>>()?;
    run_loaded(compiled, plugins, sinks, shutdown).await
}

/// [`run`] with the receivers' sinks given, one per configured receiver in
/// order (tests use this to pause a receiver).
pub async fn run_with_sinks(
    compiled: Compiled,
    sinks: Vec<Arc<dyn sink::Sink>>,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    let plugins = Plugins::load(compiled.plugins(), &compiled.plugin_cache()).await?;
    run_loaded(compiled, plugins, sinks, shutdown).await
}

async fn run_loaded(
    compiled: Compiled,
    plugins: Plugins,
    sinks: Vec<Arc<dyn sink::Sink>>,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    assert_eq!(
        sinks.len(),
        compiled.receivers.len(),
        "one sink per receiver"
    );
    let stats = Arc::new(Stats::default());
    let tracker = Arc::new(Tracker::default());
    let source = source::build(&compiled.source);
    let store = source.position_store(&compiled.state)?;
    let start = match &store {
        Some(store) => match load_position(store.as_ref(), &shutdown).await? {
            Some(start) => start,
            None => return Ok(stats), // shut down while waiting for the store
        },
        None => None,
    };
    let source_stats = stats.source.clone();

    let tasks = TaskTracker::new();
    let mut queues = Vec::with_capacity(compiled.receivers.len());
    for (spec, sink) in compiled.receivers.iter().zip(sinks) {
        let (tx, rx) = mpsc::channel(spec.queue.max_events);
        queues.push(tx);
        let transforms = Chain::new(&spec.transforms, &plugins);
        let task =
            receiver::ReceiverTask::new(spec, sink, transforms, rx, tracker.clone(), stats.clone());
        tasks.spawn(task.run());
    }
    tasks.close();

    let (records_tx, records_rx) = mpsc::channel(SOURCE_BUFFER);
    let source_task = tokio::spawn(source.run(SourceContext {
        out: records_tx,
        shutdown: shutdown.clone(),
        start,
        stats: source_stats.clone(),
    }));

    let checkpoint_stop = CancellationToken::new();
    let checkpointer = tokio::spawn(checkpoint(
        store.clone(),
        tracker.clone(),
        compiled.state.flush_interval,
        checkpoint_stop.clone(),
    ));

    let transforms = Chain::new(&compiled.transforms, &plugins);
    let work = async {
        route_records(&compiled, &transforms, records_rx, queues, &tracker, &stats).await;
        tasks.wait().await;
    };
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(compiled.shutdown_timeout).await;
    };
    tokio::select! {
        () = work => {}
        () = deadline => {
            warn!(
                unfinished = tracker.in_flight(),
                timeout = ?compiled.shutdown_timeout,
                "shutdown timed out; unfinished events will be read again on the next start"
            );
        }
    }
    checkpoint_stop.cancel();
    let saved = checkpointer.await.expect("checkpoint task does not panic");

    info!(
        read = Stats::get(&stats.read),
        mapped = Stats::get(&stats.mapped),
        malformed = Stats::get(&stats.malformed),
        unrouted = Stats::get(&stats.unrouted),
        delivered = Stats::get(&stats.delivered),
        rejected = Stats::get(&stats.rejected),
        dead_lettered = Stats::get(&stats.dead_lettered),
        retries = Stats::get(&stats.retries),
        filtered = Stats::get(&stats.filtered),
        transform_failures = Stats::get(&stats.transform_failures),
        backfilled = Stats::get(&source_stats.backfilled),
        tokens_lost = Stats::get(&source_stats.tokens_lost),
        reconnects = Stats::get(&source_stats.reconnects),
        "pipeline stopped"
    );
    if source_task.is_finished() {
        source_task.await.expect("source task does not panic")?;
    }
    saved?;
    Ok(stats)
}

/// Maps and routes every record, handing events to the receiver queues.
async fn route_records(
    compiled: &Compiled,
    transforms: &Chain,
    mut records: mpsc::Receiver<Record>,
    queues: Vec<mpsc::Sender<Queued>>,
    tracker: &Tracker,
    stats: &Stats,
) {
    let mut targets = Vec::with_capacity(queues.len());
    let mut batch = Vec::with_capacity(ROUTER_BATCH);
    while records.recv_many(&mut batch, ROUTER_BATCH).await > 0 {
        for record in batch.drain(..) {
            route_one(
                compiled,
                transforms,
                record,
                &queues,
                &mut targets,
                tracker,
                stats,
            )
            .await;
        }
    }
    debug!("source finished; draining receiver queues");
}

/// Maps, transforms and routes one record.
async fn route_one(
    compiled: &Compiled,
    transforms: &Chain,
    record: Record,
    queues: &[mpsc::Sender<Queued>],
    targets: &mut Vec<usize>,
    tracker: &Tracker,
    stats: &Stats,
) {
    let line = match record.payload {
        Payload::Line(line) => line,
        Payload::Checkpoint => {
            tracker.begin(0, record.position);
            return;
        }
        Payload::Invalid(reason) => {
            stats.read.fetch_add(1, Ordering::Relaxed);
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(%reason, "malformed record skipped");
            tracker.begin(0, record.position);
            return;
        }
    };
    stats.read.fetch_add(1, Ordering::Relaxed);
    let event = match compiled.mapper.map(&line) {
        Ok(event) => event,
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(record_id = e.id.as_deref().unwrap_or("-"), reason = %e.reason, "malformed record skipped");
            tracker.begin(0, record.position);
            return;
        }
    };
    stats.mapped.fetch_add(1, Ordering::Relaxed);
    if transforms.is_empty() {
        compiled.routes.route(&event, targets);
        if targets.is_empty() {
            stats.unrouted.fetch_add(1, Ordering::Relaxed);
            tracker.begin(0, record.position);
            return;
        }
        let seq = tracker.begin(targets.len() as u32, record.position);
        enqueue(compiled, Arc::new(event), seq, targets, queues).await;
        return;
    }
    // A transform may split the event: the record is finished when every
    // receiver of every resulting event is.
    let events = transforms.apply(event, stats).await;
    let mut routed = Vec::with_capacity(events.len());
    let mut total = 0u32;
    for event in events {
        compiled.routes.route(&event, targets);
        if targets.is_empty() {
            stats.unrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        total += targets.len() as u32;
        routed.push((Arc::new(event), targets.clone()));
    }
    let seq = tracker.begin(total, record.position);
    for (event, targets) in routed {
        enqueue(compiled, event, seq, &targets, queues).await;
    }
}

/// Queues `event` for each receiver in `targets` (waiting while a queue is full).
async fn enqueue(
    compiled: &Compiled,
    event: Arc<Event>,
    seq: u64,
    targets: &[usize],
    queues: &[mpsc::Sender<Queued>],
) {
    for &r in targets {
        let queued = Queued {
            event: event.clone(),
            seq,
        };
        if queues[r].send(queued).await.is_err() {
            error!(receiver = %compiled.receivers[r].name, "receiver task is gone; its events stay unfinished");
        }
    }
}

/// Loads the saved position, retrying a store that is not reachable yet (a
/// database still starting) until it answers or shutdown: `Ok(None)`.
async fn load_position(
    store: &dyn PositionStore,
    shutdown: &CancellationToken,
) -> Result<Option<Option<serde_json::Value>>, StateError> {
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match store.load().await {
            Ok(position) => return Ok(Some(position)),
            Err(StateError::Remote(e)) => {
                warn!(error = %e, retry_in = ?wait, "cannot load the saved position yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Persists the committed position every `interval` when it has moved, and
/// once more when stopped. Returns the last save's result.
async fn checkpoint(
    store: Option<Arc<dyn PositionStore>>,
    tracker: Arc<Tracker>,
    interval: std::time::Duration,
    stop: CancellationToken,
) -> Result<(), StateError> {
    let Some(store) = store else { return Ok(()) };
    let mut saved_version = 0;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.cancelled() => true,
        };
        let (position, version) = tracker.committed();
        if let Some(position) = position.filter(|_| version != saved_version) {
            match store.save(&position.to_json()).await {
                Ok(()) => saved_version = version,
                Err(e) if stopping => return Err(e),
                Err(e) => warn!(error = %e, "cannot persist source position; will retry"),
            }
        }
        if stopping {
            return Ok(());
        }
    }
}
