//! The `amqp` receiver: each event published to a templated exchange and
//! routing key on an AMQP 0-9-1 broker (RabbitMQ), with publisher confirms:
//! an event counts as delivered only when the broker confirmed it (and, with
//! `mandatory`, routed it to a queue). A batch is published at once and its
//! confirms awaited together; outcomes are per event.
//!
//! The CloudEvents AMQP binding: `structured` sends the event JSON with
//! content type `application/cloudevents+json`; `binary` puts each attribute
//! in a `cloudEvents:<name>` header and the data in the body. The message id
//! is the event id.

pub mod config;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tracing::{info, warn};

use self::config::{AmqpMode, AmqpSpec};
use super::{Delivery, Item, Sink, binding};
use crate::BoxFuture;
use crate::event::AttributesReader;

const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";

pub struct AmqpSink {
    spec: AmqpSpec,
    /// The connection and its confirm-mode channel; made again after a
    /// failure (the client does not reconnect by itself).
    link: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpSink {
    pub fn new(spec: &AmqpSpec) -> Self {
        Self {
            spec: spec.clone(),
            link: Mutex::new(None),
        }
    }

    async fn channel(&self) -> Result<Channel, String> {
        let mut link = self.link.lock().await;
        if let Some((connection, channel)) = link.as_ref()
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        *link = None;
        let connect = async {
            // Errors name what the broker said, never the URL (it holds
            // the password).
            let connection = Connection::connect(&self.spec.url.0, ConnectionProperties::default())
                .await
                .map_err(|e| {
                    format!(
                        "cannot connect to the AMQP broker: {}",
                        hide(&e.to_string(), &self.spec.url.0)
                    )
                })?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| format!("AMQP channel: {e}"))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| format!("AMQP confirm mode: {e}"))?;
            Ok::<_, String>((connection, channel))
        };
        let (connection, channel) = tokio::time::timeout(self.spec.timeout, connect)
            .await
            .map_err(|_| format!("AMQP broker: no answer within {:?}", self.spec.timeout))??;
        info!("connected to the AMQP broker");
        *link = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Forgets the connection after a failure: the next delivery reconnects.
    async fn reset(&self) {
        *self.link.lock().await = None;
    }

    fn message(&self, item: &Item) -> Result<(String, String, BasicProperties, Vec<u8>), String> {
        let event = item.event();
        let exchange = self
            .spec
            .exchange
            .render(event)
            .map_err(|e| format!("exchange: {e}"))?;
        let routing_key = self
            .spec
            .routing_key
            .render(event)
            .map_err(|e| format!("routingKey: {e}"))?;
        if exchange.len() > 255 || routing_key.len() > 255 {
            return Err("exchange or routing key longer than 255 bytes".into());
        }
        let mut properties = BasicProperties::default()
            .with_message_id(ShortString::from(event.id()))
            .with_app_id(ShortString::from("switchyard"));
        if self.spec.persistent {
            properties = properties.with_delivery_mode(2);
        }
        let body = match self.spec.mode {
            AmqpMode::Structured => {
                properties = properties.with_content_type(ShortString::from(STRUCTURED));
                item.json().to_vec()
            }
            AmqpMode::Binary => {
                if let Some(t) = binding::content_type(event) {
                    properties = properties.with_content_type(ShortString::from(t));
                }
                let mut headers = FieldTable::default();
                for (name, text) in binding::attributes(event) {
                    headers.insert(
                        ShortString::from(format!("cloudEvents:{name}")),
                        AMQPValue::LongString(LongString::from(text)),
                    );
                }
                properties = properties.with_headers(headers);
                binding::data(event)
            }
        };
        Ok((exchange, routing_key, properties, body))
    }
}

impl Sink for AmqpSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let channel = match self.channel().await {
                Ok(c) => c,
                Err(e) => return Delivery::retry(e),
            };
            let mut outcomes = vec![Delivery::Delivered; items.len()];
            let mut confirms = Vec::with_capacity(items.len());
            let mut broken = false;
            // One deadline for the whole batch: publishes and confirms.
            let deadline = tokio::time::Instant::now() + self.spec.timeout;
            for (i, item) in items.iter().enumerate() {
                let (exchange, key, properties, body) = match self.message(item) {
                    Ok(m) => m,
                    Err(reason) => {
                        outcomes[i] = Delivery::Reject(reason);
                        continue;
                    }
                };
                let options = BasicPublishOptions {
                    mandatory: self.spec.mandatory,
                    ..Default::default()
                };
                let publish =
                    channel.basic_publish(exchange.into(), key.into(), options, &body, properties);
                match tokio::time::timeout_at(deadline, publish).await {
                    Ok(Ok(confirm)) => confirms.push((i, confirm)),
                    Ok(Err(e)) => {
                        broken = true;
                        outcomes[i] = Delivery::retry(format!("AMQP publish: {e}"));
                    }
                    Err(_) => {
                        broken = true;
                        outcomes[i] = Delivery::retry(format!(
                            "AMQP publish: not sent within {:?}",
                            self.spec.timeout
                        ));
                    }
                }
            }
            for (i, confirm) in confirms {
                outcomes[i] = match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(Confirmation::Ack(None))) => Delivery::Delivered,
                    Ok(Ok(Confirmation::Ack(Some(returned)))) => Delivery::retry(format!(
                        "the broker routed it to no queue ({})",
                        returned.reply_text
                    )),
                    Ok(Ok(Confirmation::Nack(_))) => {
                        Delivery::retry("the broker refused it (nack)")
                    }
                    Ok(Ok(Confirmation::NotRequested)) => Delivery::Delivered,
                    Ok(Err(e)) => {
                        broken = true;
                        Delivery::retry(format!("AMQP confirm: {e}"))
                    }
                    Err(_) => {
                        broken = true;
                        Delivery::retry(format!(
                            "AMQP confirm: none within {:?}",
                            self.spec.timeout
                        ))
                    }
                };
            }
            if broken {
                warn!("AMQP connection failed; reconnecting at the next delivery");
                self.reset().await;
            }
            Delivery::from_each(outcomes)
        })
    }
}

/// `message` without the URL or its password, should the client repeat them.
fn hide(message: &str, url: &str) -> String {
    let mut out = message.replace(url, "<url>");
    if let Ok(u) = url::Url::parse(url)
        && let Some(password) = u.password().filter(|p| !p.is_empty())
    {
        out = out.replace(password, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_never_show_the_url_or_its_password() {
        let url = "amqp://user:s3cret@broker:5672/%2f";
        let hidden = super::hide(&format!("bad uri {url}; auth s3cret refused"), url);
        assert_eq!(hidden, "bad uri <url>; auth *** refused");
    }
}
