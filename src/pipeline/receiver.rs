//! One task per receiver: takes batches from its bounded queue (by count,
//! bytes and wait), runs up to `concurrency` deliveries at once, retries
//! transient failures with backoff, dead-letters what cannot be delivered,
//! and finishes the records in the tracker — in any order; the tracker keeps
//! the source position ordered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use super::deadletter::DeadLetters;
use super::retry::Backoff;
use super::{Queued, ReceiverStats, Stats, ack::Tracker};
use crate::config::{BatchSpec, ReceiverSpec, RetryConfig};
use crate::event::{AttributesReader, Event};
use crate::sink::{Delivery, Item, Sink};
use crate::transform::Chain;

/// What every delivery of one receiver shares.
struct Shared {
    name: String,
    sink: Arc<dyn Sink>,
    retry: RetryConfig,
    dead_letters: Option<DeadLetters>,
    tracker: Arc<Tracker>,
    stats: Arc<Stats>,
    /// This receiver's own counters.
    counters: Arc<ReceiverStats>,
}

pub struct ReceiverTask {
    shared: Arc<Shared>,
    queue: mpsc::Receiver<Queued>,
    batch: BatchSpec,
    concurrency: usize,
    /// This receiver's transforms (run as events leave the queue).
    transforms: Chain,
    /// Items taken from the queue but not yet batched: one that did not fit
    /// the last batch, or the rest of a split.
    ready: VecDeque<(Item, u64)>,
}

/// A batch on its way to the sink.
struct Batch {
    items: Vec<Item>,
    seqs: Vec<u64>,
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
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: spec.name.clone(),
                sink,
                retry: spec.retry.clone(),
                dead_letters: spec.dead_letter.clone().map(DeadLetters::new),
                tracker,
                stats,
                counters,
            }),
            queue,
            batch: spec.batch,
            concurrency: spec.concurrency.max(1),
            transforms,
            ready: VecDeque::new(),
        }
    }

    /// Runs until the queue is closed and every delivery has finished.
    pub async fn run(mut self) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let deliveries = TaskTracker::new();
        loop {
            // A free slot first: events wait in the bounded queue, not here.
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let Some(batch) = self.next_batch().await else {
                break;
            };
            let shared = self.shared.clone();
            deliveries.spawn(async move {
                shared.deliver(&batch.items).await;
                shared.tracker.finish(&batch.seqs);
                drop(slot);
            });
        }
        deliveries.close();
        deliveries.wait().await;
    }

    fn item(&self, event: Arc<Event>, seq: u64) -> (Item, u64) {
        let json = self.shared.sink.wants_json().then(|| {
            let mut buf = Vec::with_capacity(1024);
            crate::event::write_json(&event, &mut buf);
            buf
        });
        (Item { event, json }, seq)
    }

    /// Turns a queued event into ready items: itself, or what this
    /// receiver's transforms make of it (none: finished at once; several:
    /// the record waits for each).
    async fn take(&mut self, queued: Queued) {
        if self.transforms.is_empty() {
            let item = self.item(queued.event, queued.seq);
            self.ready.push_back(item);
            return;
        }
        let event = Arc::unwrap_or_clone(queued.event);
        let events = self.transforms.apply(event, &self.shared.stats).await;
        match events.len() {
            0 => self.shared.tracker.finish(&[queued.seq]),
            n => {
                if n > 1 {
                    self.shared.tracker.extend(queued.seq, n as u32 - 1);
                }
                for event in events {
                    let item = self.item(Arc::new(event), queued.seq);
                    self.ready.push_back(item);
                }
            }
        }
    }

    /// The next item: a ready one, or one from the queue — waiting for it
    /// until `deadline` (`None`: as long as it takes; now: only what is
    /// there). `None` when there is none by then or the queue is closed.
    async fn next_item(&mut self, deadline: Option<tokio::time::Instant>) -> Option<(Item, u64)> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let queued = match deadline {
                None => self.queue.recv().await?,
                Some(deadline) => match self.queue.try_recv() {
                    Ok(q) => q,
                    Err(mpsc::error::TryRecvError::Disconnected) => return None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if tokio::time::Instant::now() >= deadline {
                            return None;
                        }
                        tokio::time::timeout_at(deadline, self.queue.recv())
                            .await
                            .ok()??
                    }
                },
            };
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
        let encoded = |item: &Item| item.json.as_ref().map_or(0, Vec::len) as u64 + 1;
        let mut bytes = 1 + encoded(&first.0);
        let mut batch = Batch {
            items: vec![first.0],
            seqs: vec![first.1],
        };
        while batch.items.len() < self.batch.max_events {
            let Some((item, seq)) = self.next_item(Some(deadline)).await else {
                break;
            };
            let size = encoded(&item);
            if self.batch.max_bytes.is_some_and(|max| bytes + size > max) {
                self.ready.push_front((item, seq));
                break;
            }
            bytes += size;
            batch.items.push(item);
            batch.seqs.push(seq);
        }
        Some(batch)
    }
}

impl Shared {
    /// Delivers one batch until it is delivered, dead-lettered or rejected.
    async fn deliver(&self, items: &[Item]) {
        let first = Utc::now();
        let mut backoff = Backoff::new(&self.retry);
        let mut attempts = 0u32;
        let n = items.len() as u64;
        self.counters.batch_size.observe(n as f64);
        loop {
            attempts = attempts.saturating_add(1);
            let started = std::time::Instant::now();
            let delivery = self.sink.deliver(items).await;
            self.counters
                .latency
                .observe(started.elapsed().as_secs_f64());
            let (reason, after) = match delivery {
                Delivery::Delivered => {
                    self.stats.delivered.fetch_add(n, Ordering::Relaxed);
                    self.counters.delivered.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Delivery::Reject(reason) => {
                    self.stats.rejected.fetch_add(n, Ordering::Relaxed);
                    self.counters.rejected.fetch_add(n, Ordering::Relaxed);
                    self.give_up(items, &format!("rejected: {reason}"), attempts, first)
                        .await;
                    return;
                }
                Delivery::Retry { reason, after } => (reason, after),
            };
            let retries_spent = attempts > self.retry.max_retries;
            if retries_spent && self.dead_letters.is_some() {
                self.give_up(items, &reason, attempts, first).await;
                return;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            let wait = backoff.next(after);
            warn!(receiver = %self.name, events = n, attempt = attempts, %reason, retry_in = ?wait, "delivery failed; will retry");
            tokio::time::sleep(wait).await;
        }
    }

    /// Dead-letters the batch, or, without a dead letter file, logs every
    /// event as lost.
    async fn give_up(
        &self,
        items: &[Item],
        reason: &str,
        attempts: u32,
        first: chrono::DateTime<Utc>,
    ) {
        let Some(dead_letters) = &self.dead_letters else {
            for item in items {
                error!(receiver = %self.name, event_id = %item.event.id(), %reason, "event not delivered and no deadLetter configured; it is lost");
            }
            return;
        };
        let events: Vec<&Event> = items.iter().map(|i| &*i.event).collect();
        let mut backoff = Backoff::new(&self.retry);
        // The events stay unfinished until they are safely in the file.
        while let Err(e) = dead_letters
            .write(&self.name, &events, reason, attempts, first, Utc::now())
            .await
        {
            let wait = backoff.next(None);
            error!(receiver = %self.name, file = %dead_letters.path().display(), error = %e, retry_in = ?wait, "cannot write dead letters; will retry");
            tokio::time::sleep(wait).await;
        }
        self.stats
            .dead_lettered
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        self.counters
            .dead_lettered
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        warn!(receiver = %self.name, events = items.len(), %reason, attempts, file = %dead_letters.path().display(), "events dead-lettered");
    }
}
