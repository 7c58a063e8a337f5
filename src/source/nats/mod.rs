//! `source.nats`: a durable JetStream pull consumer, the worker side of the
//! scale-out topology (one leader publishes to a stream with the `nats`
//! receiver; N workers share one consumer and split the messages).
//!
//! JetStream keeps the position: each message is acknowledged on its own,
//! only once every receiver it was routed to finished with it (delivered,
//! rejected or dead-lettered), through the record's completion hook. Until
//! then it is reported "in progress" every third of `ackWait`, so a slow
//! receiver (retrying for an hour) does not make JetStream hand the message
//! to another worker. A worker that dies leaves its messages unacknowledged
//! and JetStream redelivers them to the others after `ackWait`.
//!
//! Messages are CloudEvents in the NATS binding, as the `nats` receiver
//! writes them: structured (the payload is the event JSON) or binary
//! (`ce-*` headers, the payload the data); a binary message is turned into
//! the structured JSON here, so the `cloudevents` mapping profile (the
//! default for this source) reads both.
//!
//! `config.rs`: the `source.nats` settings.

mod config;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_nats::jetstream::{self, AckKind, Context, consumer::pull, message::Acker};
use async_nats::{HeaderMap, Subject};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use super::{Done, Payload, Record, Source, SourceContext, SourceError};
use crate::BoxFuture;
use crate::state::{PositionStore, StateError};

pub use config::{NatsSourceConfig, NatsSourceSpec};

pub struct NatsSource {
    pub spec: NatsSourceSpec,
}

/// Messages handed to the pipeline and not yet finished: their reply
/// subjects (what acknowledges them), by stream sequence.
type InFlight = Arc<Mutex<HashMap<u64, Subject>>>;

impl Source for NatsSource {
    fn position_store(
        &self,
        _state: &crate::state::StateSpec,
    ) -> Result<Option<Arc<dyn PositionStore>>, StateError> {
        // JetStream keeps the consumer's position.
        Ok(None)
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            let mut wait = StdDuration::from_millis(250);
            // Across reconnections: messages read before one are still
            // reported in progress (and acknowledged) through the next.
            let in_flight: InFlight = Arc::default();
            loop {
                match self.consume(&ctx, &in_flight).await {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        ctx.stats.connected.store(false, Ordering::Relaxed);
                        ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        warn!(error = %e, retry_in = ?wait, "JetStream consumer unavailable");
                        tokio::select! {
                            _ = ctx.shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                        wait = (wait * 2).min(StdDuration::from_secs(30));
                    }
                }
            }
        })
    }
}

impl NatsSource {
    /// Reads until shutdown (`Ok`) or a failure to retry (`Err`).
    async fn consume(&self, ctx: &SourceContext, in_flight: &InFlight) -> Result<(), String> {
        let spec = &self.spec;
        let client = spec.server.connect().await?;
        let mut js = jetstream::new(client);
        js.set_timeout(spec.server.timeout);
        let stream = js
            .get_stream(&spec.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", spec.stream))?;
        let config = pull::Config {
            durable_name: Some(spec.consumer.clone()),
            filter_subjects: spec.subjects.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_ack_pending: spec.max_ack_pending,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&spec.consumer, config)
            .await
            .map_err(|e| format!("consumer {}: {e}", spec.consumer))?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(spec.batch)
            .heartbeat(StdDuration::from_secs(5))
            .messages()
            .await
            .map_err(|e| format!("pull from consumer {}: {e}", spec.consumer))?;
        info!(stream = %spec.stream, consumer = %spec.consumer, "reading JetStream");
        ctx.stats.connected.store(true, Ordering::Relaxed);

        let (acks, ack_rx) = tokio::sync::mpsc::unbounded_channel();
        // Both outlive this call: records still in the pipeline after a
        // reconnect or at shutdown are acknowledged as they finish.
        tokio::spawn(acknowledge(js.clone(), ack_rx));
        let progress = tokio::spawn(report_progress(
            js.clone(),
            in_flight.clone(),
            spec.ack_wait / 3,
        ));
        let _stop_progress = AbortOnDrop(progress);

        // The client reconnects by itself and the pull goes on after an
        // error; several in a row (a deleted consumer) make a fresh start.
        let mut errors = 0;
        loop {
            let message = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            let message = match message {
                None => return Err("the consumer's message stream ended".into()),
                Some(Err(e)) => {
                    errors += 1;
                    if errors >= 5 {
                        return Err(format!("JetStream pull: {e}"));
                    }
                    warn!(error = %e, "JetStream pull");
                    continue;
                }
                Some(Ok(m)) => {
                    errors = 0;
                    m
                }
            };
            let (sequence, delivered) = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(e) => {
                    warn!(error = %e, "a JetStream message without its metadata; skipped");
                    continue;
                }
            };
            if delivered > 1 {
                debug!(sequence, delivered, "redelivered message");
            }
            // The reply subject is what acknowledges the message.
            let Some(reply) = message.reply.clone() else {
                warn!(
                    sequence,
                    "a JetStream message without a reply subject; skipped"
                );
                continue;
            };
            in_flight
                .lock()
                .expect("in-flight lock")
                .insert(sequence, reply.clone());
            let payload = match payload(message.headers.as_ref(), &message.payload) {
                Ok(line) => Payload::Line(line),
                Err(reason) => Payload::Invalid(reason),
            };
            let done = {
                let in_flight = in_flight.clone();
                let acks = acks.clone();
                Done(Box::new(move || {
                    in_flight.lock().expect("in-flight lock").remove(&sequence);
                    let _ = acks.send(reply);
                }))
            };
            let record = Record {
                payload,
                position: None,
                done: Some(done),
            };
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                sent = ctx.out.send(record) => {
                    if sent.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Acknowledges finished messages, until every record holding a hook is gone.
async fn acknowledge(js: Context, mut finished: tokio::sync::mpsc::UnboundedReceiver<Subject>) {
    let mut batch = Vec::with_capacity(256);
    while finished.recv_many(&mut batch, 256).await > 0 {
        for reply in batch.drain(..) {
            if let Err(e) = Acker::new(js.clone(), Some(reply)).ack().await {
                // Not acknowledged: JetStream redelivers it after ackWait.
                warn!(error = %e, "cannot acknowledge a JetStream message");
            }
        }
    }
}

/// Tells JetStream that the messages still in the pipeline are being
/// worked on, so that it does not redeliver them elsewhere.
async fn report_progress(js: Context, in_flight: InFlight, every: StdDuration) {
    let mut ticker = tokio::time::interval(every.max(StdDuration::from_millis(100)));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let replies: Vec<Subject> = in_flight
            .lock()
            .expect("in-flight lock")
            .values()
            .cloned()
            .collect();
        for reply in replies {
            let _ = Acker::new(js.clone(), Some(reply))
                .ack_with(AckKind::Progress)
                .await;
        }
    }
}

/// The record for a message: a structured event as it is; a binary one
/// (`ce-specversion` header) made structured from its headers and data.
fn payload(headers: Option<&HeaderMap>, body: &[u8]) -> Result<Vec<u8>, String> {
    let Some(headers) = headers.filter(|h| h.get("ce-specversion").is_some()) else {
        return Ok(body.to_vec());
    };
    let mut event = Map::new();
    let mut content_type = None;
    for (name, values) in headers.iter() {
        let name = AsRef::<str>::as_ref(name).to_ascii_lowercase();
        let Some(value) = values.first() else {
            continue;
        };
        let value = value.as_str().to_owned();
        if let Some(attribute) = name.strip_prefix("ce-") {
            event.insert(attribute.to_owned(), Value::String(value));
        } else if name == "content-type" {
            content_type = Some(value);
        }
    }
    let json = content_type
        .as_deref()
        .is_none_or(|t| t.starts_with("application/json") || t.contains("+json"));
    if let Some(t) = &content_type {
        event.insert("datacontenttype".into(), Value::String(t.clone()));
    }
    if !body.is_empty() {
        if json {
            let data: Value = serde_json::from_slice(body).map_err(|e| {
                format!("binary-mode data is not the JSON its content type says: {e}")
            })?;
            event.insert("data".into(), data);
        } else {
            match std::str::from_utf8(body) {
                Ok(text) => event.insert("data".into(), Value::String(text.to_owned())),
                Err(_) => event.insert(
                    "data_base64".into(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
                ),
            };
        }
    }
    Ok(serde_json::to_vec(&Value::Object(event)).expect("JSON serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_messages_become_structured_events() {
        let mut headers = HeaderMap::new();
        headers.insert("ce-specversion", "1.0");
        headers.insert("ce-id", "abc");
        headers.insert("ce-type", "com.nvidia.nvsentinel.health.v1");
        headers.insert("ce-source", "nvsentinel://c1");
        headers.insert("content-type", "application/json");
        let line = payload(Some(&headers), br#"{"healthEvent":{"nodeName":"n1"}}"#).unwrap();
        let event: cloudevents::Event = serde_json::from_slice(&line).unwrap();
        use cloudevents::AttributesReader;
        assert_eq!(event.id(), "abc");
        assert_eq!(event.datacontenttype(), Some("application/json"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["data"]["healthEvent"]["nodeName"], "n1");
    }

    #[test]
    fn structured_messages_pass_as_they_are() {
        let body = br#"{"specversion":"1.0"}"#;
        assert_eq!(payload(None, body).unwrap(), body);
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/cloudevents+json");
        assert_eq!(payload(Some(&headers), body).unwrap(), body);
    }

    #[test]
    fn binary_data_that_is_not_json_or_text() {
        let mut headers = HeaderMap::new();
        headers.insert("ce-specversion", "1.0");
        headers.insert("content-type", "application/octet-stream");
        let line = payload(Some(&headers), &[0xff, 0x00, 0x10]).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["data_base64"], "/wAQ");
        let mut headers = HeaderMap::new();
        headers.insert("ce-specversion", "1.0");
        assert!(payload(Some(&headers), b"{not json").is_err());
    }
}
