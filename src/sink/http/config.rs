//! The YAML shape of the `http` receiver (and the TLS and OAuth2 settings the
//! `webhook` receiver shares), and its validation into an [`HttpSpec`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::config::{ByteSize, Diagnostics, Duration, Spanned, expand};

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

/// `tls: {caFile, certFile, keyFile, insecureSkipVerify}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA certificates trusted in addition to the system's roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// PEM client certificate (mutual TLS), with `keyFile`.
    #[serde(default)]
    pub cert_file: Option<Spanned<String>>,
    /// PEM private key of `certFile`.
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    /// Accept any server certificate. Logged as a warning at start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
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

/// A string that never shows in `Debug` output, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Validated TLS settings: PEM bytes, checked to parse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSpec {
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<Secret>,
    pub insecure_skip_verify: bool,
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

pub fn expanded(v: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<String> {
    match expand(&v.value) {
        Ok(s) => Some(s.into_owned()),
        Err(e) => {
            diags.error(Some(v.referenced), format!("{place}: {e}"));
            None
        }
    }
}

pub fn read_file(v: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<Vec<u8>> {
    let path = expanded(v, place, diags)?;
    std::fs::read(&path)
        .map_err(|e| {
            diags.error(
                Some(v.referenced),
                format!("{place}: cannot read {path}: {}", e.kind()),
            )
        })
        .ok()
}

/// An `http(s)://` URL; the message never repeats the value.
pub fn check_url(v: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<String> {
    let url = expanded(v, place, diags)?;
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(url),
        Ok(_) => {
            diags.error(
                Some(v.referenced),
                format!("{place}: must be an http:// or https:// URL"),
            );
            None
        }
        Err(e) => {
            diags.error(Some(v.referenced), format!("{place}: not a URL ({e})"));
            None
        }
    }
}

impl TlsConfig {
    pub fn compile(
        &self,
        place: &str,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<TlsSpec> {
        let mut ok = true;
        let ca_pem = match &self.ca_file {
            Some(f) => {
                let pem = read_file(f, &format!("{place}.caFile"), diags);
                if let Some(p) = &pem
                    && reqwest::Certificate::from_pem_bundle(p).map_or(true, |c| c.is_empty())
                {
                    diags.error(
                        Some(f.referenced),
                        format!("{place}.caFile: no PEM certificate in {}", f.value),
                    );
                    ok = false;
                }
                ok &= pem.is_some();
                pem
            }
            None => None,
        };
        let identity_pem = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let cert = read_file(c, &format!("{place}.certFile"), diags);
                let key = read_file(k, &format!("{place}.keyFile"), diags);
                match (cert, key) {
                    (Some(mut cert), Some(key)) => {
                        cert.push(b'\n');
                        cert.extend_from_slice(&key);
                        match reqwest::Identity::from_pem(&cert) {
                            Err(_) => {
                                diags.error(Some(c.referenced), format!("{place}.certFile/keyFile: not a PEM certificate and private key"));
                                ok = false;
                            }
                            // rustls checks that the key belongs to the certificate when a client is built.
                            Ok(identity) => {
                                if let Err(e) = reqwest::Client::builder()
                                    .use_rustls_tls()
                                    .identity(identity)
                                    .build()
                                {
                                    let mut reason = e.to_string();
                                    let mut source = std::error::Error::source(&e);
                                    while let Some(s) = source {
                                        reason = format!("{reason}: {s}");
                                        source = s.source();
                                    }
                                    diags.error(Some(c.referenced), format!("{place}.certFile/keyFile: unusable client certificate ({reason})"));
                                    ok = false;
                                }
                            }
                        }
                        Some(Secret(String::from_utf8_lossy(&cert).into_owned()))
                    }
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            (None, None) => None,
            _ => {
                diags.error(
                    Some(at),
                    format!("{place}: certFile and keyFile go together"),
                );
                ok = false;
                None
            }
        };
        ok.then_some(TlsSpec {
            ca_pem,
            identity_pem,
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }
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

/// Header names and values that HTTP accepts.
pub fn compile_headers(
    headers: &BTreeMap<String, Spanned<String>>,
    place: &str,
    diags: &mut Diagnostics,
) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some(v) = expanded(value, &format!("{place}.headers.{name}"), diags) else {
            continue;
        };
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            diags.error(
                Some(value.referenced),
                format!("{place}.headers: {name:?} is not a valid header name"),
            );
        } else if reqwest::header::HeaderValue::from_str(&v).is_err() {
            diags.error(
                Some(value.referenced),
                format!("{place}.headers.{name}: not a valid header value"),
            );
        } else {
            out.push((name.clone(), Secret(v)));
        }
    }
    out
}

impl HttpSinkConfig {
    /// Validates into a spec and the receiver's batch limits and concurrency.
    pub fn compile(
        &self,
        place: &str,
        diags: &mut Diagnostics,
    ) -> Option<(HttpSpec, crate::config::BatchSpec, usize)> {
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
            HttpMode::Batch => crate::config::BatchSpec {
                max_events: self.batch.max_events.max(1),
                max_bytes: Some(self.batch.max_bytes.0),
                max_wait: self.batch.max_wait.0,
            },
            _ => crate::config::BatchSpec {
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

/// TLS settings on an `http://` endpoint do nothing: say so.
pub fn warn_plain_tls(
    tls: &TlsConfig,
    endpoint: Option<&str>,
    place: &str,
    at: serde_saphyr::Location,
    diags: &mut Diagnostics,
) {
    let has_tls = tls.ca_file.is_some() || tls.cert_file.is_some() || tls.insecure_skip_verify;
    if has_tls && endpoint.is_some_and(|e| e.starts_with("http://")) {
        diags.warning(
            Some(at),
            format!("{place}.tls: the endpoint is http://, so these TLS settings are not used"),
        );
    }
}
