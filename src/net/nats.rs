//! Reaching a NATS server, shared by the `nats` receiver and the `nats`
//! source: the settings as written (the same keys in both), validated, and
//! the connection.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, expanded, read_file};

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

impl NatsServerSpec {
    /// Connects (the client reconnects by itself afterwards). The error
    /// names the server's answer, never the URL (it may hold credentials).
    pub async fn connect(&self) -> Result<async_nats::Client, String> {
        let mut options = match &self.auth {
            NatsAuth::None => async_nats::ConnectOptions::new(),
            NatsAuth::Credentials(creds) => async_nats::ConnectOptions::new()
                .credentials(&creds.0)
                .map_err(|e| format!("credentialsFile: {e}"))?,
            NatsAuth::UserPassword(user, password) => async_nats::ConnectOptions::new()
                .user_and_password(user.clone(), password.0.clone()),
            NatsAuth::Token(token) => async_nats::ConnectOptions::new().token(token.0.clone()),
        };
        options = options
            .name("switchyard")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .require_tls(self.tls_required);
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let urls: Vec<async_nats::ServerAddr> = self
            .url
            .0
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| "url: not a NATS server address".to_owned())?;
        options
            .connect(urls)
            .await
            .map_err(|e| format!("cannot connect to NATS: {}", e.kind()))
    }
}
