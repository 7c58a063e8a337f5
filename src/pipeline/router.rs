//! The router: takes records from the source as the in-flight window has
//! room and hands them, a batch at a time, to mapping tasks that run on
//! every core — each maps its records into events, runs the global
//! transforms and routes them through the tree. The router takes the
//! mapped batches back in the order it handed them out, registers each
//! record with the tracker and puts its events in the queue of every
//! receiver they reach: sequence numbers, positions and every queue's order
//! are exactly those of a single task. Between two batches it switches to a
//! reloaded configuration.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use super::topology::{Routing, Stage, Topology};
use super::{Queued, Reload, Tracker};
use crate::event::{Encoded, Event};
use crate::source::{Done, Payload, Position, Record};
use crate::stats::Stats;
use crate::telemetry::traces::{EventSpan, Tracer};
use crate::telemetry::{Live, Telemetry};

/// Records the router takes from the source at once: one mapping task's batch.
const ROUTER_BATCH: usize = 256;

/// Batches being mapped at once: one per core, and one more so a core
/// never waits for the router to hand out the next.
fn mapping_tasks() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// The router: maps and routes every record by the current [`Routing`],
/// switching to a reloaded one between two batches.
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
        let depth = mapping_tasks();
        // Batches being mapped, in the order they were taken, with their
        // number of records.
        let mut mapping: VecDeque<(usize, JoinHandle<Mapped>)> = VecDeque::with_capacity(depth);
        // The records in `mapping`: taken, not yet registered.
        let mut taken = 0usize;
        let mut open = true;
        while open || !mapping.is_empty() {
            let reload = async {
                match reloads.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            let tracker = &self.tracker;
            tokio::select! {
                biased;
                Some(reload) = reload => {
                    // Records taken before the reload go out as the config
                    // they were taken under says.
                    while let Some((_, task)) = mapping.pop_front() {
                        self.settle(&routing, joined(task.await)).await;
                    }
                    taken = 0;
                    self.reload(&mut routing, reload);
                }
                mapped = async { (&mut mapping.front_mut().expect("a batch is mapping").1).await },
                    if !mapping.is_empty() => {
                    let (n, _) = mapping.pop_front().expect("the batch just mapped");
                    taken -= n;
                    self.settle(&routing, joined(mapped)).await;
                }
                // No more records than the window has room for, counting
                // those being mapped (waiting here, not in the middle of a
                // batch, keeps reloads going: one may be what unblocks a
                // stuck receiver).
                batch = async {
                    let room = tracker.room().await;
                    if room <= taken {
                        // Only registering what is being mapped makes room.
                        return std::future::pending().await;
                    }
                    let mut batch = Vec::with_capacity(ROUTER_BATCH);
                    records.recv_many(&mut batch, (room - taken).min(ROUTER_BATCH)).await;
                    batch
                }, if open && mapping.len() < depth => {
                    if batch.is_empty() {
                        open = false;
                        continue;
                    }
                    let n = batch.len();
                    taken += n;
                    let stage = routing.stage.clone();
                    let stats = self.stats.clone();
                    let tracer = self.tracer.clone();
                    let task = tokio::spawn(async move {
                        map_batch(&stage, batch, &stats, tracer.as_ref()).await
                    });
                    mapping.push_back((n, task));
                }
            }
        }
        debug!("source finished; draining receiver queues");
        drop(routing);
        self.topology.close().wait().await;
    }

    /// Registers a mapped batch's records in order and queues their events.
    async fn settle(&self, routing: &Routing, mapped: Mapped) {
        let mut events = mapped.events.into_iter();
        for record in mapped.records {
            let seq = self
                .tracker
                .begin(record.receivers, record.position, record.done);
            for _ in 0..record.events {
                let (event, targets) = events.next().expect("every event of a record");
                let targets = &mapped.targets[targets];
                enqueue(routing, event, seq, targets, record.span.clone()).await;
            }
        }
    }

    /// Switches to a reloaded config: from the next batch on, every record
    /// is routed by it.
    fn reload(&mut self, routing: &mut Routing, reload: Reload) {
        let result = self
            .topology
            .apply(&reload.compiled, &reload.plugins, None)
            .map(|mut new| {
                Arc::get_mut(&mut new.stage)
                    .expect("a new stage is not shared yet")
                    .routes
                    .inherit_counts(&routing.stage.routes);
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
                routes: routing.stage.routes.clone(),
                receivers: self.topology.views(),
                transforms: routing.stage.transforms.plugins().cloned().collect(),
            });
        }
    }
}

/// A mapping task's result, or its panic passed on. A task cancelled (the
/// runtime shutting down, the router with it) gives nothing: its records
/// were never registered, so they are read again on the next start.
fn joined(result: Result<Mapped, tokio::task::JoinError>) -> Mapped {
    match result {
        Ok(mapped) => mapped,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Mapped::default(),
    }
}

/// A batch of records mapped and routed, in the order they were read.
#[derive(Default)]
struct Mapped {
    records: Vec<MappedRecord>,
    /// Every record's events, in order, each with its receivers (a range
    /// of `targets`).
    events: Vec<(Arc<Encoded>, Range<usize>)>,
    targets: Vec<usize>,
}

/// One record of a [`Mapped`] batch.
struct MappedRecord {
    position: Option<Position>,
    done: Option<Done>,
    /// How many receivers must finish it (0: finished at once).
    receivers: u32,
    /// How many of [`Mapped::events`] are its own (they follow the
    /// previous record's).
    events: usize,
    span: Option<Arc<EventSpan>>,
}

/// Maps, transforms and routes a batch of records (a mapping task).
async fn map_batch(
    stage: &Stage,
    records: Vec<Record>,
    stats: &Stats,
    tracer: Option<&Tracer>,
) -> Mapped {
    let mut mapped = Mapped {
        records: Vec::with_capacity(records.len()),
        events: Vec::with_capacity(records.len()),
        targets: Vec::with_capacity(records.len()),
    };
    // Where records mapped straight to JSON are written, reused.
    let mut scratch = Vec::new();
    for record in records {
        let first = mapped.events.len();
        let (receivers, span) = match (&stage.direct, tracer) {
            (Some(paths), None) => {
                let receivers = map_direct(
                    stage,
                    paths,
                    record.payload,
                    &mut mapped,
                    stats,
                    &mut scratch,
                );
                (receivers, None)
            }
            _ => map_one(stage, record.payload, &mut mapped, stats, tracer).await,
        };
        mapped.records.push(MappedRecord {
            position: record.position,
            done: record.done,
            receivers,
            events: mapped.events.len() - first,
            span,
        });
    }
    mapped
}

/// Maps, transforms and routes one record, adding its events to `mapped`:
/// how many receivers must finish it, and its span.
async fn map_one(
    stage: &Stage,
    payload: Payload,
    mapped: &mut Mapped,
    stats: &Stats,
    tracer: Option<&Tracer>,
) -> (u32, Option<Arc<EventSpan>>) {
    let read = tracer.map(|_| std::time::SystemTime::now());
    let Some(line) = line(payload, stats) else {
        return (0, None);
    };
    let Some(mut event) = mapped_ok(stage.mapper.map(&line), stats) else {
        return (0, None);
    };
    let span = match (tracer, read) {
        (Some(tracer), Some(read)) => Some(tracer.process_event(&mut event, read)),
        _ => None,
    };
    if stage.transforms.is_empty() {
        let total = route(stage, event, mapped, stats, Encoded::new);
        return (total, span.and_then(|s| s.routed(total as usize)));
    }
    // A transform may split the event: the record is finished when every
    // receiver of every resulting event is.
    let events = stage.transforms.apply(event, stats).await;
    let dropped = events.is_empty();
    let mut total = 0u32;
    for event in events {
        total += route(stage, event, mapped, stats, Encoded::new);
    }
    let span = span.and_then(|s| match dropped {
        true => s.filtered(),
        false => s.routed(total as usize),
    });
    (total, span)
}

/// [`map_one`] without a DOM ([`Stage::direct`]): the record is mapped
/// straight to its JSON; routing reads the event's attributes and, of its
/// data, only what the route tree's paths reach, read back from that JSON.
/// The event goes on as its JSON alone; a receiver that reads it gets it
/// read back from the JSON.
fn map_direct(
    stage: &Stage,
    paths: &crate::event::DataPaths,
    payload: Payload,
    mapped: &mut Mapped,
    stats: &Stats,
    scratch: &mut Vec<u8>,
) -> u32 {
    let Some(line) = line(payload, stats) else {
        return 0;
    };
    scratch.clear();
    let Some(mut event) = mapped_ok(stage.mapper.encode(&line, scratch), stats) else {
        return 0;
    };
    if !paths.is_empty() {
        let data = paths
            .data_of(scratch)
            .expect("the JSON just written reads back");
        event.set_data_unchecked(data);
    }
    route(stage, event, mapped, stats, |_, _| {
        Encoded::from_json(bytes::Bytes::copy_from_slice(scratch))
    })
}

/// A record's line, counted as read; `None` for a checkpoint (no record)
/// and for a record that could not be read, counted and logged as malformed.
fn line(payload: Payload, stats: &Stats) -> Option<Vec<u8>> {
    let line = match payload {
        Payload::Line(line) => line,
        Payload::Checkpoint => return None,
        Payload::Invalid(reason) => {
            stats.read.fetch_add(1, Ordering::Relaxed);
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(%reason, "malformed record skipped");
            return None;
        }
    };
    stats.read.fetch_add(1, Ordering::Relaxed);
    Some(line)
}

/// A mapped event, counted; a record the mapping refused is counted and
/// logged as malformed.
fn mapped_ok(result: Result<Event, crate::mapping::MapError>, stats: &Stats) -> Option<Event> {
    match result {
        Ok(event) => {
            stats.mapped.fetch_add(1, Ordering::Relaxed);
            Some(event)
        }
        Err(e) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            warn!(record_id = e.id.as_deref().unwrap_or("-"), reason = %e.reason, "malformed record skipped");
            None
        }
    }
}

/// Routes one event, adding it to `mapped` (as `encode` makes it of the
/// event and whether a receiver reads more than its JSON) when it reaches
/// a receiver: how many it reaches.
fn route(
    stage: &Stage,
    event: Event,
    mapped: &mut Mapped,
    stats: &Stats,
    encode: impl FnOnce(Event, bool) -> Encoded,
) -> u32 {
    let first = mapped.targets.len();
    stage.routes.route_into(&event, &mut mapped.targets);
    let n = mapped.targets.len() - first;
    if n == 0 {
        stats.unrouted.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    // Encoded here, on the mapping task's core, once for every receiver;
    // the event itself goes on only to receivers that read it.
    let keep = mapped.targets[first..]
        .iter()
        .any(|&r| stage.wants_event[r]);
    let encoded = encode(event, keep);
    mapped
        .events
        .push((Arc::new(encoded), first..mapped.targets.len()));
    n as u32
}

/// Queues `event` for each receiver in `targets` (waiting while a queue is full).
async fn enqueue(
    routing: &Routing,
    event: Arc<Encoded>,
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
            room: None,
        };
        if !queue.send(queued).await {
            error!(receiver = %queue.name, "receiver task is gone; its events stay unfinished");
        }
    }
}
