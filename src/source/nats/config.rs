//! The YAML shape of `source.nats` (server, stream, durable consumer,
//! subjects, acknowledgement settings) and its validation.

use std::time::Duration as StdDuration;

use serde::Deserialize;

use crate::config::common::{Diagnostics, Duration, Spanned, expanded};
use crate::net::nats::{NatsServerConfig, NatsServerSpec, NatsTlsConfig};

/// `source.nats`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// The server(s): `nats://host:4222`, comma-separated for a cluster.
    pub url: Spanned<String>,
    /// The stream to read (it must exist: the publisher side creates it).
    pub stream: Spanned<String>,
    /// The durable consumer's name, the same in every worker that shares
    /// the work; created if missing.
    pub consumer: Spanned<String>,
    /// Only these subjects of the stream (wildcards allowed); default all.
    #[serde(default)]
    pub subjects: Vec<Spanned<String>>,
    /// How long JetStream waits for an acknowledgement (or a progress
    /// report) before it redelivers a message to any worker.
    #[serde(default = "default_ack_wait")]
    pub ack_wait: Duration,
    /// Messages handed to this consumer and not yet acknowledged, across
    /// all workers.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: i64,
    /// Messages asked for in one pull.
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default)]
    pub credentials_file: Option<Spanned<String>>,
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: NatsTlsConfig,
    /// How long to wait for the server (connect, requests).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ack_pending() -> i64 {
    10_000
}
fn default_batch() -> usize {
    500
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A validated `source.nats`.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSourceSpec {
    pub server: NatsServerSpec,
    pub stream: String,
    pub consumer: String,
    pub subjects: Vec<String>,
    pub ack_wait: StdDuration,
    pub max_ack_pending: i64,
    pub batch: usize,
}

impl NatsSourceConfig {
    pub fn compile(&self, diags: &mut Diagnostics) -> Option<NatsSourceSpec> {
        let place = "source.nats";
        let server = NatsServerConfig {
            url: &self.url,
            credentials_file: &self.credentials_file,
            user: &self.user,
            password: &self.password,
            token: &self.token,
            tls: &self.tls,
            timeout: self.timeout,
        }
        .compile(place, diags);
        let name = |v: &Spanned<String>, key: &str, diags: &mut Diagnostics| {
            let n = expanded(v, &format!("{place}.{key}"), diags)?;
            if n.is_empty() || n.contains(['.', '*', '>', ' ', '\t', '/', '\\']) {
                diags.error(
                    Some(v.referenced),
                    format!(
                        "{place}.{key}: {n:?} is not a JetStream name (no dots, wildcards, slashes or spaces)"
                    ),
                );
                return None;
            }
            Some(n)
        };
        let stream = name(&self.stream, "stream", diags);
        let consumer = name(&self.consumer, "consumer", diags);
        let mut subjects = Vec::new();
        for s in &self.subjects {
            if s.value.trim().is_empty() || s.value.contains(char::is_whitespace) {
                diags.error(
                    Some(s.referenced),
                    format!("{place}.subjects: {:?} is not a subject", s.value),
                );
            }
            subjects.push(s.value.clone());
        }
        let at = Some(self.url.referenced);
        if self.ack_wait.0 < StdDuration::from_secs(1) {
            diags.error(at, format!("{place}.ackWait: must be at least 1s"));
        }
        if self.max_ack_pending < 1 {
            diags.error(at, format!("{place}.maxAckPending: must be at least 1"));
        }
        if self.batch == 0 {
            diags.error(at, format!("{place}.batch: must be at least 1"));
        }
        Some(NatsSourceSpec {
            server: server?,
            stream: stream?,
            consumer: consumer?,
            subjects,
            ack_wait: self.ack_wait.0,
            max_ack_pending: self.max_ack_pending,
            batch: self.batch.max(1),
        })
    }
}
