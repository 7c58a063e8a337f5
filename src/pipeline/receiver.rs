//! One task per receiver: takes batches from its bounded queue, delivers
//! them, retries transient failures with backoff, and finishes the records.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::{Queued, Stats, ack::Tracker};
use crate::config::{ReceiverSpec, RetryConfig};
use crate::event::{AttributesReader, Event};
use crate::sink::{Delivery, Sink};

pub struct ReceiverTask {
    pub name: String,
    pub sink: Box<dyn Sink>,
    pub queue: mpsc::Receiver<Queued>,
    pub max_batch: usize,
    pub retry: RetryConfig,
    pub tracker: Arc<Tracker>,
    pub stats: Arc<Stats>,
}

impl ReceiverTask {
    pub fn new(
        spec: &ReceiverSpec,
        sink: Box<dyn Sink>,
        queue: mpsc::Receiver<Queued>,
        tracker: Arc<Tracker>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            name: spec.name.clone(),
            sink,
            queue,
            max_batch: spec.queue.max_batch,
            retry: spec.retry.clone(),
            tracker,
            stats,
        }
    }

    /// Runs until the queue is closed and empty.
    pub async fn run(mut self) {
        let mut events: Vec<Arc<Event>> = Vec::with_capacity(self.max_batch);
        let mut seqs: Vec<u64> = Vec::with_capacity(self.max_batch);
        let mut incoming = Vec::with_capacity(self.max_batch);
        loop {
            incoming.clear();
            if self.queue.recv_many(&mut incoming, self.max_batch).await == 0 {
                return;
            }
            events.clear();
            seqs.clear();
            for q in incoming.drain(..) {
                events.push(q.event);
                seqs.push(q.seq);
            }
            self.deliver(&events).await;
            self.tracker.finish(&seqs);
        }
    }

    /// Delivers one batch until it is delivered or rejected.
    async fn deliver(&mut self, events: &[Arc<Event>]) {
        let mut backoff = self.retry.initial_backoff.0;
        let mut attempt = 1u32;
        loop {
            match self.sink.deliver(events).await {
                Delivery::Delivered => {
                    self.stats
                        .delivered
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    return;
                }
                Delivery::Reject(reason) => {
                    self.stats
                        .rejected
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    for e in events {
                        error!(receiver = %self.name, event_id = %e.id(), %reason, "receiver rejected event; it is lost");
                    }
                    return;
                }
                Delivery::Retry(reason) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(receiver = %self.name, events = events.len(), attempt, %reason, retry_in = ?backoff, "delivery failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff, &self.retry);
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

fn next_backoff(current: Duration, retry: &RetryConfig) -> Duration {
    current.mul_f64(retry.multiplier).min(retry.max_backoff.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration as CfgDuration;

    #[test]
    fn backoff_grows_to_the_cap() {
        let retry = RetryConfig {
            initial_backoff: CfgDuration::from_secs(1),
            max_backoff: CfgDuration::from_secs(5),
            multiplier: 2.0,
        };
        let mut d = retry.initial_backoff.0;
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(d.as_secs());
            d = next_backoff(d, &retry);
        }
        assert_eq!(seen, [1, 2, 4, 5, 5]);
    }
}
