//! The YAML shape of `source.http` and its validation into an
//! [`HttpSourceSpec`].

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::common::{ByteSize, Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, TlsConfig, TlsSpec, check_url, expanded, read_file};

/// `source.http`: CloudEvents pushed over HTTP (structured, binary or batch
/// mode), answered 202 once durably journaled in `state.dir`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// The IP address and port to listen on (`0.0.0.0:8080`, `[::]:8080`).
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    /// The path events are POSTed to; other paths answer 404.
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    /// The largest request body accepted; a larger one is answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Events accepted and not yet finished by every receiver; past it,
    /// requests are answered 503 with `Retry-After` so that senders retry.
    #[serde(default = "default_max_queued")]
    pub max_queued_events: usize,
    /// The journal's segment size: a segment wholly behind the persisted
    /// position is deleted.
    #[serde(default = "default_segment")]
    pub segment_bytes: ByteSize,
    /// Who may send. Without it the endpoint is open (a warning at start).
    #[serde(default)]
    pub auth: Option<HttpAuthConfig>,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// How long a client has to send a request's headers, counted from
    /// the connection's accept (the TLS handshake included) or, on a kept
    /// alive connection, from the request's first byte; then it is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Spanned<Duration>,
    /// How long a kept-alive connection may wait for its next request
    /// before it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Spanned<Duration>,
    /// How long a request's body may take to arrive once its headers are
    /// read and authenticated; past it the answer is 408 and the connection
    /// is closed.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Spanned<Duration>,
    /// Connections served at once; further ones wait in the listen backlog
    /// until a connection closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<usize>,
    /// The listen backlog: connections the kernel completes and holds
    /// while `maxConnections` are served (capped by `net.core.somaxconn`).
    #[serde(default = "default_backlog")]
    pub backlog: Spanned<u32>,
}

/// `tls: {certFile, keyFile}`: the listener's certificate.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: Spanned<String>,
    /// PEM private key of `certFile`.
    pub key_file: Spanned<String>,
}

/// `auth`: exactly one of `bearerTokens`, `oauth2`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// Accepted `Authorization: Bearer` tokens (`${ENV}` or `${file:…}`).
    #[serde(default)]
    pub bearer_tokens: Vec<Spanned<String>>,
    /// Bearer tokens checked by an OAuth2 token introspection endpoint
    /// (RFC 7662).
    #[serde(default)]
    pub oauth2: Option<IntrospectionConfig>,
}

/// `auth.oauth2`: RFC 7662 token introspection.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint (`https://…/introspect`).
    pub introspection_url: Spanned<String>,
    /// This resource server's client id at the authorization server.
    pub client_id: Spanned<String>,
    /// Its secret (`${SECRET}`), or …
    #[serde(default)]
    pub client_secret: Option<Spanned<String>>,
    /// … a file holding it (a mounted Secret).
    #[serde(default)]
    pub client_secret_file: Option<Spanned<String>>,
    /// Scopes a token must all have (from the `scope` field of the answer).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// How long an answer is reused for the same token (never past the
    /// token's `exp`).
    #[serde(default = "default_cache_for")]
    pub cache_for: Duration,
    /// How long to wait for the introspection endpoint.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// TLS towards the introspection endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_listen() -> Spanned<String> {
    unknown("0.0.0.0:8080".to_owned())
}
fn default_path() -> Spanned<String> {
    unknown("/".to_owned())
}
fn unknown<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
fn default_header_read_timeout() -> Spanned<Duration> {
    unknown(Duration::from_secs(10))
}
fn default_idle_timeout() -> Spanned<Duration> {
    unknown(Duration::from_secs(60))
}
fn default_body_timeout() -> Spanned<Duration> {
    unknown(Duration::from_secs(30))
}
fn default_max_connections() -> Spanned<usize> {
    unknown(1024)
}
fn default_backlog() -> Spanned<u32> {
    unknown(1024)
}
fn default_max_body() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_max_queued() -> usize {
    100_000
}
fn default_segment() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_cache_for() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A validated `source.http`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSourceSpec {
    pub listen: SocketAddr,
    pub path: String,
    pub max_body_bytes: usize,
    pub max_queued_events: u64,
    pub segment_bytes: u64,
    pub auth: AuthSpec,
    /// The listener's certificate chain and key (PEM), checked to load.
    pub tls: Option<ListenerTls>,
    pub limits: ConnectionLimits,
}

/// What one client may hold of the listener, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    pub header_read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub max_connections: usize,
    pub backlog: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: default_header_read_timeout().value.0,
            idle_timeout: default_idle_timeout().value.0,
            body_timeout: default_body_timeout().value.0,
            max_connections: default_max_connections().value,
            backlog: default_backlog().value,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Secret,
}

/// Who may send.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthSpec {
    Open,
    BearerTokens(Vec<Secret>),
    Introspection(Box<IntrospectionSpec>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntrospectionSpec {
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub required_scopes: Vec<String>,
    pub cache_for: std::time::Duration,
    pub timeout: std::time::Duration,
    pub tls: TlsSpec,
}

impl HttpSourceConfig {
    /// Validates; `at` is the `source` key (for settings left default).
    pub fn compile(
        &self,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<HttpSourceSpec> {
        let place = "source.http";
        let loc = |v: serde_saphyr::Location| {
            if v == serde_saphyr::Location::UNKNOWN {
                at
            } else {
                v
            }
        };
        let listen = expanded(&self.listen, &format!("{place}.listen"), diags).and_then(|l| {
            l.parse::<SocketAddr>()
                .map_err(|_| {
                    diags.error(
                        Some(loc(self.listen.referenced)),
                        format!(
                            "{place}.listen: {l:?} is not an IP address and port (e.g. 0.0.0.0:8080 or [::]:8080)"
                        ),
                    )
                })
                .ok()
        });
        let path = expanded(&self.path, &format!("{place}.path"), diags).and_then(|p| {
            if p.starts_with('/') && !p.contains(['?', '#', ' ', '{', '}', '*']) {
                Some(p)
            } else {
                diags.error(
                    Some(loc(self.path.referenced)),
                    format!("{place}.path: {p:?} must start with / and hold no ?, #, spaces, braces or *"),
                );
                None
            }
        });
        if self.max_body_bytes.0 == 0 {
            diags.error(
                Some(at),
                format!("{place}.maxBodyBytes: must be greater than zero"),
            );
        }
        if self.max_queued_events == 0 {
            diags.error(
                Some(at),
                format!("{place}.maxQueuedEvents: must be at least 1"),
            );
        }
        if self.segment_bytes.0 < 4096 {
            diags.error(
                Some(at),
                format!("{place}.segmentBytes: must be at least 4KiB"),
            );
        }
        for (key, timeout) in [
            ("headerReadTimeout", &self.header_read_timeout),
            ("idleTimeout", &self.idle_timeout),
            ("bodyTimeout", &self.body_timeout),
        ] {
            if timeout.value.0.is_zero() {
                diags.error(
                    Some(loc(timeout.referenced)),
                    format!("{place}.{key}: must be greater than zero"),
                );
            }
        }
        if self.max_connections.value == 0 {
            diags.error(
                Some(loc(self.max_connections.referenced)),
                format!("{place}.maxConnections: must be at least 1"),
            );
        }
        if !(1..=65535).contains(&self.backlog.value) {
            diags.error(
                Some(loc(self.backlog.referenced)),
                format!("{place}.backlog: must be between 1 and 65535"),
            );
        }
        let auth = match &self.auth {
            None => Some(AuthSpec::Open),
            Some(a) => a.compile(&format!("{place}.auth"), at, diags),
        };
        let tls = match &self.tls {
            Some(t) => Some(t.compile(&format!("{place}.tls"), diags)?),
            None => None,
        };
        Some(HttpSourceSpec {
            tls,
            listen: listen?,
            path: path?,
            max_body_bytes: usize::try_from(self.max_body_bytes.0).unwrap_or(usize::MAX),
            max_queued_events: self.max_queued_events.max(1) as u64,
            segment_bytes: self.segment_bytes.0.max(4096),
            auth: auth?,
            limits: ConnectionLimits {
                header_read_timeout: self.header_read_timeout.value.0,
                idle_timeout: self.idle_timeout.value.0,
                body_timeout: self.body_timeout.value.0,
                max_connections: self.max_connections.value,
                backlog: self.backlog.value,
            },
        })
    }
}

impl ListenerTlsConfig {
    fn compile(&self, place: &str, diags: &mut Diagnostics) -> Option<ListenerTls> {
        let cert = read_file(&self.cert_file, &format!("{place}.certFile"), diags);
        let key = read_file(&self.key_file, &format!("{place}.keyFile"), diags);
        let tls = ListenerTls {
            cert_pem: cert?,
            key_pem: Secret(String::from_utf8_lossy(&key?).into_owned()),
        };
        if let Err(e) = super::tls::server_config(&tls) {
            diags.error(
                Some(self.cert_file.referenced),
                format!("{place}.certFile/keyFile: {e}"),
            );
            return None;
        }
        Some(tls)
    }
}

impl HttpAuthConfig {
    fn compile(
        &self,
        place: &str,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<AuthSpec> {
        match (self.bearer_tokens.is_empty(), &self.oauth2) {
            (false, None) => {
                let mut tokens = Vec::new();
                for (i, t) in self.bearer_tokens.iter().enumerate() {
                    let key = format!("{place}.bearerTokens[{i}]");
                    let Some(token) = expanded(t, &key, diags) else {
                        continue;
                    };
                    // `${file:…}` keeps the file's trailing newline.
                    let token = token.trim().to_owned();
                    if token.is_empty() {
                        diags.error(Some(t.referenced), format!("{key}: must not be empty"));
                    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
                        diags.error(
                            Some(t.referenced),
                            format!("{key}: a bearer token is printable ASCII without spaces"),
                        );
                    } else {
                        tokens.push(Secret(token));
                    }
                }
                (tokens.len() == self.bearer_tokens.len()).then_some(AuthSpec::BearerTokens(tokens))
            }
            (true, Some(o)) => o
                .compile(&format!("{place}.oauth2"), diags)
                .map(|o| AuthSpec::Introspection(Box::new(o))),
            _ => {
                diags.error(
                    Some(at),
                    format!("{place}: set exactly one of: bearerTokens, oauth2"),
                );
                None
            }
        }
    }
}

impl IntrospectionConfig {
    fn compile(&self, place: &str, diags: &mut Diagnostics) -> Option<IntrospectionSpec> {
        let url = check_url(
            &self.introspection_url,
            &format!("{place}.introspectionUrl"),
            diags,
        );
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
        if self.timeout.0.is_zero() {
            diags.error(
                Some(self.introspection_url.referenced),
                format!("{place}.timeout: must be greater than zero"),
            );
        }
        let tls = self.tls.compile(
            &format!("{place}.tls"),
            self.introspection_url.referenced,
            diags,
        );
        Some(IntrospectionSpec {
            url: url?,
            client_id: client_id?,
            client_secret: Secret(secret?),
            required_scopes: self.required_scopes.clone(),
            cache_for: self.cache_for.0,
            timeout: self.timeout.0,
            tls: tls?,
        })
    }
}
