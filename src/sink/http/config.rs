//! The YAML shape of the `http` receiver (and the TLS and OAuth2 settings the
//! `webhook` receiver shares), and its validation into an [`HttpSpec`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::common::{ByteSize, Diagnostics, Duration, Spanned, compile_headers};
use crate::config::common::{
    Secret, TlsConfig, TlsSpec, check_url, expanded, read_file, warn_plain_tls,
};
use crate::sink::config::BatchSpec;

/// `http`: CloudEvents over HTTP (the CloudEvents HTTP protocol binding).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where events are POSTed (`https://…`; `${…}` expanded).
    pub endpoint: Spanned<String>,
    /// `structured` (one `application/cloudevents+json` event per request),
    /// `binary` (`ce-*` headers, the data as body) or `batch`
    /// (`application/cloudevents-batch+json`).
    #[serde(default)]
    pub mode: HttpMode,
    /// Batch limits (`batch` mode).
    #[serde(default)]
    pub batch: HttpBatchConfig,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Extra request headers (`${…}` expanded in values).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// TLS towards the endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
    /// OAuth2 client credentials for a bearer token.
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HttpMode {
    #[default]
    Structured,
    Binary,
    Batch,
}

/// `batch: {maxEvents, maxBytes, maxWait}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBatchConfig {
    /// Events per request.
    #[serde(default = "default_batch_events")]
    pub max_events: usize,
    /// Bytes of CloudEvents JSON per request (a single larger event is sent alone).
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: ByteSize,
    /// How long a batch may wait to fill once its first event is there.
    #[serde(default = "default_batch_wait")]
    pub max_wait: Duration,
}

impl Default for HttpBatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_batch_events(),
            max_bytes: default_batch_bytes(),
            max_wait: default_batch_wait(),
        }
    }
}

/// `oauth2`: the client credentials grant (RFC 6749 §4.4).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token endpoint.
    pub token_url: Spanned<String>,
    pub client_id: Spanned<String>,
    /// The secret (`${OIDC_SECRET}`), or …
    #[serde(default)]
    pub client_secret: Option<Spanned<String>>,
    /// … a file holding it (a mounted Secret).
    #[serde(default)]
    pub client_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Sent as the `audience` parameter (Auth0, Okta and others want it).
    #[serde(default)]
    pub audience: Option<String>,
    /// TLS towards the token endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    10
}
fn default_batch_events() -> usize {
    500
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_batch_wait() -> Duration {
    Duration(std::time::Duration::from_millis(200))
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Spec {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub tls: TlsSpec,
}

/// A validated `http` receiver. The endpoint may hold a secret (a token in
/// the URL): it is never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub endpoint: Secret,
    pub mode: HttpMode,
    pub timeout: std::time::Duration,
    pub headers: Vec<(String, Secret)>,
    pub tls: TlsSpec,
    pub oauth2: Option<OAuth2Spec>,
}

impl OAuth2Config {
    pub fn compile(&self, place: &str, diags: &mut Diagnostics) -> Option<OAuth2Spec> {
        let token_url = check_url(&self.token_url, &format!("{place}.tokenUrl"), diags);
        let client_id = expanded(&self.client_id, &format!("{place}.clientId"), diags);
        let secret = match (&self.client_secret, &self.client_secret_file) {
            (Some(s), None) => expanded(s, &format!("{place}.clientSecret"), diags),
            (None, Some(f)) => read_file(f, &format!("{place}.clientSecretFile"), diags).map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned()
            }),
            _ => {
                diags.error(
                    Some(self.client_id.referenced),
                    format!("{place}: set exactly one of clientSecret, clientSecretFile"),
                );
                None
            }
        };
        let tls = self
            .tls
            .compile(&format!("{place}.tls"), self.token_url.referenced, diags);
        Some(OAuth2Spec {
            token_url: token_url?,
            client_id: client_id?,
            client_secret: Secret(secret?),
            scopes: self.scopes.clone(),
            audience: self.audience.clone(),
            tls: tls?,
        })
    }
}

impl HttpSinkConfig {
    /// Validates into a spec and the receiver's batch limits and concurrency.
    pub fn compile(
        &self,
        place: &str,
        diags: &mut Diagnostics,
    ) -> Option<(HttpSpec, BatchSpec, usize)> {
        let place = format!("{place}.http");
        let endpoint = check_url(&self.endpoint, &format!("{place}.endpoint"), diags);
        let headers = compile_headers(&self.headers, &place, diags);
        let tls = self
            .tls
            .compile(&format!("{place}.tls"), self.endpoint.referenced, diags);
        warn_plain_tls(
            &self.tls,
            endpoint.as_deref(),
            &place,
            self.endpoint.referenced,
            diags,
        );
        let oauth2 = match &self.oauth2 {
            Some(o) => Some(o.compile(&format!("{place}.oauth2"), diags)?),
            None => None,
        };
        if self.concurrency == 0 {
            diags.error(
                Some(self.endpoint.referenced),
                format!("{place}.concurrency: must be at least 1"),
            );
        }
        if self.batch.max_events == 0 {
            diags.error(
                Some(self.endpoint.referenced),
                format!("{place}.batch.maxEvents: must be at least 1"),
            );
        }
        if self.timeout.0.is_zero() {
            diags.error(
                Some(self.endpoint.referenced),
                format!("{place}.timeout: must be greater than zero"),
            );
        }
        let batch = match self.mode {
            HttpMode::Batch => BatchSpec {
                max_events: self.batch.max_events.max(1),
                max_bytes: Some(self.batch.max_bytes.0),
                max_wait: self.batch.max_wait.0,
            },
            _ => BatchSpec {
                max_events: 1,
                max_bytes: None,
                max_wait: std::time::Duration::ZERO,
            },
        };
        let spec = HttpSpec {
            endpoint: Secret(endpoint?),
            mode: self.mode,
            timeout: self.timeout.0,
            headers,
            tls: tls?,
            oauth2,
        };
        Some((spec, batch, self.concurrency.max(1)))
    }
}
