//! The YAML shape of the `nats` receiver and its validation into a
//! [`NatsSpec`].

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{Diagnostics, Duration, Spanned};
use crate::mapping::Template;
use crate::sink::http::config::{Secret, expanded, read_file};

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

/// `tls: {caFile, certFile, keyFile, required}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsTlsConfig {
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub cert_file: Option<Spanned<String>>,
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    /// Refuse a server that does not offer TLS.
    #[serde(default)]
    pub required: bool,
}

/// How the client authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    None,
    /// The content of a `.creds` file.
    Credentials(Secret),
    UserPassword(String, Secret),
    Token(Secret),
}

/// How to reach a NATS server: shared by the `nats` receiver and the
/// `nats` source.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsServerSpec {
    pub url: Secret,
    pub auth: NatsAuth,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub tls_required: bool,
    pub timeout: std::time::Duration,
}

/// The connection settings as written (the same keys in the receiver and
/// the source).
pub struct NatsServerConfig<'a> {
    pub url: &'a Spanned<String>,
    pub credentials_file: &'a Option<Spanned<String>>,
    pub user: &'a Option<Spanned<String>>,
    pub password: &'a Option<Spanned<String>>,
    pub token: &'a Option<Spanned<String>>,
    pub tls: &'a NatsTlsConfig,
    pub timeout: Duration,
}

impl NatsServerConfig<'_> {
    pub fn compile(&self, place: &str, diags: &mut Diagnostics) -> Option<NatsServerSpec> {
        let url = expanded(self.url, &format!("{place}.url"), diags)?;
        if url.trim().is_empty() {
            diags.error(
                Some(self.url.referenced),
                format!("{place}.url: must not be empty"),
            );
        }
        let auth = match (self.credentials_file, self.user, self.password, self.token) {
            (None, None, None, None) => NatsAuth::None,
            (Some(file), None, None, None) => {
                let bytes = read_file(file, &format!("{place}.credentialsFile"), diags)?;
                NatsAuth::Credentials(Secret(String::from_utf8_lossy(&bytes).into_owned()))
            }
            (None, Some(user), Some(password), None) => NatsAuth::UserPassword(
                expanded(user, &format!("{place}.user"), diags)?,
                Secret(expanded(password, &format!("{place}.password"), diags)?),
            ),
            (None, None, None, Some(token)) => {
                NatsAuth::Token(Secret(expanded(token, &format!("{place}.token"), diags)?))
            }
            _ => {
                diags.error(
                    Some(self.url.referenced),
                    format!("{place}: set one of credentialsFile, user with password, or token"),
                );
                return None;
            }
        };
        let path = |v: &Spanned<String>, key: &str, diags: &mut Diagnostics| {
            let p = expanded(v, &format!("{place}.tls.{key}"), diags)?;
            if !std::path::Path::new(&p).is_file() {
                diags.error(
                    Some(v.referenced),
                    format!("{place}.tls.{key}: no such file {p}"),
                );
                return None;
            }
            Some(PathBuf::from(p))
        };
        let ca_file = match &self.tls.ca_file {
            Some(f) => Some(path(f, "caFile", diags)?),
            None => None,
        };
        let client_cert = match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(c), Some(k)) => Some((path(c, "certFile", diags)?, path(k, "keyFile", diags)?)),
            (None, None) => None,
            (Some(v), None) | (None, Some(v)) => {
                diags.error(
                    Some(v.referenced),
                    format!("{place}.tls: certFile and keyFile go together"),
                );
                return None;
            }
        };
        if self.timeout.0.is_zero() {
            diags.error(
                Some(self.url.referenced),
                format!("{place}.timeout: must be greater than zero"),
            );
        }
        Some(NatsServerSpec {
            url: Secret(url),
            auth,
            ca_file,
            client_cert,
            tls_required: self.tls.required,
            timeout: self.timeout.0,
        })
    }
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
