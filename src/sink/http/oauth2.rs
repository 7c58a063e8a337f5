//! OAuth2 client credentials (RFC 6749 §4.4) with the `oauth2` crate: the
//! token is cached until shortly before it expires, fetched by one request
//! however many deliveries wait for it, and dropped when the receiver
//! answers 401. A failing token endpoint makes the delivery fail, so the
//! receiver's backoff retries it. Neither the secret nor the token is ever
//! logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::debug;

use super::config::OAuth2Spec;

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Assumed lifetime of a token that does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is refreshed this long before it expires (or a tenth of its
/// lifetime, if shorter).
const EARLY: Duration = Duration::from_secs(30);

pub struct TokenSource {
    client: Client,
    http: reqwest::Client,
    scopes: Vec<String>,
    audience: Option<String>,
    cached: Mutex<Option<Cached>>,
    /// Tokens fetched.
    pub refreshes: AtomicU64,
    /// Failed token requests.
    pub failures: AtomicU64,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

impl TokenSource {
    pub fn new(spec: &OAuth2Spec, timeout: Duration) -> Result<Self, String> {
        let token_url =
            TokenUrl::new(spec.token_url.clone()).map_err(|_| "tokenUrl: not a URL".to_owned())?;
        let client = BasicClient::new(ClientId::new(spec.client_id.clone()))
            .set_client_secret(ClientSecret::new(spec.client_secret.0.clone()))
            .set_token_uri(token_url);
        let http = crate::net::http_client::build(&spec.tls, timeout, "oauth2 token endpoint")?;
        Ok(Self {
            client,
            http,
            scopes: spec.scopes.clone(),
            audience: spec.audience.clone(),
            cached: Mutex::new(None),
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// A valid access token: the cached one, or a new one. Concurrent
    /// callers wait for the one request in flight.
    pub async fn token(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let mut request = self.client.exchange_client_credentials();
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(audience) = &self.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        let response = request.request_async(&self.http).await.map_err(|e| {
            self.failures.fetch_add(1, Ordering::Relaxed);
            describe(e)
        })?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        let refresh_at = Instant::now() + lifetime.saturating_sub(EARLY.min(lifetime / 10));
        let token = response.access_token().secret().clone();
        debug!(lifetime = ?lifetime, "fetched an OAuth2 access token");
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets `token` (the receiver answered 401), unless a newer one has
    /// replaced it already.
    pub async fn invalidate(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == token) {
            *cached = None;
        }
    }
}

type TokenError = RequestTokenError<
    oauth2::HttpClientError<reqwest::Error>,
    oauth2::StandardErrorResponse<oauth2::basic::BasicErrorResponseType>,
>;

/// What went wrong, without the secret, the token or the response body.
fn describe(e: TokenError) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("token endpoint refused: {}", r.error()),
        RequestTokenError::Request(oauth2::HttpClientError::Reqwest(e)) => {
            format!("token endpoint: {}", crate::net::http_client::describe(*e))
        }
        RequestTokenError::Request(e) => format!("token endpoint: {e}"),
        RequestTokenError::Parse(_, _) => {
            "token endpoint: the answer is not a token response".to_owned()
        }
        RequestTokenError::Other(s) => format!("token endpoint: {s}"),
    }
}
