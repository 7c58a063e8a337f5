//! The YAML shape of the `redis` receiver and its validation into a
//! [`RedisSpec`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, expanded};
use crate::mapping::Template;

/// `redis`: each event appended to a Redis stream (`XADD`) or published on
/// a channel (`PUBLISH`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:6379/db` (`${…}` expanded; kept secret).
    pub url: Spanned<String>,
    /// The stream key to `XADD` to, a template: `health:{{data.healthEvent.nodeName}}`.
    #[serde(default)]
    pub stream: Option<Spanned<String>>,
    /// The channel to `PUBLISH` on, a template (instead of `stream`).
    #[serde(default)]
    pub channel: Option<Spanned<String>>,
    /// Trim the stream to about this many entries (`XADD … MAXLEN ~ N`).
    #[serde(default)]
    pub max_len: Option<u64>,
    /// Stream entries: `structured` (one field `event`, the CloudEvent
    /// JSON) or `binary` (a field per attribute, and `data`). Channels
    /// carry the structured JSON.
    #[serde(default)]
    pub mode: RedisMode,
    /// How long to wait for Redis (connect and each batch).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RedisMode {
    #[default]
    Structured,
    Binary,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Stream { key: Template, max_len: Option<u64> },
    Channel(Template),
}

/// A validated `redis` receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSpec {
    pub url: Secret,
    pub target: Target,
    pub mode: RedisMode,
    pub timeout: std::time::Duration,
}

impl RedisSinkConfig {
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<RedisSpec> {
        let place = format!("{place}.redis");
        let at = Some(self.url.referenced);
        let url = expanded(&self.url, &format!("{place}.url"), diags)?;
        if redis::Client::open(url.as_str()).is_err() {
            diags.error(at, format!("{place}.url: not a redis:// URL"));
        }
        let template = |v: &Spanned<String>, key: &str, diags: &mut Diagnostics| {
            Template::compile(&v.value, metadata)
                .map_err(|e| diags.error(Some(v.referenced), format!("{place}.{key}: {e}")))
                .ok()
        };
        let target = match (&self.stream, &self.channel) {
            (Some(s), None) => Target::Stream {
                key: template(s, "stream", diags)?,
                max_len: self.max_len,
            },
            (None, Some(c)) => {
                if self.mode == RedisMode::Binary {
                    diags.error(
                        Some(c.referenced),
                        format!(
                            "{place}.mode: binary needs a stream (a channel message has no fields)"
                        ),
                    );
                }
                if self.max_len.is_some() {
                    diags.error(
                        Some(c.referenced),
                        format!("{place}.maxLen: only for a stream"),
                    );
                }
                Target::Channel(template(c, "channel", diags)?)
            }
            _ => {
                diags.error(at, format!("{place}: set exactly one of stream, channel"));
                return None;
            }
        };
        if self.timeout.0.is_zero() {
            diags.error(at, format!("{place}.timeout: must be greater than zero"));
        }
        Some(RedisSpec {
            url: Secret(url),
            target,
            mode: self.mode,
            timeout: self.timeout.0,
        })
    }
}
