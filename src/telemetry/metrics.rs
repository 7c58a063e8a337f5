//! The Prometheus metrics: every family is read from the pipeline's own
//! counters when Prometheus scrapes, so the hot path only bumps atomics and
//! a reload (receivers and rules come and go) needs no re-registration.
//!
//! Names follow Prometheus conventions: `switchyard_` prefix, base units
//! (seconds), `_total` on counters (added by the encoder).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::Compat;
use super::{Live, Role, Telemetry};
use crate::plugin::Plugin;
use crate::route::RuleKind;
use crate::stats::Buckets;

/// Renders every metric in the OpenMetrics text format.
pub fn render(telemetry: &Arc<Telemetry>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Metrics(telemetry.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

struct Metrics(Arc<Telemetry>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

type Result = std::result::Result<(), std::fmt::Error>;

/// A counter family read from a field of `T`: name, help, field.
type Field<T> = (&'static str, &'static str, fn(&T) -> &AtomicU64);

pub(super) fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

pub(super) fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: f64,
) -> Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

/// One labelled family: `rows` yields (labels, metric).
pub(super) fn family<S: EncodeLabelSet, M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    ty: MetricType,
    rows: impl IntoIterator<Item = (S, M)>,
) -> Result {
    let mut metric = e.encode_descriptor(name, help, unit, ty)?;
    for (labels, m) in rows {
        m.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

pub(super) fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Collector for Metrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result {
        let t = &self.0;
        family(
            &mut e,
            "switchyard_config_reloads",
            "Config reload attempts by result: success, or failure (refused; the running config stays).",
            None,
            MetricType::Counter,
            [
                ("success", &t.reloads_succeeded),
                ("failure", &t.reloads_failed),
            ]
            .map(|(result, c)| ([("result", result)], ConstCounter::new(load(c)))),
        )?;
        gauge(
            &mut e,
            "switchyard_config_last_reload_successful",
            "1 unless the last reload attempt was refused.",
            None,
            if t.last_reload_failed.load(Ordering::Relaxed) {
                0.0
            } else {
                1.0
            },
        )?;
        gauge(
            &mut e,
            "switchyard_leader",
            "1 while this replica exports (leader, or no leader election); 0 as a standby.",
            None,
            if t.role() == Role::Standby { 0.0 } else { 1.0 },
        )?;
        counter(
            &mut e,
            "switchyard_leader_acquisitions",
            "Times this replica became the leader.",
            load(&t.leaderships),
        )?;
        let live = t.live.lock().expect("telemetry lock");
        if let Some(live) = live.as_ref() {
            pipeline(&mut e, live)?;
            if t.compat == Some(Compat::Nvsentinel) {
                super::nvsentinel::encode(&mut e, live)?;
            }
        }
        Ok(())
    }
}

fn pipeline(e: &mut DescriptorEncoder, live: &Live) -> Result {
    let s = &live.stats;
    // The route tree counts CEL failures per rule; the pipeline total never
    // goes down, even when a reload removes a rule that had failed.
    s.expr_errors
        .fetch_max(live.routes.expr_errors(), Ordering::Relaxed);
    for (name, help, v) in [
        (
            "switchyard_events_read",
            "Records read from the source.",
            &s.read,
        ),
        (
            "switchyard_events_mapped",
            "Records mapped to CloudEvents.",
            &s.mapped,
        ),
        (
            "switchyard_events_malformed",
            "Records that could not be read or mapped (logged and skipped).",
            &s.malformed,
        ),
        (
            "switchyard_events_unrouted",
            "Events no route sent anywhere (dropped or unmatched).",
            &s.unrouted,
        ),
        (
            "switchyard_events_filtered",
            "Events a transform returned nothing for.",
            &s.filtered,
        ),
        (
            "switchyard_transform_failures",
            "Events a transform failed on (then handled by its onError).",
            &s.transform_failures,
        ),
        (
            "switchyard_source_positions_saved",
            "Source positions (resume tokens) persisted.",
            &s.positions_saved,
        ),
        (
            "switchyard_source_backfilled_events",
            "Documents read by a backfill.",
            &s.source.backfilled,
        ),
        (
            "switchyard_source_tokens_lost",
            "Source positions found lost: MongoDB resume tokens gone from the oplog (recovered by backfill), Kubernetes resourceVersions answered 410 Gone (recovered by a relist).",
            &s.source.tokens_lost,
        ),
        (
            "switchyard_source_reconnects",
            "Source reconnects after transient errors.",
            &s.source.reconnects,
        ),
        (
            "switchyard_source_gaps",
            "Times the source resumed past events it could no longer read (events may be lost).",
            &s.source.gaps,
        ),
    ] {
        counter(e, name, help, load(v))?;
    }
    let flag = |b: &std::sync::atomic::AtomicBool| f64::from(u8::from(b.load(Ordering::Relaxed)));
    gauge(
        e,
        "switchyard_source_connected",
        "1 while the source is reading (file open, change stream open).",
        None,
        flag(&s.source.connected),
    )?;
    gauge(
        e,
        "switchyard_source_backfill_running",
        "1 while a backfill runs.",
        None,
        flag(&s.source.backfilling),
    )?;
    let age = live
        .progress
        .oldest_unfinished()
        .map_or(0.0, |t| Instant::now().duration_since(t).as_secs_f64());
    gauge(
        e,
        "switchyard_source_position_age",
        "How long the persisted position has been held back: the age of the oldest event read but not yet finished by all its receivers (0 when none is pending).",
        Some(&Unit::Seconds),
        age,
    )?;
    gauge(
        e,
        "switchyard_events_in_flight",
        "Records read but not yet finished by all their receivers.",
        None,
        live.progress.in_flight() as f64,
    )?;
    gauge(
        e,
        "switchyard_events_in_flight_limit",
        "The window (state.maxInFlight): with this many records in flight the source waits.",
        None,
        live.progress.window() as f64,
    )?;

    gauge(
        e,
        "switchyard_source_position_saved_timestamp",
        "When a source position was last persisted, Unix time (0: not yet).",
        Some(&Unit::Seconds),
        load(&s.position_saved_at) as f64 / 1000.0,
    )?;
    let backfill = &s.source.backfill_duration;
    backfill.encode(e.encode_descriptor(
        "switchyard_source_backfill_duration",
        "Time each backfill took that ran to its end.",
        Some(&Unit::Seconds),
        backfill.metric_type(),
    )?)?;
    histogram(
        e,
        "switchyard_event_delivery_duration",
        "Per event and receiver: from the first delivery attempt until delivered, retries included.",
        Some(&Unit::Seconds),
        &s.publish_duration,
    )?;
    counter(
        e,
        "switchyard_route_expr_errors",
        "Route rule expressions (expr) that failed to evaluate; the event was exported (fail open).",
        load(&s.expr_errors),
    )?;

    rules(e, live)?;
    receivers(e, live)?;
    plugins(e, live)
}

/// A histogram family without labels, read from [`Buckets`].
pub(super) fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    b: &Buckets,
) -> Result {
    struct Snapshot<'a>(&'a Buckets);
    impl EncodeMetric for Snapshot<'_> {
        fn encode(&self, mut e: prometheus_client::encoding::MetricEncoder) -> Result {
            let (sum, count, buckets) = self.0.snapshot();
            e.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )
        }
        fn metric_type(&self) -> MetricType {
            MetricType::Histogram
        }
    }
    let snapshot = Snapshot(b);
    snapshot.encode(e.encode_descriptor(name, help, unit, MetricType::Histogram)?)
}

fn rules(e: &mut DescriptorEncoder, live: &Live) -> Result {
    let mut matches = Vec::new();
    let mut drops = Vec::new();
    live.routes.rule_counts(&mut |place, kind, hits| {
        let row = (place.to_owned(), hits);
        match kind {
            RuleKind::Match => matches.push(row),
            RuleKind::Drop => drops.push(row),
        }
    });
    for (name, help, rows) in [
        (
            "switchyard_route_matches",
            "Events a match rule matched, by rule (route.routes[1].match[0]).",
            matches,
        ),
        (
            "switchyard_route_drops",
            "Events a drop rule dropped, by rule (route.drop[0]).",
            drops,
        ),
    ] {
        family(
            e,
            name,
            help,
            None,
            MetricType::Counter,
            rows.iter()
                .map(|(place, hits)| ([("rule", place.as_str())], ConstCounter::new(*hits))),
        )?;
    }
    Ok(())
}

fn receivers(e: &mut DescriptorEncoder, live: &Live) -> Result {
    let rs = &live.receivers;
    let counters: [Field<crate::stats::ReceiverStats>; 5] = [
        (
            "switchyard_receiver_events_delivered",
            "Events delivered, by receiver.",
            |s| &s.delivered,
        ),
        (
            "switchyard_receiver_delivery_retries",
            "Failed delivery attempts that were retried, by receiver.",
            |s| &s.retried,
        ),
        (
            "switchyard_receiver_events_rejected",
            "Events the receiver rejected for good.",
            |s| &s.rejected,
        ),
        (
            "switchyard_receiver_events_dead_lettered",
            "Events written to the receiver's dead letter file.",
            |s| &s.dead_lettered,
        ),
        (
            "switchyard_receiver_buffer_dropped_events",
            "Events dropped for the receiver by buffer.whenFull: dropNewest.",
            |s| &s.buffer_dropped,
        ),
    ];
    for (name, help, field) in counters {
        family(
            e,
            name,
            help,
            None,
            MetricType::Counter,
            rs.iter().map(|r| {
                let v = load(field(&r.stats));
                ([("receiver", &*r.name)], ConstCounter::new(v))
            }),
        )?;
    }
    family(
        e,
        "switchyard_receiver_queue_events",
        "Events waiting in the receiver's queue.",
        None,
        MetricType::Gauge,
        rs.iter().map(|r| {
            let v = load(&r.stats.queued) as i64;
            ([("receiver", &*r.name)], ConstGauge::new(v))
        }),
    )?;
    family(
        e,
        "switchyard_receiver_queue_size",
        "Bytes of event JSON waiting in the receiver's memory buffer.",
        Some(&Unit::Bytes),
        MetricType::Gauge,
        rs.iter().map(|r| {
            let v = load(&r.stats.queued_bytes) as i64;
            ([("receiver", &*r.name)], ConstGauge::new(v))
        }),
    )?;
    let disk: Vec<_> = rs.iter().filter(|r| r.disk_buffer).collect();
    type Stat = fn(&crate::stats::ReceiverStats) -> &AtomicU64;
    let gauges: [(&str, &str, Option<Unit>, Stat); 3] = [
        (
            "switchyard_receiver_buffer_events",
            "Disk buffer: events on disk the receiver has not finished.",
            None,
            |s| &s.buffer_events,
        ),
        (
            "switchyard_receiver_buffer_size",
            "Disk buffer: bytes of its journal on disk.",
            Some(Unit::Bytes),
            |s| &s.buffer_bytes,
        ),
        (
            "switchyard_receiver_buffer_oldest_event_age",
            "Disk buffer: how long its oldest unfinished event has waited.",
            Some(Unit::Seconds),
            |s| &s.buffer_oldest_ms,
        ),
    ];
    for (name, help, unit, field) in gauges {
        let seconds = matches!(unit, Some(Unit::Seconds));
        family(
            e,
            name,
            help,
            unit.as_ref(),
            MetricType::Gauge,
            disk.iter().map(|r| {
                let v = load(field(&r.stats));
                let v = if seconds { v as f64 / 1000.0 } else { v as f64 };
                ([("receiver", &*r.name)], ConstGauge::new(v))
            }),
        )?;
    }
    family(
        e,
        "switchyard_receiver_delivery_duration",
        "Time per delivery attempt, by receiver.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
        rs.iter()
            .map(|r| ([("receiver", &*r.name)], r.stats.latency.clone())),
    )?;
    family(
        e,
        "switchyard_receiver_batch_size_events",
        "Events per delivery, by receiver.",
        None,
        MetricType::Histogram,
        rs.iter()
            .map(|r| ([("receiver", &*r.name)], r.stats.batch_size.clone())),
    )?;
    let tokens: Vec<_> = rs
        .iter()
        .filter_map(|r| r.tokens.as_ref().map(|t| (&*r.name, t)))
        .collect();
    for (name, help, field) in [
        (
            "switchyard_receiver_oauth2_token_refreshes",
            "OAuth2 access tokens fetched, by receiver.",
            true,
        ),
        (
            "switchyard_receiver_oauth2_token_failures",
            "Failed OAuth2 token requests, by receiver.",
            false,
        ),
    ] {
        family(
            e,
            name,
            help,
            None,
            MetricType::Counter,
            tokens.iter().map(|(n, t)| {
                let v = if field { &t.refreshes } else { &t.failures };
                ([("receiver", *n)], ConstCounter::new(load(v)))
            }),
        )?;
    }
    Ok(())
}

fn plugins(e: &mut DescriptorEncoder, live: &Live) -> Result {
    let mut all: Vec<&Arc<Plugin>> = live.transforms.iter().collect();
    for r in &live.receivers {
        all.extend(r.plugins.iter());
    }
    let counters: [Field<crate::plugin::PluginStats>; 6] = [
        ("switchyard_plugin_calls", "Plugin calls.", |s| &s.calls),
        (
            "switchyard_plugin_errors",
            "Plugin calls that returned an error.",
            |s| &s.errors,
        ),
        (
            "switchyard_plugin_traps",
            "Plugin calls that trapped.",
            |s| &s.traps,
        ),
        (
            "switchyard_plugin_timeouts",
            "Plugin calls stopped at their timeout.",
            |s| &s.timeouts,
        ),
        (
            "switchyard_plugin_memory_limit_hits",
            "Plugin calls stopped at their memory limit.",
            |s| &s.memory_limits,
        ),
        (
            "switchyard_plugin_http_denied",
            "Outgoing HTTP requests refused by allowedHosts.",
            |s| &s.denied,
        ),
    ];
    for (name, help, field) in counters {
        family(
            e,
            name,
            help,
            None,
            MetricType::Counter,
            all.iter().map(|p| {
                let v = load(field(p.stats()));
                (labels(p), ConstCounter::new(v))
            }),
        )?;
    }
    family(
        e,
        "switchyard_plugin_call_duration_seconds",
        "Time spent in plugin calls (divide by switchyard_plugin_calls_total for the mean).",
        None,
        MetricType::Counter,
        all.iter().map(|p| {
            let secs = load(&p.stats().call_nanos) as f64 / 1e9;
            (labels(p), ConstCounter::new(secs))
        }),
    )
}

/// A plugin's name and where the config uses it (`receivers[1].wasm`).
fn labels(p: &Plugin) -> [(&'static str, &str); 2] {
    [("plugin", p.name()), ("place", p.place())]
}
