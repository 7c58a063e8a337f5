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
mod checkpoint;
mod receiver;
pub mod replay;
pub mod retry;
mod router;
#[cfg(test)]
mod tests;
mod topology;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use ack::Tracker;

use crate::config::Compiled;
use crate::event::Encoded;
use crate::plugin::Plugins;
use crate::sink;
use crate::source::{self, SourceContext, SourceError};
use crate::state::StateError;
use crate::stats::Stats;
use crate::telemetry::Telemetry;
use crate::telemetry::traces::{EventSpan, Tracer};
use checkpoint::{checkpoint, load_position};
use router::Router;
use topology::Topology;

/// An event in a receiver's queue.
pub struct Queued {
    /// Encoded once, shared by every receiver it goes to.
    pub event: Arc<Encoded>,
    pub seq: u64,
    /// Its `process_event` span, when tracing.
    pub span: Option<Arc<EventSpan>>,
    /// Its share of a memory buffer's bytes, given back as the receiver
    /// takes it from the queue.
    pub room: Option<topology::Room>,
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
