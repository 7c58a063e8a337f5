//! The spans of an event's way through the pipeline, named as NVSentinel's
//! event exporter names them so its dashboards keep working:
//!
//! ```text
//! event_exporter.process_event       one per record: read → the last receiver's outcome
//!   └ event_exporter.publish_with_retry   one per receiver: first attempt → delivered / dead-lettered / lost
//!       └ event_exporter.publish          one per delivery attempt (its context is the
//!                                         `traceparent` header of a binary-mode request)
//! ```
//!
//! `process_event` joins the trace the event was created in (its
//! `traceparent` extension; for NVSentinel documents the platform
//! connector's span): the same trace id, and a span *link* to that span —
//! not a child of it, as NVSentinel's own services do it. An event without
//! one starts a trace and carries `process_event`'s context out as its
//! extension.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider, Span,
};

use crate::event::trace::{self, TraceParent};
use crate::event::{AttributesReader, Event};
use crate::sink::{Delivery, Item};

pub const PROCESS_EVENT: &str = "event_exporter.process_event";
pub const PUBLISH_WITH_RETRY: &str = "event_exporter.publish_with_retry";
pub const PUBLISH: &str = "event_exporter.publish";
pub const BACKFILL: &str = "event_exporter.backfill";

/// Makes spans for the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Tracer {
    inner: SdkTracer,
}

impl Tracer {
    pub fn new(provider: &SdkTracerProvider) -> Self {
        Self {
            inner: provider.tracer("switchyard"),
        }
    }

    /// Starts `process_event` for `event`, read at `read`: in the trace of
    /// its creation context and linked to it, or in a new trace whose
    /// context the event then carries as its `traceparent`.
    pub fn process_event(&self, event: &mut Event, read: SystemTime) -> EventSpan {
        let mut attributes = vec![
            KeyValue::new("cloudevents.event_id", event.id().to_owned()),
            KeyValue::new("cloudevents.event_type", event.ty().to_owned()),
            KeyValue::new("cloudevents.event_source", event.source().to_string()),
        ];
        if let Some(subject) = event.subject() {
            attributes.push(KeyValue::new(
                "cloudevents.event_subject",
                subject.to_owned(),
            ));
        }
        let upstream = TraceParent::of_event(event);
        let mut builder = self
            .inner
            .span_builder(PROCESS_EVENT)
            .with_kind(SpanKind::Consumer)
            .with_start_time(read)
            .with_attributes(attributes);
        let span = match upstream {
            Some(up) => {
                let state = trace::tracestate(event)
                    .and_then(|s| TraceState::from_key_value(parse_state(s)).ok())
                    .unwrap_or_default();
                let linked = SpanContext::new(
                    TraceId::from_bytes(up.trace_id),
                    opentelemetry::trace::SpanId::from_bytes(up.span_id),
                    TraceFlags::new(up.flags),
                    true,
                    state,
                );
                builder = builder.with_links(vec![Link::with_context(linked)]);
                in_trace(TraceId::from_bytes(up.trace_id), || {
                    builder.start_with_context(&self.inner, &Context::new())
                })
            }
            None => {
                let span = builder.start_with_context(&self.inner, &Context::new());
                if let Some(own) = traceparent(span.span_context()) {
                    trace::set_extension(event, &own, None);
                }
                span
            }
        };
        let parent = Context::new().with_remote_span_context(span.span_context().clone());
        EventSpan {
            span,
            tracer: self.inner.clone(),
            parent,
            outcome: AtomicU8::new(Outcome::Filtered as u8),
            settled: None,
        }
    }
}

/// `tracestate` text → key/value pairs (malformed members are skipped).
fn parse_state(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|m| m.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A span context as a `traceparent`.
fn traceparent(sc: &SpanContext) -> Option<TraceParent> {
    let tp = TraceParent {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
    };
    tp.is_valid().then_some(tp)
}

thread_local! {
    /// The trace id the next root span on this thread is to have.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// Starts a root span in an existing trace. The SDK takes a root span's
/// trace id from the id generator, and starting a span is synchronous, so
/// the generator hands out `trace_id` for exactly this start: the span has
/// that trace id and no parent, like NVSentinel's spans with a remote
/// context of only a trace id.
fn in_trace(trace_id: TraceId, start: impl FnOnce() -> Span) -> Span {
    NEXT_TRACE_ID.with(|next| next.set(Some(trace_id)));
    let span = start();
    NEXT_TRACE_ID.with(|next| next.set(None));
    span
}

/// Random ids, except a trace id given to [`in_trace`].
#[derive(Debug, Default)]
pub(super) struct JoiningIds(RandomIdGenerator);

impl IdGenerator for JoiningIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}

/// What happened to an event at one receiver, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Outcome {
    /// A transform dropped it before delivery.
    Filtered = 0,
    Delivered = 1,
    DeadLettered = 2,
    /// Rejected (or given up) without a dead letter file.
    Lost = 3,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Filtered => "filtered",
            Outcome::Delivered => "delivered",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Lost => "lost",
        }
    }

    fn from_u8(n: u8) -> Self {
        match n {
            1 => Outcome::Delivered,
            2 => Outcome::DeadLettered,
            3 => Outcome::Lost,
            _ => Outcome::Filtered,
        }
    }
}

/// `process_event`. Shared by the receivers the event went to; it ends
/// when the last of them lets go of it, with the worst of their outcomes.
pub struct EventSpan {
    span: Span,
    tracer: SdkTracer,
    /// The context its children start in.
    parent: Context,
    outcome: AtomicU8,
    /// An outcome decided before any receiver (unrouted, filtered).
    settled: Option<&'static str>,
}

impl EventSpan {
    /// The event goes to `receivers` receivers (0: no route matched).
    pub fn routed(mut self, receivers: usize) -> Option<Arc<Self>> {
        self.span
            .set_attribute(KeyValue::new("event_exporter.receivers", receivers as i64));
        if receivers == 0 {
            self.settled = Some("unrouted");
            return None; // ends now
        }
        Some(Arc::new(self))
    }

    /// The global transforms dropped the event: ends now.
    pub fn filtered(mut self) -> Option<Arc<Self>> {
        self.span
            .set_attribute(KeyValue::new("event_exporter.receivers", 0i64));
        self.settled = Some(Outcome::Filtered.as_str());
        None
    }

    fn record(&self, outcome: Outcome) {
        self.outcome.fetch_max(outcome as u8, Ordering::Relaxed);
    }
}

impl Drop for EventSpan {
    fn drop(&mut self) {
        let outcome = Outcome::from_u8(self.outcome.load(Ordering::Relaxed));
        let text = self.settled.unwrap_or(outcome.as_str());
        self.span
            .set_attribute(KeyValue::new("event_exporter.outcome", text));
        if outcome >= Outcome::DeadLettered {
            self.span.set_status(Status::error(format!("event {text}")));
        }
        self.span.end();
    }
}

/// The spans of one batch at one receiver: `publish_with_retry` per event
/// (from the first attempt to its outcome) and `publish` per attempt.
pub struct BatchTrace {
    receiver: String,
    events: Vec<Arc<EventSpan>>,
    publishes: Vec<Option<Span>>,
    attempts: Vec<Option<Span>>,
}

impl BatchTrace {
    /// `spans` are the batch's events' spans, in item order; `None` when
    /// tracing is off (no spans).
    pub fn new(receiver: &str, spans: Vec<Arc<EventSpan>>) -> Option<Self> {
        if spans.is_empty() {
            return None;
        }
        let n = spans.len();
        Some(Self {
            receiver: receiver.to_owned(),
            events: spans,
            publishes: (0..n).map(|_| None).collect(),
            attempts: Vec::with_capacity(n),
        })
    }

    /// Starts attempt `attempt` (from 1) of every item, and gives each item
    /// the attempt's context to send as its transport's trace header.
    pub fn attempt(&mut self, attempt: u32, items: &mut [Item]) {
        debug_assert_eq!(items.len(), self.events.len(), "one span per item");
        self.attempts.clear();
        let batch_size = self.events.len() as i64;
        for (i, item) in items.iter_mut().enumerate() {
            let event = &self.events[i];
            let publish = self.publishes[i].get_or_insert_with(|| {
                event
                    .tracer
                    .span_builder(PUBLISH_WITH_RETRY)
                    .with_attributes([KeyValue::new(
                        "event_exporter.receiver",
                        self.receiver.clone(),
                    )])
                    .start_with_context(&event.tracer, &event.parent)
            });
            let parent = Context::new().with_remote_span_context(publish.span_context().clone());
            let span = event
                .tracer
                .span_builder(PUBLISH)
                .with_kind(SpanKind::Client)
                .with_attributes([
                    KeyValue::new("event_exporter.receiver", self.receiver.clone()),
                    KeyValue::new("event_exporter.attempt", i64::from(attempt)),
                    KeyValue::new("event_exporter.batch_size", batch_size),
                ])
                .start_with_context(&event.tracer, &parent);
            item.trace = traceparent(span.span_context());
            self.attempts.push(Some(span));
        }
    }

    /// Ends the current attempt's spans with the sink's answer.
    pub fn attempted(&mut self, delivery: &Delivery) {
        let each = match delivery {
            Delivery::Each(each) => Some(each),
            _ => None,
        };
        for (i, span) in self.attempts.iter_mut().enumerate() {
            let Some(mut span) = span.take() else {
                continue;
            };
            let outcome = each.and_then(|e| e.get(i)).unwrap_or(delivery);
            let (text, reason) = match outcome {
                Delivery::Delivered => ("delivered", None),
                Delivery::Retry { reason, .. } => ("retry", Some(reason)),
                Delivery::Reject(reason) => ("rejected", Some(reason)),
                Delivery::Each(_) => ("partial", None),
            };
            span.set_attribute(KeyValue::new("event_exporter.outcome", text));
            if let Some(reason) = reason {
                span.set_status(Status::error(reason.clone()));
            }
            span.end();
        }
    }

    /// Item `i` is done at this receiver: `outcome` after `attempts`.
    pub fn finish(&mut self, i: usize, outcome: Outcome, attempts: u32, reason: Option<&str>) {
        if let Some(mut span) = self.publishes[i].take() {
            span.set_attributes([
                KeyValue::new("event_exporter.outcome", outcome.as_str()),
                KeyValue::new("event_exporter.attempts", i64::from(attempts)),
            ]);
            if let Some(reason) = reason.filter(|_| outcome >= Outcome::DeadLettered) {
                span.set_status(Status::error(reason.to_owned()));
            }
            span.end();
        }
        self.events[i].record(outcome);
    }

    /// Every item is done at this receiver.
    pub fn finish_all(&mut self, outcome: Outcome, attempts: u32, reason: Option<&str>) {
        for i in 0..self.events.len() {
            self.finish(i, outcome, attempts, reason);
        }
    }

    /// Keeps the items still to retry (`keep[i]`), in order.
    pub fn retain(&mut self, keep: &[bool]) {
        let mut k = keep.iter();
        self.events.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        self.publishes.retain(|_| *k.next().unwrap_or(&false));
    }
}
