//! The `nats` receiver: each event to a templated subject, in the CloudEvents
//! NATS protocol binding (structured: the event as
//! `application/cloudevents+json`; binary: `ce-*` headers and the data).
//!
//! With `jetstream`, every event of a batch is published at once and the
//! stream's acknowledgements are awaited together; an event counts as
//! delivered only with its ack, and `Nats-Msg-Id` (the event id) lets the
//! stream drop a retried duplicate. Core NATS has no acks: a batch counts
//! as delivered when a flush round trip shows the server has read it.
//! Outcomes are per event ([`Delivery::Each`]): an event whose subject
//! cannot be made is rejected alone.

pub mod config;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use tokio::sync::OnceCell;
use tracing::info;

use self::config::{NatsMode, NatsSpec, check_subject};
use super::{Delivery, Item, Sink, binding};
use crate::BoxFuture;
use crate::event::AttributesReader;

const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";

struct Connection {
    client: Client,
    jetstream: Option<jetstream::Context>,
}

pub struct NatsSink {
    spec: NatsSpec,
    /// Made on first use (and again after a failed attempt); the client
    /// reconnects by itself afterwards.
    connection: OnceCell<Connection>,
}

impl NatsSink {
    pub fn new(spec: &NatsSpec) -> Self {
        Self {
            spec: spec.clone(),
            connection: OnceCell::new(),
        }
    }

    async fn connection(&self) -> Result<&Connection, String> {
        self.connection
            .get_or_try_init(|| async {
                let client = self.spec.server.connect().await?;
                info!(jetstream = self.spec.jetstream, "connected to NATS");
                let jetstream = self.spec.jetstream.then(|| {
                    let mut context = jetstream::new(client.clone());
                    context.set_timeout(self.spec.server.timeout);
                    context
                });
                Ok(Connection { client, jetstream })
            })
            .await
    }

    /// The subject, headers and payload of one event.
    fn message(&self, item: &Item) -> Result<(String, HeaderMap, Bytes), String> {
        let subject = self
            .spec
            .subject
            .render(item.event())
            .map_err(|e| format!("subject: {e}"))?;
        check_subject(&subject).map_err(|e| format!("subject: {e}"))?;
        let mut headers = HeaderMap::new();
        let payload = match self.spec.mode {
            NatsMode::Structured => {
                headers.insert("content-type", STRUCTURED);
                item.json().clone()
            }
            NatsMode::Binary => {
                if let Some(t) = binding::content_type(item.event()) {
                    headers.insert("content-type", t);
                }
                for (name, text) in binding::attributes(item.event()) {
                    headers.insert(format!("ce-{name}").as_str(), text.as_str());
                }
                Bytes::from(binding::data(item.event()))
            }
        };
        Ok((subject, headers, payload))
    }
}

impl Sink for NatsSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let connection = match self.connection().await {
                Ok(c) => c,
                Err(e) => return Delivery::retry(e),
            };
            let mut outcomes = vec![Delivery::Delivered; items.len()];
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match self.message(item) {
                    Ok(m) => messages.push((i, m)),
                    Err(reason) => outcomes[i] = Delivery::Reject(reason),
                }
            }
            match &connection.jetstream {
                Some(js) => publish_acked(js, items, messages, &mut outcomes).await,
                None => {
                    publish_flushed(
                        &connection.client,
                        messages,
                        &mut outcomes,
                        self.spec.server.timeout,
                    )
                    .await
                }
            }
            Delivery::from_each(outcomes)
        })
    }
}

type Message = (usize, (String, HeaderMap, Bytes));

/// JetStream: all published, then every ack awaited.
async fn publish_acked(
    js: &jetstream::Context,
    items: &[Item],
    messages: Vec<Message>,
    outcomes: &mut [Delivery],
) {
    let mut acks = Vec::with_capacity(messages.len());
    for (i, (subject, headers, payload)) in messages {
        let message = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(items[i].event().id());
        match js.send_publish(subject, message).await {
            Ok(ack) => acks.push((i, ack)),
            Err(e) => outcomes[i] = publish_failed(e.kind()),
        }
    }
    for (i, ack) in acks {
        if let Err(e) = ack.await {
            outcomes[i] = publish_failed(e.kind());
        }
    }
}

fn publish_failed(kind: PublishErrorKind) -> Delivery {
    match kind {
        PublishErrorKind::MaxPayloadExceeded => {
            Delivery::Reject("the event is larger than the server's max_payload".into())
        }
        PublishErrorKind::StreamNotFound => {
            Delivery::retry("no JetStream stream captures the subject")
        }
        kind => Delivery::retry(format!("JetStream publish: {kind}")),
    }
}

/// Core NATS: all published, then one flush (a PING/PONG round trip).
async fn publish_flushed(
    client: &Client,
    messages: Vec<Message>,
    outcomes: &mut [Delivery],
    timeout: std::time::Duration,
) {
    let mut sent = Vec::with_capacity(messages.len());
    for (i, (subject, headers, payload)) in messages {
        match client.publish_with_headers(subject, headers, payload).await {
            Ok(()) => sent.push(i),
            Err(e) => outcomes[i] = Delivery::retry(format!("NATS publish: {}", e.kind())),
        }
    }
    let flushed = match tokio::time::timeout(timeout, client.flush()).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("NATS flush: {}", e.kind()),
        Err(_) => format!("NATS flush: no answer within {timeout:?}"),
    };
    for i in sent {
        outcomes[i] = Delivery::retry(flushed.clone());
    }
}
