//! The `redis` receiver: each event appended to a stream (`XADD`, optionally
//! trimmed with `MAXLEN ~`) or published on a channel (`PUBLISH`), the key
//! or channel rendered per event. A batch is one pipelined round trip; each
//! command's answer is that event's outcome (an entry id, or the error).
//!
//! Redis has no CloudEvents binding: a structured entry has one field,
//! `event` (the CloudEvent JSON); a binary entry has a field per attribute
//! and `data`. A retried batch may append an entry twice (`XADD` is not
//! idempotent): consumers deduplicate by the event `id`.

pub mod config;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use tracing::info;

use self::config::{RedisMode, RedisSpec, Target};
use super::{Delivery, Item, Sink, binding};
use crate::BoxFuture;

pub struct RedisSink {
    spec: RedisSpec,
    /// Made on first use; it reconnects by itself afterwards.
    connection: OnceCell<ConnectionManager>,
}

impl RedisSink {
    pub fn new(spec: &RedisSpec) -> Self {
        Self {
            spec: spec.clone(),
            connection: OnceCell::new(),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        self.connection
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.spec.url.0.as_str())
                    .map_err(|_| "url: not a redis:// URL".to_owned())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.spec.timeout))
                    .set_response_timeout(Some(self.spec.timeout))
                    .set_number_of_retries(1);
                // The error names what Redis said, never the URL (it may
                // hold a password).
                let manager = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?;
                info!("connected to Redis");
                Ok(manager)
            })
            .await
            .cloned()
    }

    /// The command for one event.
    fn command(&self, item: &Item) -> Result<redis::Cmd, String> {
        let json = || item.json().to_vec();
        Ok(match &self.spec.target {
            Target::Channel(channel) => {
                let channel = channel
                    .render(item.event())
                    .map_err(|e| format!("channel: {e}"))?;
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(channel).arg(json());
                cmd
            }
            Target::Stream { key, max_len } => {
                let key = key
                    .render(item.event())
                    .map_err(|e| format!("stream: {e}"))?;
                if key.is_empty() {
                    return Err("stream: the key is empty".into());
                }
                let mut cmd = redis::cmd("XADD");
                cmd.arg(key);
                if let Some(n) = max_len {
                    cmd.arg("MAXLEN").arg("~").arg(*n);
                }
                cmd.arg("*");
                match self.spec.mode {
                    RedisMode::Structured => {
                        cmd.arg("event").arg(json());
                    }
                    RedisMode::Binary => {
                        for (name, text) in binding::attributes(item.event()) {
                            cmd.arg(name).arg(text);
                        }
                        if let Some(t) = binding::content_type(item.event()) {
                            cmd.arg("datacontenttype").arg(t);
                        }
                        cmd.arg("data").arg(binding::data(item.event()));
                    }
                }
                cmd
            }
        })
    }
}

impl Sink for RedisSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let mut connection = match self.connection().await {
                Ok(c) => c,
                Err(e) => return Delivery::retry(e),
            };
            let mut outcomes = vec![Delivery::Delivered; items.len()];
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let mut sent = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match self.command(item) {
                    Ok(cmd) => {
                        pipe.add_command(cmd);
                        sent.push(i);
                    }
                    Err(reason) => outcomes[i] = Delivery::Reject(reason),
                }
            }
            if !sent.is_empty() {
                let answers: Vec<redis::RedisResult<redis::Value>> =
                    match pipe.query_async(&mut connection).await {
                        Ok(a) => a,
                        Err(e) => {
                            let reason = format!("Redis: {e}");
                            for &i in &sent {
                                outcomes[i] = Delivery::retry(reason.clone());
                            }
                            return Delivery::Each(outcomes);
                        }
                    };
                for (&i, answer) in sent.iter().zip(answers) {
                    if let Err(e) = answer {
                        outcomes[i] = classify(&e);
                    }
                }
            }
            Delivery::from_each(outcomes)
        })
    }
}

/// A command's error: the key holds another type (rejected: retrying cannot
/// help), anything else is retried.
fn classify(e: &redis::RedisError) -> Delivery {
    match e.code() {
        Some("WRONGTYPE") => {
            Delivery::Reject("Redis: the key holds a value of another type".into())
        }
        Some(code) => Delivery::retry(format!("Redis: {code}")),
        None => Delivery::retry(format!("Redis: {e}")),
    }
}
