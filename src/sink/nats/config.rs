//! The YAML shape of the `nats` receiver and its validation into a
//! [`NatsSpec`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::mapping::Template;
pub use crate::net::nats::{NatsServerConfig, NatsServerSpec, NatsTlsConfig};

/// `nats`: CloudEvents to NATS subjects (the CloudEvents NATS protocol
/// binding), core NATS or JetStream with acknowledgements.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// The server(s): `nats://host:4222`, comma-separated for a cluster
    /// (`${…}` expanded; credentials in the URL are kept secret).
    pub url: Spanned<String>,
    /// The subject of each event, a template: `health.{{data.healthEvent.nodeName}}`.
    pub subject: Spanned<String>,
    /// Publish to JetStream and count an event delivered only when its
    /// stream acknowledged it (the `Nats-Msg-Id` header is the event id, so
    /// the stream drops a retried duplicate). Without it, core NATS: the
    /// server has the batch when a flush round trip returns.
    #[serde(default)]
    pub jetstream: bool,
    /// `structured` (the event as `application/cloudevents+json`) or
    /// `binary` (`ce-*` headers, the data as payload).
    #[serde(default)]
    pub mode: NatsMode,
    /// A `.creds` file (JWT and NKey seed).
    #[serde(default)]
    pub credentials_file: Option<Spanned<String>>,
    /// User name (with `password`).
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    /// Password (`${…}` expanded).
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// Token (`${…}` expanded).
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// TLS: a CA to trust, a client certificate, and whether to require TLS.
    #[serde(default)]
    pub tls: NatsTlsConfig,
    /// How long to wait for the server (connect, flush, acks).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NatsMode {
    #[default]
    Structured,
    Binary,
}

/// A validated `nats` receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSpec {
    pub server: NatsServerSpec,
    pub subject: Template,
    pub jetstream: bool,
    pub mode: NatsMode,
}

impl NatsSinkConfig {
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<NatsSpec> {
        let place = format!("{place}.nats");
        let server = NatsServerConfig {
            url: &self.url,
            credentials_file: &self.credentials_file,
            user: &self.user,
            password: &self.password,
            token: &self.token,
            tls: &self.tls,
            timeout: self.timeout,
        }
        .compile(&place, diags);
        let subject = match Template::compile(&self.subject.value, metadata) {
            Ok(t) => t,
            Err(e) => {
                diags.error(
                    Some(self.subject.referenced),
                    format!("{place}.subject: {e}"),
                );
                return None;
            }
        };
        if let Some(constant) = subject.as_constant()
            && let Err(e) = check_subject(constant)
        {
            diags.error(
                Some(self.subject.referenced),
                format!("{place}.subject: {e}"),
            );
        }
        Some(NatsSpec {
            server: server?,
            subject,
            jetstream: self.jetstream,
            mode: self.mode,
        })
    }
}

/// A subject NATS accepts for publishing: dot-separated non-empty tokens,
/// no whitespace, no wildcards.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    if subject.chars().any(char::is_whitespace) {
        return Err(format!("{subject:?} contains whitespace"));
    }
    for token in subject.split('.') {
        match token {
            "" => return Err(format!("{subject:?} has an empty token")),
            "*" | ">" => {
                return Err(format!(
                    "{subject:?} has a wildcard; publish to a concrete subject"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
