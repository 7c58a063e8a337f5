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

pub mod config;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::BoxFuture;
use crate::config::common::{Diagnostics, Spanned};
use crate::deadletter::DeadLetterConfig;
use crate::event::{Encoded, Event};
use crate::plugin::{Plugin, PluginSpec};
use crate::transform::TransformConfig;
pub use config::{
    BatchSpec, BufferConfig, BufferSpec, BufferType, QueueConfig, QueueSpec, ReceiverSpec,
    RetryConfig, WhenFull,
};
use http::oauth2::TokenSource;

pub use file::FileSink;
pub use stdout::StdoutSink;
pub use wasm::WasmSink;

// The registry of receiver kinds. Adding one: its folder (config.rs with
// its YAML shape and `compile`, mod.rs with the sink), then here a field of
// `ReceiverConfig`, an entry of `kinds`, a variant of `ReceiverKind`, an arm
// of `compile_kind` and one of `build` (docs/ARCHITECTURE.md, "Adding a
// receiver").

/// A named receiver: exactly one kind key, plus settings shared by all kinds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The name that routes refer to. Unique.
    pub name: Spanned<String>,
    /// Write each event as one structured-mode CloudEvent JSON line to stdout.
    #[serde(default)]
    pub stdout: Option<stdout::StdoutConfig>,
    /// Append each event as a JSON line to a file, with size-based rotation.
    #[serde(default)]
    pub file: Option<file::FileSinkConfig>,
    /// POST CloudEvents to an HTTP endpoint (structured, binary or batch mode).
    #[serde(default)]
    pub http: Option<http::config::HttpSinkConfig>,
    /// One request per event with a templated payload (Slack, Teams, …).
    #[serde(default)]
    pub webhook: Option<webhook::config::WebhookSinkConfig>,
    /// Publish to NATS subjects (core NATS, or JetStream with acks).
    #[serde(default)]
    pub nats: Option<nats::config::NatsSinkConfig>,
    /// Publish to an AMQP 0-9-1 broker (RabbitMQ) with publisher confirms.
    #[serde(default)]
    pub amqp: Option<amqp::config::AmqpSinkConfig>,
    /// Produce to Kafka topics (acks from all in-sync replicas).
    #[serde(default)]
    pub kafka: Option<kafka::config::KafkaSinkConfig>,
    /// Publish to MQTT topics (MQTT 5 or 3.1.1, QoS 1 with acks).
    #[serde(default)]
    pub mqtt: Option<mqtt::config::MqttSinkConfig>,
    /// Append to a Redis stream (`XADD`) or publish on a channel.
    #[serde(default)]
    pub redis: Option<redis::config::RedisSinkConfig>,
    /// A receiver written as a WebAssembly component (world `sink`).
    #[serde(default)]
    pub wasm: Option<Spanned<crate::plugin::config::WasmConfig>>,
    /// WebAssembly transforms applied to this receiver's events before
    /// delivery, in order.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// The receiver's queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Where its events wait: in memory (the queue) or on disk.
    #[serde(default)]
    pub buffer: Option<Spanned<BufferConfig>>,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Where events go after `retry.maxRetries` failed attempts or a
    /// rejection. Without it, a failing receiver retries for ever and holds
    /// the source position back.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

/// A receiver's kind compiled, with the delivery defaults it brings.
pub struct KindSpec {
    pub kind: ReceiverKind,
    /// How its queue is grouped into deliveries; `None`: `queue.maxBatch`
    /// events at a time.
    pub batch: Option<BatchSpec>,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl ReceiverConfig {
    /// Every kind key with whether it is set, in the order messages name them.
    pub fn kinds(&self) -> [(&'static str, bool); 10] {
        [
            ("stdout", self.stdout.is_some()),
            ("file", self.file.is_some()),
            ("http", self.http.is_some()),
            ("webhook", self.webhook.is_some()),
            ("nats", self.nats.is_some()),
            ("redis", self.redis.is_some()),
            ("amqp", self.amqp.is_some()),
            ("mqtt", self.mqtt.is_some()),
            ("kafka", self.kafka.is_some()),
            ("wasm", self.wasm.is_some()),
        ]
    }

    /// Compiles the kind that is set (exactly one, checked before).
    fn compile_kind(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<KindSpec> {
        let one_at_a_time = BatchSpec {
            max_events: 1,
            max_bytes: None,
            max_wait: std::time::Duration::ZERO,
        };
        // Brokers await acks per batch: a few batches in flight keep the
        // broker (or a Kafka topic's partitions) busy while one waits.
        let broker = |kind| KindSpec {
            kind,
            batch: None,
            concurrency: 4,
        };
        Some(if let Some(f) = &self.file {
            KindSpec {
                kind: f.compile(place, diags)?,
                batch: None,
                concurrency: 1,
            }
        } else if let Some(h) = &self.http {
            let (spec, batch, concurrency) = h.compile(place, diags)?;
            KindSpec {
                kind: ReceiverKind::Http(Box::new(spec)),
                batch: Some(batch),
                concurrency,
            }
        } else if let Some(w) = &self.webhook {
            let (spec, concurrency) = w.compile(place, metadata, diags)?;
            KindSpec {
                kind: ReceiverKind::Webhook(Box::new(spec)),
                batch: Some(one_at_a_time),
                concurrency,
            }
        } else if let Some(n) = &self.nats {
            broker(ReceiverKind::Nats(Box::new(
                n.compile(place, metadata, diags)?,
            )))
        } else if let Some(a) = &self.amqp {
            broker(ReceiverKind::Amqp(Box::new(
                a.compile(place, metadata, diags)?,
            )))
        } else if let Some(k) = &self.kafka {
            broker(ReceiverKind::Kafka(Box::new(
                k.compile(place, metadata, diags)?,
            )))
        } else if let Some(m) = &self.mqtt {
            broker(ReceiverKind::Mqtt(Box::new(
                m.compile(place, metadata, diags)?,
            )))
        } else if let Some(x) = &self.redis {
            broker(ReceiverKind::Redis(Box::new(
                x.compile(place, metadata, diags)?,
            )))
        } else if let Some(w) = &self.wasm {
            let spec = w.value.compile(
                &format!("{place}.wasm"),
                crate::plugin::config::DEFAULT_SINK_TIMEOUT,
                diags,
            )?;
            KindSpec {
                kind: ReceiverKind::Wasm(Box::new(spec)),
                batch: Some(BatchSpec {
                    max_events: self.queue.max_batch.max(1),
                    ..one_at_a_time
                }),
                concurrency: 1,
            }
        } else {
            KindSpec {
                kind: ReceiverKind::Stdout,
                batch: None,
                concurrency: 1,
            }
        })
    }
}

/// The receiver kinds, resolved: what [`build`] makes a sink of.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Stdout,
    Http(Box<http::config::HttpSpec>),
    Webhook(Box<webhook::config::WebhookSpec>),
    File {
        path: PathBuf,
        max_size: u64,
        max_files: u32,
    },
    Wasm(Box<PluginSpec>),
    Nats(Box<nats::config::NatsSpec>),
    Redis(Box<redis::config::RedisSpec>),
    Mqtt(Box<mqtt::config::MqttSpec>),
    Kafka(Box<kafka::config::KafkaSpec>),
    Amqp(Box<amqp::config::AmqpSpec>),
}

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

/// One event handed to a sink: its structured-mode JSON, encoded once for
/// every receiver (also how batch byte limits are measured), and the event.
#[derive(Debug, Clone)]
pub struct Item {
    pub encoded: Arc<Encoded>,
    /// The delivery attempt's span, when tracing: what a sink sends as its
    /// transport's trace header (HTTP's `traceparent`). Without it, the
    /// event's own `traceparent` extension is sent on.
    pub trace: Option<crate::event::trace::TraceParent>,
}

impl Item {
    pub fn new(encoded: Arc<Encoded>) -> Self {
        Self {
            encoded,
            trace: None,
        }
    }

    /// The event (read back from its JSON if the pipeline did not keep it:
    /// see [`Sink::wants_event`]).
    pub fn event(&self) -> &Event {
        self.encoded.event()
    }

    /// Its structured-mode JSON.
    pub fn json(&self) -> &bytes::Bytes {
        self.encoded.json()
    }
}

/// A receiver. Deliveries may run concurrently (up to the receiver's
/// concurrency), so a sink is shared.
pub trait Sink: Send + Sync {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery>;

    /// Whether the sink reads events' attributes or data, not only their
    /// JSON: then the pipeline keeps each event it mapped for it, instead of
    /// letting it go once encoded (and reading it back should it be asked).
    fn wants_event(&self) -> bool {
        true
    }
}

/// A receiver's sink as [`build`] made it, with the parts of it that the
/// topology keeps for telemetry.
pub struct Built {
    pub sink: Arc<dyn Sink>,
    /// Its OAuth2 token source (`http` and `webhook` with `oauth2`), whose
    /// counters become metrics.
    pub tokens: Option<Arc<TokenSource>>,
    /// The plugin that delivers (`wasm`), whose counters become metrics.
    pub plugin: Option<Arc<Plugin>>,
}

impl Built {
    /// A sink with no parts to show (one a test gives the pipeline).
    pub fn plain(sink: Arc<dyn Sink>) -> Self {
        Self {
            sink,
            tokens: None,
            plugin: None,
        }
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
pub fn build(spec: &ReceiverSpec, plugins: &crate::plugin::Plugins) -> Result<Built, BuildError> {
    let fail = |reason: String| BuildError {
        receiver: spec.name.clone(),
        reason,
    };
    Ok(match &spec.kind {
        ReceiverKind::Stdout => Built::plain(Arc::new(StdoutSink::new())),
        ReceiverKind::File {
            path,
            max_size,
            max_files,
        } => Built::plain(Arc::new(FileSink::new(path.clone(), *max_size, *max_files))),
        ReceiverKind::Http(h) => {
            let sink = http::HttpSink::new(h).map_err(fail)?;
            let tokens = sink.tokens().cloned();
            Built {
                tokens,
                ..Built::plain(Arc::new(sink))
            }
        }
        ReceiverKind::Webhook(w) => {
            let sink = webhook::WebhookSink::new(w).map_err(fail)?;
            let tokens = sink.tokens().cloned();
            Built {
                tokens,
                ..Built::plain(Arc::new(sink))
            }
        }
        ReceiverKind::Wasm(p) => {
            let plugin = plugins
                .get(&p.place)
                .ok_or_else(|| fail(format!("plugin {} was not loaded", p.path.display())))?;
            Built {
                plugin: Some(plugin.clone()),
                ..Built::plain(Arc::new(WasmSink::new(plugin)))
            }
        }
        ReceiverKind::Nats(n) => Built::plain(Arc::new(nats::NatsSink::new(n))),
        ReceiverKind::Amqp(a) => Built::plain(Arc::new(amqp::AmqpSink::new(a))),
        ReceiverKind::Redis(r) => Built::plain(Arc::new(self::redis::RedisSink::new(r))),
        ReceiverKind::Mqtt(m) => Built::plain(Arc::new(mqtt::MqttSink::new(m))),
        ReceiverKind::Kafka(k) => Built::plain(Arc::new(kafka::KafkaSink::new(k))),
    })
}

/// Writes the items' JSON as lines into `buf`.
pub fn write_json_lines(items: &[Item], buf: &mut Vec<u8>) {
    buf.clear();
    for item in items {
        buf.extend_from_slice(item.json());
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
