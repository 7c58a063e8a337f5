//! The receivers running now, and the [`Routing`] the router uses for each
//! record. A reload builds a new `Routing` and the router swaps it in
//! between two records, so every event is routed by exactly one config:
//!
//! - a receiver whose settings and plugin files are unchanged keeps its
//!   task, queue, connections and OAuth2 token;
//! - a changed receiver keeps its task: the new sink, retries and dead
//!   letters apply at once (also to deliveries being retried, at their next
//!   attempt: a fixed endpoint unblocks them); it gets a new queue, which
//!   its task reads once the old one is drained (one writer, in order);
//! - a removed receiver's task drains its queue and stops.
//!
//! The old `Routing` holds the old queues' senders: once the router drops
//! it, nothing more reaches a replaced queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::buffer::{self, BufferContext, DiskBuffer};
use super::receiver::{ReceiverHandle, ReceiverTask};
use super::{Queued, Tracker};
use crate::config::Compiled;
use crate::mapping::Mapper;
use crate::plugin::{Plugin, Plugins};
use crate::route::RouteTree;
use crate::sink::http::oauth2::TokenSource;
use crate::sink::{self, BuildError, Built, Sink};
use crate::sink::{ReceiverSpec, WhenFull};
use crate::stats::{ReceiverStats, Stats};
use crate::telemetry::ReceiverView;
use crate::transform::Chain;

/// What the router needs for one record; replaced whole by a reload.
pub struct Routing {
    /// What maps and routes a record, shared by the mapping tasks.
    pub stage: Arc<Stage>,
    /// The receivers' queues, indexed by the route tree's receiver ids.
    pub queues: Vec<Queue>,
}

/// Record → events → receivers: what a mapping task runs.
pub struct Stage {
    pub mapper: Mapper,
    pub transforms: Chain,
    pub routes: RouteTree,
    /// Per receiver (as the queues), whether it reads events, not only
    /// their JSON ([`Queue::wants_event`]).
    pub wants_event: Vec<bool>,
    /// When records can be mapped straight to JSON ([`Mapper::encodes`],
    /// no global transforms, routes whose reads of `data` are known: see
    /// `RouteTree::data_paths`): the paths routing reads, all of the data
    /// it needs.
    pub direct: Option<crate::event::DataPaths>,
}

/// The sending end of a receiver's queue.
#[derive(Clone)]
pub struct Queue {
    pub name: Arc<str>,
    pub tx: mpsc::Sender<Queued>,
    pub stats: Arc<ReceiverStats>,
    /// A memory buffer's `whenFull` (a disk buffer's writer applies its own).
    when_full: WhenFull,
    tracker: Arc<Tracker>,
    /// A memory buffer's `maxSize`: permits are bytes of event JSON.
    bytes: Option<(Arc<Semaphore>, u32)>,
    /// Whether what reads the queue reads events' attributes or data (the
    /// sink, or the receiver's transforms), not only their JSON: an event
    /// is kept with its JSON only for such a receiver.
    pub wants_event: bool,
}

impl Queue {
    /// Queues one event (waiting while the queue is full, or dropping it
    /// with `whenFull: dropNewest`). `false` if the receiver's task is gone.
    /// The event is counted once it has its place (before it is in the
    /// queue, so the receiver never counts it out first): an event waiting
    /// for room is not, and the gauge never reads more than `maxEvents`.
    pub async fn send(&self, mut queued: Queued) -> bool {
        if let Some((room, max)) = &self.bytes {
            // An event larger than the whole buffer goes when it is empty.
            let bytes = u32::try_from(queued.event.json().len())
                .unwrap_or(u32::MAX)
                .clamp(1, *max);
            let permit = match self.when_full {
                WhenFull::Block => match room.clone().acquire_many_owned(bytes).await {
                    Ok(permit) => permit,
                    Err(_) => return false,
                },
                WhenFull::DropNewest => match room.clone().try_acquire_many_owned(bytes) {
                    Ok(permit) => permit,
                    Err(TryAcquireError::NoPermits) => {
                        self.drop_newest(queued.seq);
                        return true;
                    }
                    Err(TryAcquireError::Closed) => return false,
                },
            };
            queued.room = Some(Room::new(permit, self.stats.clone()));
        }
        let place = match self.when_full {
            WhenFull::Block => match self.tx.reserve().await {
                Ok(place) => place,
                Err(_) => return false,
            },
            WhenFull::DropNewest => match self.tx.try_reserve() {
                Ok(place) => place,
                Err(mpsc::error::TrySendError::Full(())) => {
                    self.drop_newest(queued.seq);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return false,
            },
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        place.send(queued);
        true
    }

    /// `whenFull: dropNewest` with the buffer full: the event is dropped
    /// for this receiver, counted, logged now and then, and finished.
    fn drop_newest(&self, seq: u64) {
        let n = self.stats.buffer_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_multiple_of(10_000) {
            warn!(receiver = %self.name, dropped = n, "buffer full (whenFull: dropNewest): new events dropped for this receiver");
        }
        // Dropped: done for the source position.
        self.tracker.finish(&[seq]);
    }
}

/// A queued event's bytes in a memory buffer: given back, and taken off
/// the queue's byte gauge, when dropped.
pub struct Room {
    permit: OwnedSemaphorePermit,
    stats: Arc<ReceiverStats>,
}

impl Room {
    fn new(permit: OwnedSemaphorePermit, stats: Arc<ReceiverStats>) -> Self {
        stats
            .queued_bytes
            .fetch_add(permit.num_permits() as u64, Ordering::Relaxed);
        Self { permit, stats }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.stats
            .queued_bytes
            .fetch_sub(self.permit.num_permits() as u64, Ordering::Relaxed);
    }
}

/// A running receiver.
struct Running {
    spec: ReceiverSpec,
    /// SHA-256 of every plugin file it uses (sink and transforms).
    digests: Vec<[u8; 32]>,
    queue: Queue,
    /// Its OAuth2 token source, if any (for metrics).
    tokens: Option<Arc<TokenSource>>,
    plugins: Vec<Arc<Plugin>>,
    handle: ReceiverHandle,
    /// Its disk buffer, if it has one.
    disk: Option<DiskBuffer>,
}

/// The running receivers.
pub struct Topology {
    running: HashMap<String, Running>,
    tasks: TaskTracker,
    tracker: Arc<Tracker>,
    stats: Arc<Stats>,
    buffers: BufferContext,
}

/// The queue between the router and a disk buffer's writer: it batches
/// what it takes, so a short queue keeps the events in memory few.
const DISK_INPUT_QUEUE: usize = 1024;

impl Topology {
    pub fn new(tracker: Arc<Tracker>, stats: Arc<Stats>, buffers: BufferContext) -> Self {
        Self {
            running: HashMap::new(),
            tasks: TaskTracker::new(),
            tracker,
            stats,
            buffers,
        }
    }

    /// Builds the routing for `compiled`, starting the receivers it needs
    /// and letting go of those it no longer has. `sinks` (one per receiver,
    /// in order) replaces building them (tests). Errors leave everything
    /// running as it was.
    pub fn apply(
        &mut self,
        compiled: &Compiled,
        plugins: &Plugins,
        sinks: Option<Vec<Arc<dyn Sink>>>,
    ) -> Result<Routing, BuildError> {
        struct Plan {
            spec: ReceiverSpec,
            digests: Vec<[u8; 32]>,
            built: Option<(Built, Chain)>,
            /// A new receiver's disk buffer, opened.
            opened: Option<buffer::Opened>,
        }
        // Build everything first: a failure must not touch what runs.
        let mut sinks = sinks.map(Vec::into_iter);
        let mut plans = Vec::with_capacity(compiled.receivers.len());
        for spec in &compiled.receivers {
            let given = sinks.as_mut().and_then(Iterator::next);
            if let Some(running) = self.running.get(&spec.name)
                && running.spec.buffer != spec.buffer
            {
                return Err(BuildError {
                    receiver: spec.name.clone(),
                    reason: "its buffer settings changed; that needs a restart (events in the old buffer must drain first)".into(),
                });
            }
            let digests = digests(spec, plugins);
            let unchanged = given.is_none()
                && self
                    .running
                    .get(&spec.name)
                    .is_some_and(|r| r.spec == *spec && r.digests == digests);
            let built = if unchanged {
                None
            } else {
                let sink = match given {
                    Some(sink) => Built::plain(sink),
                    None => sink::build(spec, plugins)?,
                };
                Some((sink, Chain::new(&spec.transforms, plugins)))
            };
            let opened = match spec.buffer.disk {
                Some(max_size) if !self.running.contains_key(&spec.name) => Some(
                    buffer::open(&self.buffers, &spec.name, max_size).map_err(|reason| {
                        BuildError {
                            receiver: spec.name.clone(),
                            reason,
                        }
                    })?,
                ),
                _ => None,
            };
            plans.push(Plan {
                spec: spec.clone(),
                digests,
                built,
                opened,
            });
        }

        let mut previous = std::mem::take(&mut self.running);
        let mut queues = Vec::with_capacity(plans.len());
        for plan in plans {
            let old = previous.remove(&plan.spec.name);
            let running = match (plan.built, old) {
                (None, Some(old)) => old,
                (Some((built, transforms)), Some(old)) => {
                    info!(receiver = %plan.spec.name, "receiver changed; its new settings apply from now on");
                    self.update(old, plan.spec, plan.digests, built, transforms)
                }
                (Some((built, transforms)), None) => {
                    self.start(plan.spec, plan.digests, built, transforms, plan.opened)
                }
                (None, None) => unreachable!("unchanged means it was running"),
            };
            queues.push(running.queue.clone());
            self.running.insert(running.spec.name.clone(), running);
        }
        for name in previous.keys() {
            info!(receiver = %name, "receiver removed; it stops once its queue is delivered");
        }
        // `previous` (removed receivers) drops here; their tasks end when
        // the router drops the old routing's senders too.
        let transforms = Chain::new(&compiled.transforms, plugins);
        let direct = (compiled.mapper.encodes() && transforms.is_empty())
            .then(|| compiled.routes.data_paths())
            .flatten();
        Ok(Routing {
            stage: Arc::new(Stage {
                mapper: compiled.mapper.clone(),
                transforms,
                routes: compiled.routes.clone(),
                wants_event: queues.iter().map(|q| q.wants_event).collect(),
                direct,
            }),
            queues,
        })
    }

    fn start(
        &self,
        spec: ReceiverSpec,
        digests: Vec<[u8; 32]>,
        built: Built,
        transforms: Chain,
        opened: Option<buffer::Opened>,
    ) -> Running {
        let plugins = plugins_of(&built, &transforms);
        let wants_event = wants_event(&spec, &built, &transforms);
        let stats = Arc::<ReceiverStats>::default();
        // The receiver task's queue, and the tracker it finishes events in.
        let (task_tx, task_rx) = mpsc::channel(spec.queue.max_events);
        let (tx, disk, tracker) = match (spec.buffer.disk, opened) {
            (Some(max_size), Some(opened)) => {
                let (tx, rx) = mpsc::channel(DISK_INPUT_QUEUE);
                let disk = buffer::start(
                    &self.buffers,
                    opened,
                    &spec.name,
                    max_size,
                    spec.buffer.when_full,
                    spec.queue.max_events,
                    self.tracker.clone(),
                    stats.clone(),
                    rx,
                    task_tx,
                    &self.tasks,
                );
                let tracker = disk.tracker.clone();
                (tx, Some(disk), tracker)
            }
            _ => (task_tx, None, self.tracker.clone()),
        };
        let (task, handle) = ReceiverTask::new(
            &spec,
            built.sink,
            transforms,
            task_rx,
            tracker,
            self.stats.clone(),
            stats.clone(),
        );
        self.tasks.spawn(task.run());
        Running {
            queue: self.queue(&spec, tx, stats, wants_event),
            spec,
            digests,
            tokens: built.tokens,
            plugins,
            handle,
            disk,
        }
    }

    fn queue(
        &self,
        spec: &ReceiverSpec,
        tx: mpsc::Sender<Queued>,
        stats: Arc<ReceiverStats>,
        wants_event: bool,
    ) -> Queue {
        Queue {
            name: spec.name.as_str().into(),
            tx,
            stats,
            // A disk buffer's writer decides what a full buffer means.
            when_full: match spec.buffer.disk {
                None => spec.buffer.when_full,
                Some(_) => WhenFull::Block,
            },
            tracker: self.tracker.clone(),
            bytes: match spec.buffer.disk {
                None => spec.queue.max_bytes.map(|max| {
                    let max = u32::try_from(max).unwrap_or(u32::MAX);
                    (Arc::new(Semaphore::new(max as usize)), max)
                }),
                Some(_) => None,
            },
            wants_event,
        }
    }

    /// Gives a running receiver new settings and a new queue (with a disk
    /// buffer: new queues on both sides of it).
    fn update(
        &self,
        old: Running,
        spec: ReceiverSpec,
        digests: Vec<[u8; 32]>,
        built: Built,
        transforms: Chain,
    ) -> Running {
        let plugins = plugins_of(&built, &transforms);
        let wants_event = wants_event(&spec, &built, &transforms);
        let (task_tx, task_rx) = mpsc::channel(spec.queue.max_events);
        let tx = match &old.disk {
            None => task_tx,
            Some(disk) => {
                let (tx, rx) = mpsc::channel(DISK_INPUT_QUEUE);
                // Both are alive as long as the buffer's tasks are, which
                // outlive every `Running` that holds them.
                let _ = disk.next_input.send(rx);
                let _ = disk.next_output.send(task_tx);
                tx
            }
        };
        old.handle.update(&spec, built.sink, transforms, task_rx);
        let mut queue = self.queue(&spec, tx, old.queue.stats, wants_event);
        queue.name = old.queue.name;
        Running {
            queue,
            spec,
            digests,
            tokens: built.tokens,
            plugins,
            handle: old.handle,
            disk: old.disk,
        }
    }

    /// The running receivers, for metrics.
    pub fn views(&self) -> Vec<ReceiverView> {
        let mut views: Vec<_> = self
            .running
            .values()
            .map(|r| ReceiverView {
                name: r.queue.name.clone(),
                disk_buffer: r.disk.is_some(),
                stats: r.queue.stats.clone(),
                tokens: r.tokens.clone(),
                plugins: r.plugins.clone(),
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// Lets go of every queue; returns the tasks to wait for (they finish
    /// once the router's routing is dropped too and the queues drain).
    pub fn close(self) -> TaskTracker {
        self.tasks.close();
        self.tasks
    }
}

/// Whether a receiver's queue should carry events, not only their JSON:
/// its sink reads them, or its transforms do. A disk buffer holds the JSON
/// alone, and its reader gives the receiver the event it reads back.
fn wants_event(spec: &ReceiverSpec, built: &Built, transforms: &Chain) -> bool {
    spec.buffer.disk.is_none() && (built.sink.wants_event() || !transforms.is_empty())
}

/// The plugins a receiver uses (for metrics).
fn plugins_of(built: &Built, transforms: &Chain) -> Vec<Arc<Plugin>> {
    let mut plugins: Vec<_> = built.plugin.iter().cloned().collect();
    plugins.extend(transforms.plugins().cloned());
    plugins
}

/// The digests of the plugin files a receiver uses.
fn digests(spec: &ReceiverSpec, plugins: &Plugins) -> Vec<[u8; 32]> {
    let sink = match &spec.kind {
        crate::sink::ReceiverKind::Wasm(p) => Some(&p.place),
        _ => None,
    };
    sink.into_iter()
        .chain(spec.transforms.iter().map(|t| &t.plugin.place))
        .filter_map(|place| plugins.get(place))
        .map(|p| p.digest())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloudevents::{EventBuilder, EventBuilderV10};

    use super::*;

    fn queued(seq: u64) -> Queued {
        let event = EventBuilderV10::new()
            .id(seq.to_string())
            .ty("t")
            .source("s://x")
            .build()
            .unwrap();
        Queued {
            event: Arc::new(crate::event::Encoded::new(event, false)),
            seq,
            span: None,
            room: None,
        }
    }

    #[tokio::test]
    async fn the_queue_gauge_never_reads_more_than_the_queue_holds() {
        let (tx, mut rx) = mpsc::channel(3);
        let stats = Arc::new(ReceiverStats::default());
        let queue = Queue {
            name: "out".into(),
            tx,
            stats: stats.clone(),
            when_full: WhenFull::Block,
            tracker: Arc::new(Tracker::default()),
            bytes: None,
            wants_event: false,
        };
        for seq in 0..3 {
            assert!(queue.send(queued(seq)).await);
        }
        let gauge = || stats.queued.load(Ordering::Relaxed);
        assert_eq!(gauge(), 3, "a full queue");
        // The router waits to queue a fourth: it is not in the queue.
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.send(queued(3)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "waits while the queue is full");
        assert_eq!(gauge(), 3, "the waiting event is not counted");
        // The receiver takes one (and counts it out): the fourth gets in.
        rx.recv().await.unwrap();
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        assert!(waiting.await.unwrap());
        assert_eq!(gauge(), 3);
        drop(rx);
        assert!(!queue.send(queued(4)).await, "the receiver is gone");
        assert_eq!(gauge(), 3, "an event not queued is not counted");
    }

    /// A memory buffer's `maxSize` bounds the bytes queued whatever the
    /// number of events: a sender waits (or, with `dropNewest`, drops) until
    /// the receiver takes enough out; an event larger than the whole buffer
    /// goes alone once it is empty.
    #[tokio::test]
    async fn a_memory_buffer_holds_at_most_max_size_bytes() {
        let one = queued(0).event.json().len() as u32;
        let (tx, mut rx) = mpsc::channel(100);
        let stats = Arc::new(ReceiverStats::default());
        let tracker = Arc::new(Tracker::default());
        let mut queue = Queue {
            name: "out".into(),
            tx,
            stats: stats.clone(),
            when_full: WhenFull::Block,
            tracker: tracker.clone(),
            bytes: Some((Arc::new(Semaphore::new(2 * one as usize)), 2 * one)),
            wants_event: false,
        };
        let bytes = || stats.queued_bytes.load(Ordering::Relaxed);
        assert!(queue.send(queued(0)).await);
        assert!(queue.send(queued(1)).await);
        assert_eq!(bytes(), 2 * u64::from(one));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.send(queued(2)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "waits while the bytes are taken");
        // Taken out (and dropped, as the receiver task does): room again.
        drop(rx.recv().await.unwrap());
        assert!(waiting.await.unwrap());
        assert_eq!(bytes(), 2 * u64::from(one));

        queue.when_full = WhenFull::DropNewest;
        let seq = tracker.begin(1, None, None);
        assert!(queue.send(queued(seq)).await, "never waits");
        assert_eq!(stats.buffer_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(bytes(), 2 * u64::from(one), "the dropped one holds nothing");

        // An event larger than the buffer: when it is empty, alone.
        drop(rx.recv().await.unwrap());
        drop(rx.recv().await.unwrap());
        assert_eq!(bytes(), 0);
        let big = EventBuilderV10::new()
            .id("big")
            .ty("t")
            .source("s://x")
            .data("text/plain", "x".repeat(10 * one as usize))
            .build()
            .unwrap();
        let mut q = queued(9);
        q.event = Arc::new(crate::event::Encoded::new(big, false));
        assert!(queue.send(q).await);
        assert_eq!(bytes(), 2 * u64::from(one), "counted as the whole buffer");
    }

    /// `whenFull: dropNewest`: a full queue drops the new event, counts it,
    /// and finishes it for the position (it is not lost silently, and does
    /// not hold the position back).
    #[tokio::test]
    async fn drop_newest_drops_counts_and_finishes() {
        let (tx, mut rx) = mpsc::channel(2);
        let stats = Arc::new(ReceiverStats::default());
        let tracker = Arc::new(Tracker::default());
        let queue = Queue {
            name: "out".into(),
            tx,
            stats: stats.clone(),
            when_full: WhenFull::DropNewest,
            tracker: tracker.clone(),
            bytes: None,
            wants_event: false,
        };
        let seqs: Vec<u64> = (0..3).map(|_| tracker.begin(1, None, None)).collect();
        for &seq in &seqs {
            assert!(queue.send(queued(seq)).await, "never waits");
        }
        assert_eq!(stats.queued.load(Ordering::Relaxed), 2);
        assert_eq!(stats.buffer_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(tracker.in_flight(), 3, "the first two are queued");
        tracker.finish(&[rx.recv().await.unwrap().seq, rx.recv().await.unwrap().seq]);
        assert_eq!(tracker.in_flight(), 0, "the dropped one was finished");
    }
}
