//! `telemetry.compat: nvsentinel`: NVSentinel's event-exporter metric
//! families under their exact names, read from the same counters as
//! Switchyard's own, so its dashboards and alerts keep working.
//!
//! NVSentinel has one sink; Switchyard has several receivers. Its
//! per-publish families count here once per event and receiver (the sum
//! over receivers, from the pipeline-wide counters, so a reload that removes
//! a receiver does not make them go back), with exactly NVSentinel's labels.
//! The mapping, family by family, is in `docs/migrating.md`.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::Live;
use super::metrics::{counter, family, gauge, histogram, load};

type Result = std::result::Result<(), std::fmt::Error>;

pub(super) fn encode(e: &mut DescriptorEncoder, live: &Live) -> Result {
    let s = &live.stats;
    counter(
        e,
        "health_events_exporter_events_received",
        "Records read from the source (backfilled ones included).",
        load(&s.read),
    )?;
    let rejected = load(&s.rejected);
    let exhausted = load(&s.exhausted);
    family(
        e,
        "health_events_exporter_events_published",
        "Events published, per event and receiver: success (delivered), failure (rejected, or given up after maxRetries).",
        None,
        MetricType::Counter,
        [
            ("success", load(&s.delivered)),
            ("failure", rejected + exhausted),
        ]
        .map(|(status, v)| ([("status", status)], ConstCounter::new(v))),
    )?;
    histogram(
        e,
        "health_events_exporter_publish_duration_seconds",
        "Per event and receiver: from the first publish attempt until it succeeded, retries included.",
        None,
        &s.publish_duration,
    )?;
    counter(
        e,
        "health_events_exporter_transform_errors",
        "Records that could not be read or turned into CloudEvents (skipped).",
        load(&s.malformed),
    )?;
    family(
        e,
        "health_events_exporter_publish_errors",
        "Events not published, per event and receiver, by error_type: max_retries_exceeded, rejected (a permanent refusal, e.g. HTTP 400).",
        None,
        MetricType::Counter,
        [("max_retries_exceeded", exhausted), ("rejected", rejected)]
            .map(|(ty, v)| ([("error_type", ty)], ConstCounter::new(v))),
    )?;
    let token_failures: u64 = live
        .receivers
        .iter()
        .filter_map(|r| r.tokens.as_ref())
        .map(|t| load(&t.failures))
        .sum();
    counter(
        e,
        "health_events_exporter_token_refresh_errors",
        "Failed OAuth2 token requests of the http receivers.",
        token_failures,
    )?;
    gauge(
        e,
        "health_events_exporter_resume_token_update_timestamp",
        "When the source position (resume token) was last persisted, Unix seconds (0: not yet).",
        None,
        load(&s.position_saved_at) as f64 / 1000.0,
    )?;
    let src = &s.source;
    gauge(
        e,
        "health_events_exporter_backfill_in_progress",
        "1 while a backfill runs, 0 otherwise.",
        None,
        f64::from(u8::from(
            src.backfilling.load(std::sync::atomic::Ordering::Relaxed),
        )),
    )?;
    counter(
        e,
        "health_events_exporter_backfill_events_processed",
        "Documents read by a backfill.",
        load(&src.backfilled),
    )?;
    let backfill = &src.backfill_duration;
    backfill.encode(e.encode_descriptor(
        "health_events_exporter_backfill_duration_seconds",
        "Time each backfill took that ran to its end.",
        None,
        backfill.metric_type(),
    )?)?;
    counter(
        e,
        "health_events_exporter_filter_errors",
        "Route rule expressions that failed to evaluate; the event was exported (fail open).",
        load(&s.expr_errors),
    )?;
    counter(
        e,
        "health_events_exporter_events_filtered",
        "Events exported nowhere: dropped by a rule or matched by none, or filtered out by a transform.",
        load(&s.unrouted) + load(&s.filtered),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use crate::route::RouteTree;
    use crate::stats::Stats;
    use crate::telemetry::{Compat, Live, Progress, Telemetry};

    /// Nothing in flight.
    struct Idle;

    impl Progress for Idle {
        fn in_flight(&self) -> usize {
            0
        }
        fn window(&self) -> usize {
            1
        }
        fn oldest_unfinished(&self) -> Option<std::time::Instant> {
            None
        }
    }

    fn scrape(compat: Option<Compat>, stats: &Arc<Stats>) -> String {
        let t = Telemetry::with_compat(compat);
        t.set_live(Live {
            stats: stats.clone(),
            progress: Arc::new(Idle),
            routes: RouteTree::default(),
            receivers: Vec::new(),
            transforms: Vec::new(),
        });
        super::super::metrics::render(&t)
    }

    fn value<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    /// The counters with no running component to move them yet (the route
    /// engine counts `expr_errors`) reach both names.
    #[test]
    fn expression_errors_and_the_position_time_are_served_under_both_names() {
        let stats = Arc::new(Stats::default());
        stats.expr_errors.store(3, Ordering::Relaxed);
        stats
            .position_saved_at
            .store(1_700_000_000_250, Ordering::Relaxed);
        stats.unrouted.store(5, Ordering::Relaxed);
        stats.filtered.store(2, Ordering::Relaxed);
        let on = scrape(Some(Compat::Nvsentinel), &stats);
        assert_eq!(value(&on, "switchyard_route_expr_errors_total"), Some("3"));
        assert_eq!(
            value(&on, "health_events_exporter_filter_errors_total"),
            Some("3")
        );
        assert_eq!(
            value(&on, "health_events_exporter_events_filtered_total"),
            Some("7")
        );
        assert_eq!(
            value(&on, "health_events_exporter_resume_token_update_timestamp"),
            Some("1700000000.25")
        );
        assert_eq!(
            value(&on, "switchyard_source_position_saved_timestamp_seconds"),
            Some("1700000000.25")
        );
        let off = scrape(None, &stats);
        assert_eq!(value(&off, "switchyard_route_expr_errors_total"), Some("3"));
        assert!(!off.contains("health_events_exporter"), "{off}");
    }
}
