//! The YAML shape of the `amqp` receiver and its validation into an
//! [`AmqpSpec`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, expanded};
use crate::mapping::Template;

/// `amqp`: CloudEvents to an AMQP 0-9-1 broker (RabbitMQ) with publisher
/// confirms.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AmqpSinkConfig {
    /// `amqp://user:password@host:5672/vhost` or `amqps://…` (`${…}`
    /// expanded; kept secret).
    pub url: Spanned<String>,
    /// The exchange, a template; empty for the default exchange (the
    /// routing key is then a queue name).
    #[serde(default)]
    pub exchange: Option<Spanned<String>>,
    /// The routing key, a template: `health.{{data.healthEvent.nodeName}}`.
    pub routing_key: Spanned<String>,
    /// An event no queue is bound for is not delivered: it is returned by
    /// the broker and retried (default). Off: the broker drops it.
    #[serde(default = "yes")]
    pub mandatory: bool,
    /// Persistent messages (delivery mode 2), kept across a broker restart
    /// in durable queues.
    #[serde(default = "yes")]
    pub persistent: bool,
    /// `structured` (the event as `application/cloudevents+json`) or
    /// `binary` (`cloudEvents:*` headers, the data as body).
    #[serde(default)]
    pub mode: AmqpMode,
    /// How long to wait for the broker (connect, confirms).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AmqpMode {
    #[default]
    Structured,
    Binary,
}

/// A validated `amqp` receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpSpec {
    pub url: Secret,
    pub exchange: Template,
    pub routing_key: Template,
    pub mandatory: bool,
    pub persistent: bool,
    pub mode: AmqpMode,
    pub timeout: std::time::Duration,
}

impl AmqpSinkConfig {
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<AmqpSpec> {
        let place = format!("{place}.amqp");
        let at = Some(self.url.referenced);
        let url = expanded(&self.url, &format!("{place}.url"), diags)?;
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            diags.error(at, format!("{place}.url: not an amqp:// or amqps:// URL"));
        }
        let template = |v: &Spanned<String>, key: &str, diags: &mut Diagnostics| {
            Template::compile(&v.value, metadata)
                .map_err(|e| diags.error(Some(v.referenced), format!("{place}.{key}: {e}")))
                .ok()
        };
        let exchange = match &self.exchange {
            Some(e) => template(e, "exchange", diags)?,
            None => Template::compile("", metadata).expect("an empty template compiles"),
        };
        let routing_key = template(&self.routing_key, "routingKey", diags)?;
        if self.timeout.0.is_zero() {
            diags.error(at, format!("{place}.timeout: must be greater than zero"));
        }
        Some(AmqpSpec {
            url: Secret(url),
            exchange,
            routing_key,
            mandatory: self.mandatory,
            persistent: self.persistent,
            mode: self.mode,
            timeout: self.timeout.0,
        })
    }
}
