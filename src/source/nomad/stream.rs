//! The run loop: open `GET /v1/event/stream`, split the chunked body into
//! ndjson frames, hand each event over with its exact position, and open the
//! stream again (with exponential backoff) when it fails or ends.

use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, error, info, warn};

use super::config::NomadSpec;
use super::cursor::{Cursor, Gap, Resume};
use crate::net::http_client::describe;
use crate::source::{Payload, Position, Record, SourceContext, SourceError};

/// Why a stream stopped (each one is retried).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Request(String),
    #[error(
        "Nomad refused the event stream: permission denied (HTTP 403); check source.nomad.token and its ACL policy (namespace:read-job for Job, Allocation, Deployment and Evaluation; node:read for Node; management for the rest and for \"*\")"
    )]
    Denied,
    #[error("Nomad answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Nomad closed the event stream")]
    Closed,
    #[error("Nomad sent a line longer than 64 MiB without its end")]
    LineTooLong,
    #[error("nothing from Nomad for {0:?} (not even a heartbeat)")]
    Idle(StdDuration),
}

/// How a stream ended without an error.
enum Stop {
    Shutdown,
}

/// One ndjson line: a batch of events at one index, or a heartbeat `{}`.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "Index", default)]
    index: u64,
    #[serde(rename = "Events", default)]
    events: Option<Vec<Value>>,
}

pub async fn run(spec: NomadSpec, ctx: SourceContext) -> Result<(), SourceError> {
    let client = client(&spec).map_err(|reason| SourceError::Setup {
        what: "source.nomad",
        reason,
    })?;
    let saved = ctx.start.as_ref().and_then(Cursor::from_json);
    if ctx.start.is_some() && saved.is_none() {
        warn!(origin = %spec.origin, "the saved position is not a Nomad position; reading Nomad's whole buffer");
    }
    if let Some(c) = saved {
        info!(origin = %spec.origin, index = c.index, events = c.events, "resuming Nomad's event stream");
    }
    let mut resume = Resume::new(saved);
    let mut wait = spec.initial_backoff;
    loop {
        resume.connecting();
        let mut got_frame = false;
        match read(&client, &spec, &ctx, &mut resume, &mut got_frame).await {
            Ok(Stop::Shutdown) => return Ok(()),
            Err(e) => {
                ctx.stats.connected.store(false, Ordering::Relaxed);
                if got_frame {
                    wait = spec.initial_backoff;
                }
                if matches!(e, StreamError::Denied) {
                    // Events leave Nomad's buffer while this lasts.
                    error!(origin = %spec.origin, error = %e, retry_in = ?wait, "cannot read Nomad's event stream");
                } else {
                    warn!(origin = %spec.origin, error = %e, retry_in = ?wait, "Nomad's event stream interrupted; reconnecting");
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                wait = (wait * 2).min(spec.max_backoff);
            }
        }
        if ctx.out.is_closed() {
            return Ok(());
        }
    }
}

fn client(spec: &NomadSpec) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .use_rustls_tls()
        // No overall timeout: the response is endless. `idleTimeout`
        // watches it instead.
        .connect_timeout(StdDuration::from_secs(10))
        .tcp_keepalive(StdDuration::from_secs(30))
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &spec.tls.ca_pem {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("TLS caFile: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(identity) = &spec.tls.identity_pem {
        let identity = reqwest::Identity::from_pem(identity.0.as_bytes())
            .map_err(|_| "TLS certFile/keyFile: not a PEM certificate and key".to_owned())?;
        builder = builder.identity(identity);
    }
    if spec.tls.insecure_skip_verify {
        warn!(origin = %spec.origin, "source.nomad: TLS certificate verification is OFF (insecureSkipVerify); use only for testing");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(describe)
}

/// The request URL (it holds no secret: the token goes in a header).
pub fn stream_url(spec: &NomadSpec, index: u64) -> String {
    let mut url = reqwest::Url::parse(&format!("{}/v1/event/stream", spec.address))
        .expect("validated address");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("index", &index.to_string());
        q.append_pair("namespace", &spec.namespace);
        if let Some(region) = &spec.region {
            q.append_pair("region", region);
        }
        for (topic, key) in &spec.topics {
            q.append_pair("topic", &format!("{topic}:{key}"));
        }
    }
    url.into()
}

/// Reads one connection until it fails (`Err`) or shutdown.
async fn read(
    client: &reqwest::Client,
    spec: &NomadSpec,
    ctx: &SourceContext,
    resume: &mut Resume,
    got_frame: &mut bool,
) -> Result<Stop, StreamError> {
    let index = resume.request_index();
    let mut request = client.get(stream_url(spec, index));
    if let Some(token) = &spec.token {
        request = request.header("X-Nomad-Token", &token.0);
    }
    let response = tokio::select! {
        _ = ctx.shutdown.cancelled() => return Ok(Stop::Shutdown),
        r = request.send() => r.map_err(|e| StreamError::Request(describe(e)))?,
    };
    let status = response.status();
    if status == reqwest::StatusCode::FORBIDDEN {
        return Err(StreamError::Denied);
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(300).collect();
        return Err(StreamError::Status {
            status: status.as_u16(),
            body,
        });
    }
    ctx.stats.connected.store(true, Ordering::Relaxed);
    info!(origin = %spec.origin, index, namespace = %spec.namespace, "reading Nomad's event stream");

    let mut response = response;
    let mut lines = LineBuf::default();
    loop {
        let chunk = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(Stop::Shutdown),
            c = tokio::time::timeout(spec.idle_timeout, response.chunk()) => c,
        };
        let chunk = match chunk {
            Err(_) => return Err(StreamError::Idle(spec.idle_timeout)),
            Ok(Err(e)) => return Err(StreamError::Request(describe(e))),
            Ok(Ok(None)) => return Err(StreamError::Closed),
            Ok(Ok(Some(chunk))) => chunk,
        };
        lines.push(&chunk);
        while let Some(line) = lines.next_line()? {
            *got_frame = true;
            if let Some(stop) = frame(line, spec, ctx, resume).await {
                return Ok(stop);
            }
        }
    }
}

/// The longest ndjson line taken from Nomad (a frame of events at one
/// index; Nomad's own are far smaller).
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// The stream body's framing: chunks in, whole lines out. Bounded: a line
/// that runs past [`MAX_LINE`] without its end is an error (the stream is
/// opened again), not memory that grows for ever.
#[derive(Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// How much after `start` is known to hold no newline (so that a line
    /// arriving in many small chunks is scanned once, not once per chunk).
    scanned: usize,
}

impl LineBuf {
    pub fn push(&mut self, chunk: &[u8]) {
        // Moves what is left to the front once it is at most what was
        // taken: amortised, also when a line comes a byte at a time.
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole line (without its newline), if one is here.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, StreamError> {
        let from = self.start + self.scanned;
        match self.buf[from..].iter().position(|b| *b == b'\n') {
            Some(n) => {
                let line = &self.buf[self.start..from + n];
                self.start = from + n + 1;
                self.scanned = 0;
                Ok(Some(line))
            }
            None => {
                self.scanned = self.buf.len() - self.start;
                if self.scanned > MAX_LINE {
                    return Err(StreamError::LineTooLong);
                }
                Ok(None)
            }
        }
    }
}

/// What one ndjson line is.
#[derive(Debug)]
pub enum Parsed {
    /// `{}` or a blank line: Nomad is there, with nothing new.
    Heartbeat,
    /// Not a frame: handed on as an invalid record (counted, logged).
    Invalid(String),
    /// Events at one index.
    Events { index: u64, events: Vec<Value> },
}

pub fn parse(line: &[u8]) -> Parsed {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Heartbeat;
    }
    let frame: Frame = match serde_json::from_slice(line) {
        Ok(f) => f,
        Err(e) => return Parsed::Invalid(format!("Nomad sent a line that is not a frame: {e}")),
    };
    let events = match frame.events {
        Some(events) if !events.is_empty() => events,
        _ => return Parsed::Heartbeat,
    };
    let index = if frame.index > 0 {
        frame.index
    } else {
        events
            .first()
            .and_then(|e| e.get("Index"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Parsed::Events { index, events }
}

/// The record of one event, as the `nomad` mapping reads it.
pub fn record_line(origin: &str, ordinal: u64, event: &Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "origin": origin,
        "ordinal": ordinal,
        "event": event,
    }))
    .expect("JSON serialises")
}

/// Hands over the events of one line; `Some` when the pipeline is gone.
async fn frame(
    line: &[u8],
    spec: &NomadSpec,
    ctx: &SourceContext,
    resume: &mut Resume,
) -> Option<Stop> {
    let (index, events) = match parse(line) {
        Parsed::Heartbeat => {
            debug!(origin = %spec.origin, "Nomad heartbeat");
            return None;
        }
        Parsed::Invalid(reason) => {
            let record = Record {
                payload: Payload::Invalid(reason),
                position: None,
                done: None,
            };
            return send(ctx, record).await;
        }
        Parsed::Events { index, events } => (index, events),
    };
    let before = resume.last();
    let plan = resume.frame(index, events.len());
    if let Some(gap) = plan.gap {
        report_gap(spec, ctx, gap);
    }
    if plan.stale
        && let Some(at) = before
    {
        warn!(
            origin = %spec.origin,
            index,
            position_index = at.index,
            "Nomad sent an index below the position, skipped as read before: a server lagging behind (catching up, restarted), or Nomad's indexes went back (a new cluster at this address: remove the position file to read it)"
        );
    }
    let ordinals = occurrences(&events);
    for (i, (event, ordinal)) in events.iter().zip(ordinals).enumerate().skip(plan.skip) {
        let n = i as u64 + 1;
        let record = Record {
            payload: Payload::Line(record_line(&spec.origin, ordinal, event)),
            position: Some(Position::Json(Cursor { index, events: n }.to_json())),
            done: None,
        };
        if let Some(stop) = send(ctx, record).await {
            return Some(stop);
        }
        resume.taken(index, n);
    }
    None
}

/// For each event, how many events before it in its frame share its Topic,
/// Type and Key (almost always 0). Unlike its place in the frame, this does
/// not depend on the topic and namespace filter — events of one object pass
/// or fail it together — so the id derived from it is the same whatever a
/// source subscribes to.
pub fn occurrences(events: &[Value]) -> Vec<u64> {
    let mut seen: std::collections::HashMap<(&str, &str, &str), u64> = Default::default();
    events
        .iter()
        .map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
            let n = seen
                .entry((text("Topic"), text("Type"), text("Key")))
                .or_default();
            let ordinal = *n;
            *n += 1;
            ordinal
        })
        .collect()
}

async fn send(ctx: &SourceContext, record: Record) -> Option<Stop> {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => Some(Stop::Shutdown),
        sent = ctx.out.send(record) => sent.is_err().then_some(Stop::Shutdown),
    }
}

fn report_gap(spec: &NomadSpec, ctx: &SourceContext, gap: Gap) {
    ctx.stats.gaps.fetch_add(1, Ordering::Relaxed);
    error!(
        origin = %spec.origin,
        resume_index = gap.after.index,
        resume_events = gap.after.events,
        first_index = gap.first_index,
        "Nomad no longer buffers the resume index: events after index {} (its first {} taken) up to index {} may be lost; Nomad has no history API to read them",
        gap.after.index,
        gap.after.events,
        gap.first_index - 1,
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ordinals_count_events_of_one_object_within_a_frame() {
        let e = |topic: &str, ty: &str, key: &str| json!({"Topic": topic, "Type": ty, "Key": key});
        let events = [
            e("Allocation", "AllocationUpdated", "a1"),
            e("Allocation", "AllocationUpdated", "a2"),
            e("Allocation", "AllocationUpdated", "a1"),
            e("Job", "JobRegistered", "a1"),
            e("Allocation", "AllocationUpdated", "a1"),
        ];
        assert_eq!(occurrences(&events), [0, 0, 1, 0, 2]);
    }

    #[test]
    fn lines_span_chunks_and_a_line_without_end_is_bounded() {
        let mut lines = LineBuf::default();
        lines.push(b"{\"Index\":1,");
        assert!(lines.next_line().unwrap().is_none());
        lines.push(b"\"Events\":[]}\n{}\n{\"Ind");
        assert_eq!(
            lines.next_line().unwrap(),
            Some(&b"{\"Index\":1,\"Events\":[]}"[..])
        );
        assert_eq!(lines.next_line().unwrap(), Some(&b"{}"[..]));
        assert!(lines.next_line().unwrap().is_none());

        // A server (or something in between) that never ends its line
        // gets an error once the line passes the bound, not unbounded
        // memory.
        let mut lines = LineBuf::default();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut error = None;
        for _ in 0..=MAX_LINE / chunk.len() {
            lines.push(&chunk);
            if let Err(e) = lines.next_line() {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("the bound holds");
        assert_eq!(
            error.to_string(),
            "Nomad sent a line longer than 64 MiB without its end"
        );
    }

    #[test]
    fn frames_heartbeats_and_garbage_parse_apart() {
        assert!(matches!(parse(b"{}"), Parsed::Heartbeat));
        assert!(matches!(parse(b"  \r"), Parsed::Heartbeat));
        assert!(matches!(
            parse(b"{\"Index\":5,\"Events\":[]}"),
            Parsed::Heartbeat
        ));
        match parse(b"{\"Index\":5") {
            Parsed::Invalid(reason) => {
                assert!(
                    reason.starts_with("Nomad sent a line that is not a frame: "),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Without a frame index, the first event's.
        match parse(br#"{"Events":[{"Index":9,"Topic":"Job"}]}"#) {
            Parsed::Events { index, events } => assert_eq!((index, events.len()), (9, 1)),
            other => panic!("{other:?}"),
        }
        let line = record_line("dc1", 2, &json!({"Topic": "Job"}));
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap(),
            json!({"origin": "dc1", "ordinal": 2, "event": {"Topic": "Job"}})
        );
    }
}
