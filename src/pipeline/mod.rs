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
pub(crate) mod buffer;
mod receiver;
pub mod replay;
pub mod retry;
#[cfg(test)]
mod tests;
mod topology;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use ack::Tracker;

use crate::config::Compiled;
use crate::event::Event;
use crate::plugin::Plugins;
use crate::sink;
use crate::source::{self, Payload, Record, SourceContext, SourceError};
use crate::state::{PositionStore, StateError};
use crate::stats::Stats;
use crate::telemetry::traces::{EventSpan, Tracer};
use crate::telemetry::{Live, Telemetry};
use topology::{Routing, Topology};

/// An event in a receiver's queue.
pub struct Queued {
    pub event: Arc<Event>,
    pub seq: u64,
    /// Its `process_event` span, when tracing.
    pub span: Option<Arc<EventSpan>>,
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

/// A validated config to switch to while running (hot reload), with its
/// plugins loaded. The pipeline answers on `done` once it has taken over
/// (or why it could not).
pub struct Reload {
    pub compiled: Compiled,
    pub plugins: Plugins,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// What a run may be given besides its config.
#[derive(Default)]
pub struct Options {
    /// One sink per configured receiver, in order, instead of building them
    /// (tests use this to pause a receiver).
    pub sinks: Option<Vec<Arc<dyn sink::Sink>>>,
    /// Configs to switch to while running.
    pub reloads: Option<mpsc::Receiver<Reload>>,
    /// Where metrics and health checks see the running pipeline.
    pub telemetry: Option<Arc<Telemetry>>,
    /// Spans for every event, when tracing is on.
    pub tracer: Option<Tracer>,
}

/// Runs until the source ends (and everything is delivered) or `shutdown`
/// is cancelled.
pub async fn run(
    compiled: Compiled,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    run_with(compiled, Options::default(), shutdown).await
}

/// [`run`] with the receivers' sinks given, one per configured receiver in
/// order (tests use this to pause a receiver).
pub async fn run_with_sinks(
    compiled: Compiled,
    sinks: Vec<Arc<dyn sink::Sink>>,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    let options = Options {
        sinks: Some(sinks),
        ..Options::default()
    };
    run_with(compiled, options, shutdown).await
}

/// [`run`] with [`Options`].
pub async fn run_with(
    compiled: Compiled,
    options: Options,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    let plugins = Plugins::load(compiled.plugins(), &compiled.plugin_cache()).await?;
    run_loaded(compiled, plugins, options, shutdown).await
}

async fn run_loaded(
    compiled: Compiled,
    plugins: Plugins,
    options: Options,
    shutdown: CancellationToken,
) -> Result<Arc<Stats>, PipelineError> {
    if let Some(sinks) = &options.sinks {
        assert_eq!(
            sinks.len(),
            compiled.receivers.len(),
            "one sink per receiver"
        );
    }
    let stats = Arc::new(Stats::default());
    let tracker = Arc::new(Tracker::new(compiled.state.max_in_flight));
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

    let buffers = buffer::BufferContext::new(
        &compiled.state.dir,
        compiled.state.flush_interval,
        shutdown.clone(),
    );
    let mut topology = Topology::new(tracker.clone(), stats.clone(), buffers.clone());
    let routing = topology.apply(&compiled, &plugins, options.sinks)?;
    let router = Router {
        topology,
        tracker: tracker.clone(),
        stats: stats.clone(),
        telemetry: options.telemetry.clone(),
        tracer: options.tracer.clone(),
    };
    router.publish(&routing);

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
        stats.clone(),
        compiled.state.flush_interval,
        checkpoint_stop.clone(),
    ));

    let work = router.run(routing, records_rx, options.reloads);
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
    // The disk buffers' positions: what their receivers finished.
    buffers.stop.cancel();
    buffers.savers.close();
    buffers.savers.wait().await;
    if let Some(telemetry) = &options.telemetry {
        telemetry.clear_live();
    }

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
        gaps = Stats::get(&source_stats.gaps),
        "pipeline stopped"
    );
    if source_task.is_finished() {
        source_task.await.expect("source task does not panic")?;
    }
    saved?;
    Ok(stats)
}

/// The router: maps and routes every record by the current [`Routing`],
/// switching to a reloaded one between two records.
struct Router {
    topology: Topology,
    tracker: Arc<Tracker>,
    stats: Arc<Stats>,
    telemetry: Option<Arc<Telemetry>>,
    tracer: Option<Tracer>,
}

impl Router {
    async fn run(
        mut self,
        mut routing: Routing,
        mut records: mpsc::Receiver<Record>,
        mut reloads: Option<mpsc::Receiver<Reload>>,
    ) {
        let mut targets = Vec::with_capacity(routing.queues.len());
        let mut batch = Vec::with_capacity(ROUTER_BATCH);
        loop {
            let reload = async {
                match reloads.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(reload) = reload => self.reload(&mut routing, reload),
                // No more records than the window has room for (waiting
                // here, not in the middle of a batch, keeps reloads going:
                // one may be what unblocks a stuck receiver).
                n = async {
                    let room = self.tracker.room().await;
                    records.recv_many(&mut batch, room.min(ROUTER_BATCH)).await
                } => {
                    if n == 0 {
                        break;
                    }
                    for record in batch.drain(..) {
                        let tracer = self.tracer.as_ref();
                        route_one(&routing, record, &mut targets, &self.tracker, &self.stats, tracer).await;
                    }
                }
            }
        }
        debug!("source finished; draining receiver queues");
        drop(routing);
        self.topology.close().wait().await;
    }

    /// Switches to a reloaded config: from the next record on, every event
    /// is routed by it.
    fn reload(&mut self, routing: &mut Routing, reload: Reload) {
        let result = self
            .topology
            .apply(&reload.compiled, &reload.plugins, None)
            .map(|mut new| {
                new.routes.inherit_counts(&routing.routes);
                *routing = new;
                self.publish(routing);
            })
            .map_err(|e| e.to_string());
        // The reloader may have given up waiting; nothing to tell then.
        let _ = reload.done.send(result);
    }

    /// Shows the running receivers and routes to metrics.
    fn publish(&self, routing: &Routing) {
        if let Some(telemetry) = &self.telemetry {
            telemetry.set_live(Live {
                stats: self.stats.clone(),
                progress: self.tracker.clone(),
                routes: routing.routes.clone(),
                receivers: self.topology.views(),
                transforms: routing.transforms.plugins().cloned().collect(),
            });
        }
    }
}

/// Maps, transforms and routes one record.
async fn route_one(
    routing: &Routing,
    record: Record,
    targets: &mut Vec<usize>,
    tracker: &Tracker,
    stats: &Stats,
    tracer: Option<&Tracer>,
) {
    let read = tracer.map(|_| std::time::SystemTime::now());
    let line = match record.payload {
        Payload::Line(line) => line,
        Payload::Checkpoint => {
            tracker.begin(0, record.position, record.done);
            return;
        }
        Payload::Invalid(reason) => {
            stats.read.fetch_add(1, Ordering::Relaxed);
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(%reason, "malformed record skipped");
            tracker.begin(0, record.position, record.done);
            return;
        }
    };
    stats.read.fetch_add(1, Ordering::Relaxed);
    let mut event = match routing.mapper.map(&line) {
        Ok(event) => event,
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(record_id = e.id.as_deref().unwrap_or("-"), reason = %e.reason, "malformed record skipped");
            tracker.begin(0, record.position, record.done);
            return;
        }
    };
    stats.mapped.fetch_add(1, Ordering::Relaxed);
    let span = match (tracer, read) {
        (Some(tracer), Some(read)) => Some(tracer.process_event(&mut event, read)),
        _ => None,
    };
    if routing.transforms.is_empty() {
        routing.routes.route(&event, targets);
        let span = span.and_then(|s| s.routed(targets.len()));
        if targets.is_empty() {
            stats.unrouted.fetch_add(1, Ordering::Relaxed);
            tracker.begin(0, record.position, record.done);
            return;
        }
        let seq = tracker.begin(targets.len() as u32, record.position, record.done);
        enqueue(routing, Arc::new(event), seq, targets, span).await;
        return;
    }
    // A transform may split the event: the record is finished when every
    // receiver of every resulting event is.
    let events = routing.transforms.apply(event, stats).await;
    let dropped = events.is_empty();
    let mut routed = Vec::with_capacity(events.len());
    let mut total = 0u32;
    for event in events {
        routing.routes.route(&event, targets);
        if targets.is_empty() {
            stats.unrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        total += targets.len() as u32;
        routed.push((Arc::new(event), targets.clone()));
    }
    let seq = tracker.begin(total, record.position, record.done);
    let span = span.and_then(|s| match dropped {
        true => s.filtered(),
        false => s.routed(total as usize),
    });
    for (event, targets) in routed {
        enqueue(routing, event, seq, &targets, span.clone()).await;
    }
}

/// Queues `event` for each receiver in `targets` (waiting while a queue is full).
async fn enqueue(
    routing: &Routing,
    event: Arc<Event>,
    seq: u64,
    targets: &[usize],
    span: Option<Arc<EventSpan>>,
) {
    for &r in targets {
        let queue = &routing.queues[r];
        let queued = Queued {
            event: event.clone(),
            seq,
            span: span.clone(),
        };
        if !queue.send(queued).await {
            error!(receiver = %queue.name, "receiver task is gone; its events stay unfinished");
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
    stats: Arc<Stats>,
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
                Ok(()) => {
                    saved_version = version;
                    stats.positions_saved.fetch_add(1, Ordering::Relaxed);
                    let now = chrono::Utc::now().timestamp_millis();
                    stats
                        .position_saved_at
                        .store(u64::try_from(now).unwrap_or(0), Ordering::Relaxed);
                }
                Err(e) if stopping => return Err(e),
                Err(e) => warn!(error = %e, "cannot persist source position; will retry"),
            }
        }
        if stopping {
            return Ok(());
        }
    }
}
