//! The run loop of the MongoDB source.
//!
//! - **First start** (no token): open the change stream to learn where it
//!   starts (its resume token), backfill the history (if enabled), then
//!   consume the stream from that token. No gap: everything committed before
//!   the stream opened is visible to the backfill query, which runs after.
//!   No overlap: a backfilled document that the stream also reports (it was
//!   inserted after the stream opened) is skipped by `_id`.
//! - **Stream**: every change becomes a record whose position is its token
//!   and the document's time; a quiet stream still checkpoints its
//!   post-batch token about once a second, so an idle collection does not
//!   let the token age out of the oplog.
//! - **Token lost** (the oplog no longer reaches it): open a new stream,
//!   backfill from the last event's time, continue. Logged at WARN, counted.
//! - **Transient errors**: reconnect with backoff, resume from the last
//!   token handed to the pipeline.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Checkpoint, Connection, from_bson_time, is_token_lost, to_bson_time};
use crate::source::{Payload, Position, Record, SourceContext, SourceError};

/// Why a phase stopped.
enum Stop {
    /// Shutdown, or the pipeline is gone.
    Closed,
    /// The resume token is no longer in the oplog.
    Lost(mongodb::error::Error),
    /// Anything else: retry with backoff.
    Transient(mongodb::error::Error),
}

impl From<mongodb::error::Error> for Stop {
    fn from(e: mongodb::error::Error) -> Self {
        if is_token_lost(&e) {
            Stop::Lost(e)
        } else {
            Stop::Transient(e)
        }
    }
}

/// What the loop knows between phases.
struct State {
    /// The last token handed to the pipeline (or the stream's start).
    token: Option<ResumeToken>,
    /// The time of the last document handed to the pipeline.
    last_time: Option<DateTime<Utc>>,
    /// Backfilled ids the stream may report again (see the module docs).
    recent: HashSet<String>,
    /// A token the server rejected: recover before streaming again.
    recovering: bool,
}

/// How long backfilled ids are remembered relative to the stream's start:
/// a document stamped this long before the stream opened cannot have been
/// inserted after it, unless the writer's clock is off by more.
const OVERLAP_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// How often a quiet stream checkpoints its post-batch token.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

pub async fn run(connection: Arc<Connection>, ctx: SourceContext) -> Result<(), SourceError> {
    let start = ctx.start.as_ref().and_then(Checkpoint::from_json);
    if ctx.start.is_some() && start.is_none() {
        warn!("saved position is not a change stream position; starting as on first start");
    }
    let mut state = State {
        token: start.as_ref().map(|c| c.token.clone()),
        last_time: start.and_then(|c| c.last_event_time),
        recent: HashSet::new(),
        recovering: false,
    };
    let mut backoff = Backoff::new();
    loop {
        let result = async {
            let client = connection.client().await?;
            let spec = connection.spec();
            let coll = client
                .database(&spec.database)
                .collection::<Document>(&spec.collection);
            if state.recovering || state.token.is_none() {
                resync(&connection, &coll, &mut state, &ctx).await?;
            }
            stream(&connection, &coll, &mut state, &ctx, &mut backoff).await
        }
        .await;
        match result {
            Ok(()) | Err(Stop::Closed) => return Ok(()),
            Err(Stop::Lost(e)) => {
                ctx.stats.tokens_lost.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, since = ?state.last_time, "resume token is no longer in the oplog; recovering by backfill from the last event's time");
                state.recovering = true;
            }
            Err(Stop::Transient(e)) => {
                ctx.stats.connected.store(false, Ordering::Relaxed);
                ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next();
                warn!(error = %e, retry_in = ?wait, "MongoDB source interrupted; reconnecting");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The start of the backfill window that ends at `opened`.
fn window_start(connection: &Connection, opened: DateTime<Utc>) -> DateTime<Utc> {
    let max_age = connection.spec().backfill.max_age;
    opened - chrono::TimeDelta::from_std(max_age).unwrap_or(chrono::TimeDelta::MAX)
}

/// Opens the change stream (its start is the returned token), without
/// consuming it.
async fn open_token(
    connection: &Connection,
    coll: &Collection<Document>,
) -> Result<ResumeToken, Stop> {
    let stream = watch(connection, coll, None).await?;
    stream.resume_token().ok_or_else(|| {
        Stop::Transient(mongodb::error::Error::custom(
            "the change stream returned no start token",
        ))
    })
}

/// Opens a new stream (its start token), sends the history it does not
/// cover, and checkpoints its start. On first start the history is the
/// backfill window (if enabled); after a lost token it is everything since
/// the last event's time.
async fn resync(
    connection: &Connection,
    coll: &Collection<Document>,
    state: &mut State,
    ctx: &SourceContext,
) -> Result<(), Stop> {
    let token = open_token(connection, coll).await?;
    let opened = Utc::now();
    let spec = &connection.spec().backfill;
    let window = if state.recovering {
        let from = state.last_time.unwrap_or_else(|| {
            let from = window_start(connection, opened);
            warn!(from = %from, "no last event time saved with the lost token; backfilling maxAge of history");
            from
        });
        Some((from, None))
    } else if spec.enabled {
        let from = window_start(connection, opened);
        info!(from = %from, max_events = spec.max_events, "first start: backfilling history, then streaming");
        Some((from, Some(spec.max_events)))
    } else {
        info!("first start: streaming from now (backfill disabled)");
        None
    };
    if let Some((from, limit)) = window {
        ctx.stats.backfilling.store(true, Ordering::Relaxed);
        let span = BackfillSpan::start(from, limit, state.recovering, ctx);
        let started = Instant::now();
        let result = backfill(connection, coll, from, limit, opened, state, ctx).await;
        span.end(&result, ctx);
        ctx.stats.backfilling.store(false, Ordering::Relaxed);
        result?;
        ctx.stats
            .backfill_duration
            .observe(started.elapsed().as_secs_f64());
    }
    if state.recovering {
        state.recovering = false;
        info!("recovered from the lost resume token; streaming again");
    }
    checkpoint(state, token, ctx).await
}

/// `event_exporter.backfill` (the name NVSentinel's exporter gives it),
/// from the global tracer provider: a no-op unless tracing is on.
struct BackfillSpan {
    span: opentelemetry::global::BoxedSpan,
    backfilled_before: u64,
}

impl BackfillSpan {
    fn start(
        from: DateTime<Utc>,
        limit: Option<u64>,
        recovering: bool,
        ctx: &SourceContext,
    ) -> Self {
        use opentelemetry::KeyValue;
        use opentelemetry::trace::Tracer;
        let mut attributes = vec![
            KeyValue::new("event_exporter.backfill.query.start", from.to_rfc3339()),
            KeyValue::new("event_exporter.backfill.recovering", recovering),
        ];
        if let Some(limit) = limit {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            attributes.push(KeyValue::new(
                "event_exporter.backfill.query.max_events",
                limit,
            ));
        }
        let tracer = opentelemetry::global::tracer("switchyard");
        let span = tracer
            .span_builder("event_exporter.backfill")
            .with_attributes(attributes)
            .start(&tracer);
        Self {
            span,
            backfilled_before: ctx.stats.backfilled.load(Ordering::Relaxed),
        }
    }

    fn end(mut self, result: &Result<(), Stop>, ctx: &SourceContext) {
        use opentelemetry::KeyValue;
        use opentelemetry::trace::{Span, Status};
        let sent = ctx.stats.backfilled.load(Ordering::Relaxed) - self.backfilled_before;
        let status = match result {
            Ok(()) => "succeeded",
            Err(Stop::Closed) => "stopped",
            Err(Stop::Lost(e) | Stop::Transient(e)) => {
                self.span.set_status(Status::error(e.to_string()));
                "failed"
            }
        };
        self.span.set_attributes([
            KeyValue::new("event_exporter.backfill.status", status),
            KeyValue::new(
                "event_exporter.backfill.events_processed",
                i64::try_from(sent).unwrap_or(i64::MAX),
            ),
        ]);
        self.span.end();
    }
}

/// Sends a position-only record: everything before `token` is handed over.
async fn checkpoint(
    state: &mut State,
    token: ResumeToken,
    ctx: &SourceContext,
) -> Result<(), Stop> {
    let position = Checkpoint {
        token: token.clone(),
        last_event_time: state.last_time,
    };
    send(
        ctx,
        Record {
            payload: Payload::Checkpoint,
            position: Some(Position::Json(position.to_json())),
            done: None,
        },
    )
    .await?;
    state.token = Some(token);
    Ok(())
}

/// Sends documents with `time_field >= from`, oldest first; with `limit`,
/// only the newest `limit` of them (so the backfill ends where the stream
/// starts). Paced to `rateLimit` documents per second.
async fn backfill(
    connection: &Connection,
    coll: &Collection<Document>,
    from: DateTime<Utc>,
    limit: Option<u64>,
    opened: DateTime<Utc>,
    state: &mut State,
    ctx: &SourceContext,
) -> Result<(), Stop> {
    let spec = &connection.spec().backfill;
    let tf = spec.time_field.as_str();
    state.recent.clear();
    let mut filter = doc! { tf: { "$gte": to_bson_time(from) } };
    if let Some(limit) = limit.filter(|l| *l > 0) {
        let newest_first = doc! { tf: -1, "_id": -1 };
        let cutoff = coll
            .find(filter.clone())
            .sort(newest_first)
            .skip(limit - 1)
            .limit(1)
            .await?
            .try_next()
            .await?;
        if let Some(cutoff) = cutoff
            && let (Some(t), Some(id)) = (cutoff.get(tf), cutoff.get("_id"))
        {
            info!(
                max_events = limit,
                "backfill limited to the newest maxEvents documents"
            );
            filter = doc! { "$or": [ { tf: { "$gt": t.clone() } }, { tf: t.clone(), "_id": { "$gte": id.clone() } } ] };
        }
    }
    let mut cursor = coll
        .find(filter)
        .sort(doc! { tf: 1, "_id": 1 })
        .batch_size(spec.batch_size)
        .await?;
    let started = Instant::now();
    let chunk = u64::from((spec.rate_limit / 20).max(1));
    let mut sent: u64 = 0;
    let horizon = opened - OVERLAP_WINDOW;
    while let Some(document) = tokio::select! {
        _ = ctx.shutdown.cancelled() => return Err(Stop::Closed),
        next = cursor.try_next() => next?,
    } {
        let time = document
            .get_datetime(tf)
            .ok()
            .and_then(|t| from_bson_time(*t));
        if let Some(id) = document.get("_id")
            && time.is_none_or(|t| t >= horizon)
        {
            state.recent.insert(id.to_string());
        }
        if time.is_some() {
            state.last_time = time;
        }
        send(
            ctx,
            Record {
                payload: Payload::Line(to_line(document)),
                position: None,
                done: None,
            },
        )
        .await?;
        sent += 1;
        ctx.stats.backfilled.fetch_add(1, Ordering::Relaxed);
        if spec.rate_limit > 0 && sent.is_multiple_of(chunk) {
            let due = started + Duration::from_secs_f64(sent as f64 / f64::from(spec.rate_limit));
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Err(Stop::Closed),
                _ = tokio::time::sleep_until(due) => {}
            }
        }
    }
    info!(documents = sent, elapsed = ?started.elapsed(), "backfill done");
    Ok(())
}

async fn watch(
    connection: &Connection,
    coll: &Collection<Document>,
    resume_after: Option<ResumeToken>,
) -> Result<mongodb::change_stream::ChangeStream<ChangeStreamEvent<Document>>, Stop> {
    let spec = connection.spec();
    let mut pipeline =
        vec![doc! { "$match": { "operationType": { "$in": &spec.operation_types } } }];
    pipeline.extend(spec.pipeline.iter().cloned());
    let lookup = spec.operation_types.iter().any(|o| o != "insert");
    let mut watch = coll
        .watch()
        .pipeline(pipeline)
        .max_await_time(Duration::from_millis(500))
        .resume_after(resume_after);
    if lookup {
        watch = watch.full_document(FullDocumentType::UpdateLookup);
    }
    Ok(watch.await?)
}

async fn stream(
    connection: &Connection,
    coll: &Collection<Document>,
    state: &mut State,
    ctx: &SourceContext,
    backoff: &mut Backoff,
) -> Result<(), Stop> {
    let tf = connection.spec().backfill.time_field.as_str();
    let mut changes = watch(connection, coll, state.token.clone()).await?;
    ctx.stats.connected.store(true, Ordering::Relaxed);
    debug!("change stream open");
    backoff.reset();
    let mut last_checkpoint = Instant::now();
    loop {
        let next = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Err(Stop::Closed),
            next = changes.next_if_any() => next?,
        };
        let Some(event) = next else {
            // A quiet batch: keep the token fresh.
            if let Some(token) = changes.resume_token()
                && state.token.as_ref() != Some(&token)
                && last_checkpoint.elapsed() >= IDLE_CHECKPOINT
            {
                checkpoint(state, token, ctx).await?;
                last_checkpoint = Instant::now();
            }
            continue;
        };
        state.token = Some(event.id.clone());
        let Some(document) = event.full_document else {
            debug!(operation = ?event.operation_type, "change without a full document (deleted since?); skipped");
            continue;
        };
        if event.operation_type == OperationType::Insert
            && !state.recent.is_empty()
            && document
                .get("_id")
                .is_some_and(|id| state.recent.remove(&id.to_string()))
        {
            continue; // Already sent by the backfill.
        }
        if let Some(t) = document
            .get_datetime(tf)
            .ok()
            .and_then(|t| from_bson_time(*t))
        {
            state.last_time = Some(t);
        }
        let position = Checkpoint {
            token: event.id,
            last_event_time: state.last_time,
        };
        let record = Record {
            payload: Payload::Line(to_line(document)),
            position: Some(Position::Json(position.to_json())),
            done: None,
        };
        send(ctx, record).await?;
        last_checkpoint = Instant::now();
    }
}

/// A document as one line of relaxed Extended JSON, as `mongoexport` writes
/// it and as the mapping profiles read it.
fn to_line(document: Document) -> Vec<u8> {
    serde_json::to_vec(&Bson::Document(document).into_relaxed_extjson())
        .expect("JSON value serialises")
}

async fn send(ctx: &SourceContext, record: Record) -> Result<(), Stop> {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => Err(Stop::Closed),
        sent = ctx.out.send(record) => sent.map_err(|_| Stop::Closed),
    }
}

/// Exponential backoff for reconnects: 250 ms doubling to 30 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self(Self::FIRST)
    }

    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}
