//! Counters of a run: [`Stats`] for the whole pipeline, [`ReceiverStats`]
//! per receiver. Plain atomics on the hot path; `telemetry` reads them when
//! Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::source::SourceStats;

/// Counters of a run.
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
    /// Source positions persisted (resume tokens written).
    pub positions_saved: AtomicU64,
    /// The source's own counters.
    pub source: Arc<SourceStats>,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One receiver's counters. A reload that keeps or changes a receiver keeps
/// its counters (they belong to the name).
#[derive(Debug)]
pub struct ReceiverStats {
    /// Events delivered.
    pub delivered: AtomicU64,
    /// Failed delivery attempts that were retried (one per batch attempt).
    pub retried: AtomicU64,
    /// Events rejected for good by the receiver.
    pub rejected: AtomicU64,
    /// Events written to the dead letter file.
    pub dead_lettered: AtomicU64,
    /// Events in the receiver's queue now.
    pub queued: AtomicU64,
    /// Seconds per delivery attempt.
    pub latency: Histogram,
    /// Events per delivery.
    pub batch_size: Histogram,
}

impl Default for ReceiverStats {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            // 1 ms … 65 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            // 1 … 4096 events.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}
