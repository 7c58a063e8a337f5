//! One task per receiver: takes batches from its bounded queue (by count,
//! bytes and wait), runs up to `concurrency` deliveries at once, retries
//! transient failures with backoff, dead-letters what cannot be delivered,
//! and finishes the records in the tracker — in any order; the tracker keeps
//! the source position ordered.
//!
//! A reload that changes the receiver updates the running task
//! ([`ReceiverHandle::update`]): the new sink, retry policy and dead letter
//! file take effect at once — also for deliveries being retried, at their
//! next attempt, so fixing a broken endpoint unblocks them — and the task
//! moves to the new queue once the old one is drained, keeping the order.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use super::retry::Backoff;
use super::{Queued, ack::Tracker};
use crate::deadletter::DeadLetters;
use crate::event::{AttributesReader, Encoded, Event};
use crate::sink::{BatchSpec, ReceiverSpec, RetryConfig};
use crate::sink::{Delivery, Item, Sink};
use crate::stats::{ReceiverStats, Stats};
use crate::telemetry::traces::{BatchTrace, EventSpan, Outcome};
use crate::transform::Chain;

/// The settings a reload may replace while deliveries run.
struct Settings {
    name: String,
    sink: Arc<dyn Sink>,
    retry: RetryConfig,
    dead_letters: Option<DeadLetters>,
}

impl Settings {
    fn new(spec: &ReceiverSpec, sink: Arc<dyn Sink>) -> Arc<Self> {
        Arc::new(Self {
            name: spec.name.clone(),
            sink,
            retry: spec.retry.clone(),
            dead_letters: spec.dead_letter.clone().map(DeadLetters::new),
        })
    }

    /// What becomes of events given up on: dead-lettered, or lost.
    fn given_up(&self) -> Outcome {
        match self.dead_letters {
            Some(_) => Outcome::DeadLettered,
            None => Outcome::Lost,
        }
    }
}

/// What every delivery of one receiver shares.
struct Shared {
    settings: RwLock<Arc<Settings>>,
    /// Wakes deliveries waiting to retry when the settings change.
    reloaded: Notify,
    tracker: Arc<Tracker>,
    stats: Arc<Stats>,
    /// This receiver's own counters.
    counters: Arc<ReceiverStats>,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.read().expect("settings lock").clone()
    }
}

/// New settings for a running receiver, and the queue it reads next.
struct Update {
    batch: BatchSpec,
    concurrency: usize,
    transforms: Chain,
    queue: mpsc::Receiver<Queued>,
}

/// How the topology reaches a running receiver task.
pub struct ReceiverHandle {
    shared: Arc<Shared>,
    updates: mpsc::UnboundedSender<Update>,
}

impl ReceiverHandle {
    /// Switches the receiver to `spec`: the sink, retries and dead letters
    /// at once; batching, concurrency and transforms for what the task takes
    /// from `queue`, which it reads once the current queue is drained.
    pub fn update(
        &self,
        spec: &ReceiverSpec,
        sink: Arc<dyn Sink>,
        transforms: Chain,
        queue: mpsc::Receiver<Queued>,
    ) {
        *self.shared.settings.write().expect("settings lock") = Settings::new(spec, sink);
        self.shared.reloaded.notify_waiters();
        // The task is gone only when its queues are: nothing to update then.
        let _ = self.updates.send(Update {
            batch: spec.batch,
            concurrency: spec.concurrency.max(1),
            transforms,
            queue,
        });
    }
}

pub struct ReceiverTask {
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Queued>,
    updates: mpsc::UnboundedReceiver<Update>,
    batch: BatchSpec,
    concurrency: usize,
    slots: Arc<Semaphore>,
    /// This receiver's transforms (run as events leave the queue).
    transforms: Chain,
    /// Items taken from the queue but not yet batched: one that did not fit
    /// the last batch, or the rest of a split.
    ready: VecDeque<Ready>,
}

/// An item with its record's sequence number and, when tracing, its span.
type Ready = (Item, u64, Option<Arc<EventSpan>>);

/// A batch on its way to the sink.
struct Batch {
    items: Vec<Item>,
    seqs: Vec<u64>,
    /// The items' spans, in order; empty when tracing is off.
    spans: Vec<Arc<EventSpan>>,
}

impl ReceiverTask {
    pub fn new(
        spec: &ReceiverSpec,
        sink: Arc<dyn Sink>,
        transforms: Chain,
        queue: mpsc::Receiver<Queued>,
        tracker: Arc<Tracker>,
        stats: Arc<Stats>,
        counters: Arc<ReceiverStats>,
    ) -> (Self, ReceiverHandle) {
        let shared = Arc::new(Shared {
            settings: RwLock::new(Settings::new(spec, sink)),
            reloaded: Notify::new(),
            tracker,
            stats,
            counters,
        });
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let concurrency = spec.concurrency.max(1);
        let task = Self {
            shared: shared.clone(),
            queue,
            updates,
            batch: spec.batch,
            concurrency,
            slots: Arc::new(Semaphore::new(concurrency)),
            transforms,
            ready: VecDeque::new(),
        };
        let handle = ReceiverHandle {
            shared,
            updates: updates_tx,
        };
        (task, handle)
    }

    /// Runs until the queue is closed (and no newer one is waiting) and
    /// every delivery has finished.
    pub async fn run(mut self) {
        let deliveries = TaskTracker::new();
        loop {
            // A free slot first: events wait in the bounded queue, not here.
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let Some(mut batch) = self.next_batch().await else {
                break;
            };
            let shared = self.shared.clone();
            deliveries.spawn(async move {
                let spans = std::mem::take(&mut batch.spans);
                shared
                    .deliver(std::mem::take(&mut batch.items), spans)
                    .await;
                shared.tracker.finish(&batch.seqs);
                drop(slot);
            });
        }
        deliveries.close();
        deliveries.wait().await;
    }

    /// Takes an update's settings and moves to its queue (the current one
    /// is closed and drained).
    fn apply(&mut self, update: Update) {
        self.batch = update.batch;
        self.transforms = update.transforms;
        self.queue = update.queue;
        let (old, new) = (self.concurrency, update.concurrency);
        self.concurrency = new;
        if new > old {
            self.slots.add_permits(new - old);
        } else if new < old {
            // Fewer slots: take the surplus as deliveries finish.
            let slots = self.slots.clone();
            tokio::spawn(async move {
                if let Ok(permits) = slots.acquire_many_owned((old - new) as u32).await {
                    permits.forget();
                }
            });
        }
    }

    /// The next event from the queue, moving on to a newer queue when this
    /// one is closed and empty. `None`: no more events (or none by
    /// `deadline`, if given).
    async fn recv(&mut self, deadline: Option<tokio::time::Instant>) -> Option<Queued> {
        loop {
            let queued = match deadline {
                None => self.queue.recv().await,
                Some(deadline) => match self.queue.try_recv() {
                    Ok(q) => Some(q),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if tokio::time::Instant::now() >= deadline {
                            return None;
                        }
                        match tokio::time::timeout_at(deadline, self.queue.recv()).await {
                            Ok(q) => q,
                            Err(_) => return None,
                        }
                    }
                },
            };
            if queued.is_some() {
                return queued;
            }
            // The update is sent before the old queue can close.
            match self.updates.try_recv() {
                Ok(update) => self.apply(update),
                Err(_) => return None,
            }
        }
    }

    /// Turns a queued event into ready items: itself, or what this
    /// receiver's transforms make of it (none: finished at once; several:
    /// the record waits for each).
    async fn take(&mut self, queued: Queued) {
        if self.transforms.is_empty() {
            let item = Item::new(queued.event);
            self.ready.push_back((item, queued.seq, queued.span));
            return;
        }
        let event = queued.event.into_event();
        let events = self.transforms.apply(event, &self.shared.stats).await;
        match events.len() {
            0 => self.shared.tracker.finish(&[queued.seq]),
            n => {
                if n > 1 {
                    self.shared.tracker.extend(queued.seq, n as u32 - 1);
                }
                let keep = self.shared.settings().sink.wants_event();
                for event in events {
                    let item = Item::new(Arc::new(Encoded::new(event, keep)));
                    self.ready
                        .push_back((item, queued.seq, queued.span.clone()));
                }
            }
        }
    }

    /// The next item: a ready one, or one from the queue — waiting for it
    /// until `deadline` (`None`: as long as it takes; now: only what is
    /// there). `None` when there is none by then or the queue is closed.
    async fn next_item(&mut self, deadline: Option<tokio::time::Instant>) -> Option<Ready> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let queued = self.recv(deadline).await?;
            self.shared.counters.queued.fetch_sub(1, Ordering::Relaxed);
            self.take(queued).await;
        }
    }

    /// The next batch: waits for one event, then takes more until the batch
    /// is full (count or bytes), the queue is empty (`max_wait` zero) or
    /// `max_wait` has passed. `None` when the queue is closed and empty.
    async fn next_batch(&mut self) -> Option<Batch> {
        let first = self.next_item(None).await?;
        let deadline = tokio::time::Instant::now() + self.batch.max_wait;
        // Bytes as a batch body counts them: `[`, then each event and its
        // `,` or closing `]`.
        let encoded = |item: &Item| item.json().len() as u64 + 1;
        let mut bytes = 1 + encoded(&first.0);
        let mut batch = Batch {
            items: vec![first.0],
            seqs: vec![first.1],
            spans: first.2.into_iter().collect(),
        };
        while batch.items.len() < self.batch.max_events {
            let Some((item, seq, span)) = self.next_item(Some(deadline)).await else {
                break;
            };
            let size = encoded(&item);
            if self.batch.max_bytes.is_some_and(|max| bytes + size > max) {
                self.ready.push_front((item, seq, span));
                break;
            }
            bytes += size;
            batch.items.push(item);
            batch.seqs.push(seq);
            // Tracing is on for every event or for none.
            batch.spans.extend(span);
        }
        Some(batch)
    }
}

impl Shared {
    /// Delivers one batch until it is delivered, dead-lettered or rejected.
    /// Each attempt uses the settings in force when it starts.
    async fn deliver(&self, mut items: Vec<Item>, spans: Vec<Arc<EventSpan>>) {
        let first = Utc::now();
        let began = std::time::Instant::now();
        let mut settings = self.settings();
        let mut backoff = Backoff::new(&settings.retry);
        let mut attempts = 0u32;
        self.counters.batch_size.observe(items.len() as f64);
        let mut trace = BatchTrace::new(&settings.name, spans);
        loop {
            let n = items.len() as u64;
            attempts = attempts.saturating_add(1);
            // Registered before the settings are read: a reload from here on
            // wakes the wait below.
            let reloaded = self.reloaded.notified();
            tokio::pin!(reloaded);
            reloaded.as_mut().enable();
            let current = self.settings();
            if !Arc::ptr_eq(&current, &settings) {
                // Reloaded: the new retry policy starts from its beginning.
                backoff = Backoff::new(&current.retry);
                settings = current;
            }
            if let Some(t) = &mut trace {
                t.attempt(attempts, &mut items);
            }
            let started = std::time::Instant::now();
            let delivery = settings.sink.deliver(&items).await;
            self.counters
                .latency
                .observe(started.elapsed().as_secs_f64());
            if let Some(t) = &mut trace {
                t.attempted(&delivery);
            }
            let (reason, after) = match delivery {
                Delivery::Delivered => {
                    self.delivered(n, began);
                    if let Some(t) = &mut trace {
                        t.finish_all(Outcome::Delivered, attempts, None);
                    }
                    return;
                }
                Delivery::Reject(reason) => {
                    self.reject(&settings, &items, &reason, attempts, first)
                        .await;
                    if let Some(t) = &mut trace {
                        t.finish_all(settings.given_up(), attempts, Some(&reason));
                    }
                    return;
                }
                Delivery::Retry { reason, after } => (reason, after),
                Delivery::Each(each) => {
                    // Done with the delivered and rejected ones; the rest
                    // are retried as a smaller batch.
                    let mut retry = None;
                    let mut again = Vec::new();
                    let mut keep = Vec::with_capacity(items.len());
                    for (i, (item, outcome)) in items
                        .into_iter()
                        .zip(each.into_iter().map(Delivery::overall))
                        .enumerate()
                    {
                        keep.push(matches!(outcome, Delivery::Retry { .. }));
                        match outcome {
                            Delivery::Delivered => {
                                self.delivered(1, began);
                                if let Some(t) = &mut trace {
                                    t.finish(i, Outcome::Delivered, attempts, None);
                                }
                            }
                            Delivery::Reject(reason) => {
                                self.reject(
                                    &settings,
                                    std::slice::from_ref(&item),
                                    &reason,
                                    attempts,
                                    first,
                                )
                                .await;
                                if let Some(t) = &mut trace {
                                    t.finish(i, settings.given_up(), attempts, Some(&reason));
                                }
                            }
                            Delivery::Retry { reason, after } => {
                                retry.get_or_insert((reason, after));
                                again.push(item);
                            }
                            Delivery::Each(_) => unreachable!("overall() folds"),
                        }
                    }
                    if let Some(t) = &mut trace {
                        t.retain(&keep);
                    }
                    items = again;
                    match retry {
                        Some(r) => r,
                        None => return,
                    }
                }
            };
            let n = items.len() as u64;
            let retries_spent = attempts > settings.retry.max_retries;
            if retries_spent && settings.dead_letters.is_some() {
                self.stats.exhausted.fetch_add(n, Ordering::Relaxed);
                self.give_up(&settings, &items, &reason, attempts, first)
                    .await;
                if let Some(t) = &mut trace {
                    t.finish_all(Outcome::DeadLettered, attempts, Some(&reason));
                }
                return;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            let wait = backoff.next(after);
            warn!(receiver = %settings.name, events = n, attempt = attempts, %reason, retry_in = ?wait, "delivery failed; will retry");
            // New settings (a fixed endpoint) are tried at once.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = reloaded => {}
            }
        }
    }

    /// `n` events delivered, the first attempt made at `began`.
    fn delivered(&self, n: u64, began: std::time::Instant) {
        self.stats.publish_duration.observe(began.elapsed(), n);
        self.stats.delivered.fetch_add(n, Ordering::Relaxed);
        self.counters.delivered.fetch_add(n, Ordering::Relaxed);
    }

    async fn reject(
        &self,
        settings: &Settings,
        items: &[Item],
        reason: &str,
        attempts: u32,
        first: chrono::DateTime<Utc>,
    ) {
        let n = items.len() as u64;
        self.stats.rejected.fetch_add(n, Ordering::Relaxed);
        self.counters.rejected.fetch_add(n, Ordering::Relaxed);
        let reason = format!("rejected: {reason}");
        self.give_up(settings, items, &reason, attempts, first)
            .await;
    }

    /// Dead-letters the batch, or, without a dead letter file, logs every
    /// event as lost.
    async fn give_up(
        &self,
        settings: &Settings,
        items: &[Item],
        reason: &str,
        attempts: u32,
        first: chrono::DateTime<Utc>,
    ) {
        let name = &settings.name;
        let Some(dead_letters) = &settings.dead_letters else {
            for item in items {
                error!(receiver = %name, event_id = %item.event().id(), %reason, "event not delivered and no deadLetter configured; it is lost");
            }
            return;
        };
        let events: Vec<&Event> = items.iter().map(Item::event).collect();
        let mut backoff = Backoff::new(&settings.retry);
        // The events stay unfinished until they are safely in the file.
        while let Err(e) = dead_letters
            .write(name, &events, reason, attempts, first, Utc::now())
            .await
        {
            let wait = backoff.next(None);
            error!(receiver = %name, file = %dead_letters.path().display(), error = %e, retry_in = ?wait, "cannot write dead letters; will retry");
            tokio::time::sleep(wait).await;
        }
        self.stats
            .dead_lettered
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.counters
            .dead_lettered
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        warn!(receiver = %name, events = items.len(), %reason, attempts, file = %dead_letters.path().display(), "events dead-lettered");
    }
}
