//! Counters of a run: [`Stats`] for the whole pipeline, [`SourceStats`]
//! for the source, [`ReceiverStats`] per receiver. Plain atomics on the hot
//! path, incremented by every stage; `telemetry` reads them when Prometheus
//! scrapes. A leaf: it imports no other module of the crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Counters of a run.
#[derive(Debug)]
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
    /// Event deliveries (one per receiver) given up after `retry.maxRetries`
    /// failed attempts, then dead-lettered (rejections are not counted here).
    pub exhausted: AtomicU64,
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
    /// When a source position was last persisted: Unix time in
    /// milliseconds (0: never).
    pub position_saved_at: AtomicU64,
    /// Route rule expressions (`expr:`) whose evaluation failed (it fails
    /// open: the event is exported rather than lost). The route tree counts
    /// per rule; a scrape raises this to the tree's sum (never lowers it).
    pub expr_errors: AtomicU64,
    /// Per event and receiver: the time from the first delivery attempt
    /// until the event was delivered, retries included.
    pub publish_duration: Buckets,
    /// The source's own counters.
    pub source: Arc<SourceStats>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            read: AtomicU64::new(0),
            mapped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            unrouted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            transform_failures: AtomicU64::new(0),
            transform_dropped: AtomicU64::new(0),
            positions_saved: AtomicU64::new(0),
            position_saved_at: AtomicU64::new(0),
            expr_errors: AtomicU64::new(0),
            publish_duration: Buckets::new(PUBLISH_BUCKETS),
            source: Arc::default(),
        }
    }
}

/// Upper bounds (seconds) of [`Stats::publish_duration`]: NVSentinel's
/// `health_events_exporter_publish_duration_seconds` buckets, so its
/// dashboards' quantiles mean the same.
pub const PUBLISH_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A histogram of durations made of atomics only: observing takes no lock,
/// and one call counts several events (a delivered batch).
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [f64],
    /// One count per bound, then the overflow (+Inf) bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Buckets {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts `n` observations of `d`.
    pub fn observe(&self, d: Duration, n: u64) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }

    /// Sum (seconds), count and per-bucket counts (upper bound, count; the
    /// last bound is infinite), as the Prometheus encoder takes them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, self.count.load(Ordering::Relaxed), buckets)
    }
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
    /// Bytes of event JSON in its memory buffer now.
    pub queued_bytes: AtomicU64,
    /// Disk buffer: events on disk the receiver has not finished.
    pub buffer_events: AtomicU64,
    /// Disk buffer: bytes of its journal on disk.
    pub buffer_bytes: AtomicU64,
    /// Disk buffer: how long its oldest unfinished event has waited (ms).
    pub buffer_oldest_ms: AtomicU64,
    /// Events dropped for this receiver by `buffer.whenFull: dropNewest`.
    pub buffer_dropped: AtomicU64,
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
            queued_bytes: AtomicU64::new(0),
            buffer_events: AtomicU64::new(0),
            buffer_bytes: AtomicU64::new(0),
            buffer_oldest_ms: AtomicU64::new(0),
            buffer_dropped: AtomicU64::new(0),
            // 1 ms … 65 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            // 1 … 4096 events.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// Counters a source keeps (read by `telemetry` at scrape time).
#[derive(Debug)]
pub struct SourceStats {
    /// Documents read by a backfill.
    pub backfilled: AtomicU64,
    /// Positions found lost: resume tokens gone from the oplog (each one
    /// recovered by backfill), resourceVersions answered 410 Gone (each
    /// recovered by a relist).
    pub tokens_lost: AtomicU64,
    /// Reconnects after transient errors.
    pub reconnects: AtomicU64,
    /// Times the source resumed past events it could no longer read (a
    /// Nomad index fallen out of the broker's buffer): events may be lost.
    pub gaps: AtomicU64,
    /// Whether the source is reading now (file open, change stream open).
    pub connected: std::sync::atomic::AtomicBool,
    /// Whether a backfill is running now.
    pub backfilling: std::sync::atomic::AtomicBool,
    /// Seconds each backfill that ran to its end took (one observation per
    /// backfill; NVSentinel's buckets, 1s … 1h).
    pub backfill_duration: Histogram,
}

/// Upper bounds (seconds) of [`SourceStats::backfill_duration`].
pub const BACKFILL_BUCKETS: [f64; 9] = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];

impl Default for SourceStats {
    fn default() -> Self {
        Self {
            backfilled: AtomicU64::new(0),
            tokens_lost: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            connected: Default::default(),
            backfilling: Default::default(),
            backfill_duration: Histogram::new(BACKFILL_BUCKETS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_observation_in_its_bucket() {
        let b = Buckets::new(PUBLISH_BUCKETS);
        b.observe(Duration::from_micros(500), 3);
        b.observe(Duration::from_millis(30), 1);
        b.observe(Duration::from_secs(9), 1);
        let (sum, count, buckets) = b.snapshot();
        assert_eq!(count, 5);
        assert!((sum - (0.0015 + 0.03 + 9.0)).abs() < 1e-9, "{sum}");
        assert_eq!(buckets.len(), PUBLISH_BUCKETS.len() + 1);
        assert_eq!(buckets[0], (0.001, 3));
        assert_eq!(buckets[4], (0.05, 1), "30ms is in the 50ms bucket");
        assert_eq!(buckets[PUBLISH_BUCKETS.len()], (f64::INFINITY, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 5);
    }
}
