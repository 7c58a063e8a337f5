//! Who may send: configured bearer tokens (compared in constant time, as
//! SHA-256 digests so that not even a token's length leaks), or tokens
//! checked by an OAuth2 introspection endpoint (RFC 7662), with answers
//! cached. Tokens are never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use super::config::{AuthSpec, IntrospectionSpec};

/// Why a request is not let in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Denied {
    /// 401: no bearer token.
    Missing,
    /// 401: a token that is not (or no longer) valid.
    Invalid,
    /// 403: a valid token without a required scope.
    Scope,
    /// 503: the introspection endpoint did not answer.
    Unavailable,
}

pub enum Authenticator {
    Open,
    Tokens(Vec<[u8; 32]>),
    Introspection(Box<Introspector>),
}

type TokenDigest = [u8; 32];

/// An introspection answer and until when it may be reused.
type Cached = (Instant, Result<(), Denied>);

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    pub fn new(spec: &AuthSpec) -> Result<Self, String> {
        Ok(match spec {
            AuthSpec::Open => Self::Open,
            AuthSpec::BearerTokens(tokens) => {
                Self::Tokens(tokens.iter().map(|t| digest(&t.0)).collect())
            }
            AuthSpec::Introspection(spec) => {
                Self::Introspection(Box::new(Introspector::new(spec)?))
            }
        })
    }

    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if let Self::Open = self {
            return Ok(());
        }
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Missing)?;
        match self {
            Self::Open => Ok(()),
            Self::Tokens(known) => {
                let given = digest(token);
                // Every configured token is compared, matching or not.
                let matched = known
                    .iter()
                    .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(&given));
                if bool::from(matched) {
                    Ok(())
                } else {
                    Err(Denied::Invalid)
                }
            }
            Self::Introspection(i) => i.check(token).await,
        }
    }
}

/// The answers cached, by token digest.
const CACHE_ENTRIES: usize = 10_000;

pub struct Introspector {
    spec: IntrospectionSpec,
    client: reqwest::Client,
    cache: Mutex<HashMap<TokenDigest, Cached>>,
}

/// The fields of an introspection answer that matter here.
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
}

impl Introspector {
    pub fn new(spec: &IntrospectionSpec) -> Result<Self, String> {
        let client =
            crate::net::http_client::build(&spec.tls, spec.timeout, "token introspection")?;
        Ok(Self {
            spec: spec.clone(),
            client,
            cache: Mutex::default(),
        })
    }

    async fn check(&self, token: &str) -> Result<(), Denied> {
        let key = digest(token);
        let now = Instant::now();
        if let Some((until, answer)) = self.cache.lock().expect("cache lock").get(&key)
            && *until > now
        {
            return *answer;
        }
        let (answer, valid_for) = self.introspect(token).await?;
        let until = now + valid_for.min(self.spec.cache_for);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (u, _)| *u > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (until, answer));
        answer
    }

    /// Asks the endpoint: the answer, and how long it may be reused.
    async fn introspect(&self, token: &str) -> Result<(Result<(), Denied>, Duration), Denied> {
        let unavailable = |reason: String| {
            warn!(reason = %reason, "token introspection failed; answering 503");
            Denied::Unavailable
        };
        let response = self
            .client
            .post(&self.spec.url)
            .basic_auth(&self.spec.client_id, Some(&self.spec.client_secret.0))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| unavailable(crate::net::http_client::describe(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("the endpoint answered {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(crate::net::http_client::describe(e)))?;
        let answer: Introspection = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("not an introspection answer: {e}")))?;
        let valid_for = match answer.exp {
            Some(exp) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                Duration::from_secs(exp.saturating_sub(now))
            }
            None => self.spec.cache_for,
        };
        if !answer.active || valid_for.is_zero() {
            return Ok((Err(Denied::Invalid), self.spec.cache_for));
        }
        let scopes: Vec<&str> = answer
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if self
            .spec
            .required_scopes
            .iter()
            .any(|s| !scopes.contains(&s.as_str()))
        {
            return Ok((Err(Denied::Scope), valid_for));
        }
        Ok((Ok(()), valid_for))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::Secret;

    #[tokio::test]
    async fn bearer_tokens() {
        let auth = Authenticator::new(&AuthSpec::BearerTokens(vec![
            Secret("alpha".into()),
            Secret("beta".into()),
        ]))
        .unwrap();
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, value.parse().unwrap());
            h
        };
        assert_eq!(auth.check(&with("Bearer beta")).await, Ok(()));
        assert_eq!(auth.check(&with("bearer alpha")).await, Ok(()));
        assert_eq!(auth.check(&with("Bearer alph")).await, Err(Denied::Invalid));
        assert_eq!(auth.check(&with("Basic alpha")).await, Err(Denied::Missing));
        assert_eq!(auth.check(&HeaderMap::new()).await, Err(Denied::Missing));
        let open = Authenticator::new(&AuthSpec::Open).unwrap();
        assert_eq!(open.check(&HeaderMap::new()).await, Ok(()));
    }
}
