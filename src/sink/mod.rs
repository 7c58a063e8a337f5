//! Receivers (sinks). A sink takes a batch of events and answers with one
//! [`Delivery`]: delivered, retry later, or rejected for good. The pipeline
//! owns queues, batching, concurrency, retries, dead letters and
//! acknowledgements; a sink only delivers.

pub mod amqp;
pub mod binding;
mod file;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod nats;
pub mod redis;
pub mod status;
mod stdout;
mod tls;
mod wasm;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use crate::BoxFuture;
use crate::config::{ReceiverKind, ReceiverSpec};
use crate::event::Event;

pub use file::FileSink;
pub use stdout::StdoutSink;
pub use wasm::WasmSink;

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver has the events.
    Delivered,
    /// A transient failure: try the same events again later, not before
    /// `after` if the receiver said so (`Retry-After`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The receiver will never accept these events.
    Reject(String),
    /// One outcome per event, in order, for receivers that acknowledge each
    /// event (a broker's per-message acks): the delivered ones are done,
    /// the rest are retried or dead-lettered on their own.
    Each(Vec<Delivery>),
}

impl Delivery {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// Per-event outcomes, or `Delivered` when every event was.
    pub fn from_each(outcomes: Vec<Delivery>) -> Self {
        if outcomes.iter().all(|o| *o == Self::Delivered) {
            Self::Delivered
        } else {
            Self::Each(outcomes)
        }
    }

    /// One outcome for the whole batch: delivered if every event was, else
    /// a retry if any event may be retried, else the first rejection.
    pub fn overall(self) -> Self {
        let Self::Each(each) = self else { return self };
        let mut outcome = Self::Delivered;
        for d in each.into_iter().map(Self::overall) {
            match (&outcome, d) {
                (_, Self::Delivered) | (Self::Retry { .. }, Self::Reject(_)) => {}
                (_, d @ Self::Retry { .. }) if !matches!(outcome, Self::Retry { .. }) => {
                    outcome = d
                }
                (Self::Delivered, d) => outcome = d,
                _ => {}
            }
        }
        outcome
    }
}

/// One event handed to a sink, with its structured-mode JSON when the sink
/// asked for it ([`Sink::wants_json`]); the pipeline encodes it once, which
/// is also how batch byte limits are measured.
#[derive(Debug, Clone)]
pub struct Item {
    pub event: Arc<Event>,
    pub json: Option<Vec<u8>>,
    /// The delivery attempt's span, when tracing: what a sink sends as its
    /// transport's trace header (HTTP's `traceparent`). Without it, the
    /// event's own `traceparent` extension is sent on.
    pub trace: Option<crate::event::trace::TraceParent>,
}

/// A receiver. Deliveries may run concurrently (up to the receiver's
/// concurrency), so a sink is shared.
pub trait Sink: Send + Sync {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery>;

    /// Whether items should carry their structured-mode JSON.
    fn wants_json(&self) -> bool {
        false
    }

    /// The OAuth2 token source, for receivers that use one (its counters
    /// become metrics).
    fn tokens(&self) -> Option<&Arc<http::oauth2::TokenSource>> {
        None
    }

    /// The WebAssembly plugin delivering, for `wasm` receivers.
    fn plugin(&self) -> Option<&Arc<crate::plugin::Plugin>> {
        None
    }
}

/// Why a sink could not be built (e.g. a TLS file vanished since validation).
#[derive(Debug, thiserror::Error)]
#[error("receiver {receiver}: {reason}")]
pub struct BuildError {
    pub receiver: String,
    pub reason: String,
}

/// Builds the sink for a receiver; a `wasm` receiver's plugin comes from
/// `plugins` (loaded by [`crate::plugin::Plugins::load`]).
pub fn build(
    spec: &ReceiverSpec,
    plugins: &crate::plugin::Plugins,
) -> Result<Arc<dyn Sink>, BuildError> {
    Ok(match &spec.kind {
        ReceiverKind::Stdout => Arc::new(StdoutSink::new()),
        ReceiverKind::File {
            path,
            max_size,
            max_files,
        } => Arc::new(FileSink::new(path.clone(), *max_size, *max_files)),
        ReceiverKind::Http(h) => Arc::new(http::HttpSink::new(h).map_err(|reason| BuildError {
            receiver: spec.name.clone(),
            reason,
        })?),
        ReceiverKind::Wasm(p) => {
            Arc::new(WasmSink::new(plugins.get(&p.place).ok_or_else(|| {
                BuildError {
                    receiver: spec.name.clone(),
                    reason: format!("plugin {} was not loaded", p.path.display()),
                }
            })?))
        }
        ReceiverKind::Nats(n) => Arc::new(nats::NatsSink::new(n)),
        ReceiverKind::Amqp(a) => Arc::new(amqp::AmqpSink::new(a)),
        ReceiverKind::Redis(r) => Arc::new(self::redis::RedisSink::new(r)),
        ReceiverKind::Mqtt(m) => Arc::new(mqtt::MqttSink::new(m)),
        ReceiverKind::Kafka(k) => Arc::new(kafka::KafkaSink::new(k)),
        ReceiverKind::Webhook(w) => {
            Arc::new(webhook::WebhookSink::new(w).map_err(|reason| BuildError {
                receiver: spec.name.clone(),
                reason,
            })?)
        }
    })
}

/// Writes the items' JSON as lines into `buf`.
pub fn write_json_lines(items: &[Item], buf: &mut Vec<u8>) {
    buf.clear();
    for item in items {
        match &item.json {
            Some(json) => buf.extend_from_slice(json),
            None => crate::event::write_json(&item.event, buf),
        }
        buf.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::Delivery::{self, *};

    #[test]
    fn overall_folds_per_event_outcomes() {
        let retry = || Delivery::retry("busy");
        let reject = || Reject("bad".into());
        assert_eq!(Each(vec![Delivered, Delivered]).overall(), Delivered);
        assert_eq!(Each(vec![Delivered, reject(), retry()]).overall(), retry());
        assert_eq!(Each(vec![reject(), Delivered]).overall(), reject());
        assert_eq!(Each(vec![]).overall(), Delivered);
        assert_eq!(retry().overall(), retry());
    }
}
