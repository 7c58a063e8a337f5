//! The router: takes records from the source as the in-flight window has
//! room, maps each into an event, runs the global transforms, routes it
//! through the tree and puts it in the queue of every receiver it reaches;
//! between two batches it switches to a reloaded configuration.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::topology::{Routing, Topology};
use super::{Queued, Reload, Tracker};
use crate::event::Event;
use crate::source::{Payload, Record};
use crate::stats::Stats;
use crate::telemetry::traces::{EventSpan, Tracer};
use crate::telemetry::{Live, Telemetry};

/// Records the router takes from the source at once.
const ROUTER_BATCH: usize = 256;

/// The router: maps and routes every record by the current [`Routing`],
/// switching to a reloaded one between two records.
pub(super) struct Router {
    pub(super) topology: Topology,
    pub(super) tracker: Arc<Tracker>,
    pub(super) stats: Arc<Stats>,
    pub(super) telemetry: Option<Arc<Telemetry>>,
    pub(super) tracer: Option<Tracer>,
}

impl Router {
    pub(super) async fn run(
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
    pub(super) fn publish(&self, routing: &Routing) {
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
