//! The `config:` keys of the plugin.

use crate::switchyard::plugin::host;

/// Where events go unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://events.pagerduty.com/v2/enqueue";
/// Per-request timeout unless `timeout` says otherwise.
const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;

/// What identifies an alert to PagerDuty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupKey {
    /// The event id: one alert per event.
    Id,
    /// `cluster/node/check`: one alert per node and check, so a healthy
    /// event resolves the alert its unhealthy one opened.
    Check,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub routing_key: String,
    pub endpoint: Endpoint,
    pub timeout_ns: u64,
    pub dedup_key: DedupKey,
    pub client: String,
}

/// An `http`/`https` URL taken apart as `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// `host` or `host:port`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_with_query: String,
}

impl Config {
    pub fn from_host() -> Result<Self, String> {
        Self::from_lookup(|key| host::config(key).filter(|v| !v.trim().is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let routing_key = get("routingKey")
            .ok_or("config routingKey (the integration key of a PagerDuty service) is not set")?
            .trim()
            .to_owned();
        let endpoint = get("endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let endpoint = Endpoint::parse(endpoint.trim())?;
        let timeout_ns = match get("timeout") {
            Some(t) => parse_duration_ns(t.trim())
                .ok_or_else(|| format!("config timeout {t:?}: expected e.g. 10s, 1500ms, 1m"))?,
            None => DEFAULT_TIMEOUT_NS,
        };
        let dedup_key = match get("dedupKey").as_deref().map(str::trim) {
            None | Some("id") => DedupKey::Id,
            Some("check") => DedupKey::Check,
            Some(other) => return Err(format!("config dedupKey {other:?}: expected id or check")),
        };
        let client = get("client").unwrap_or_else(|| "Switchyard".to_owned());
        Ok(Config {
            routing_key,
            endpoint,
            timeout_ns,
            dedup_key,
            client,
        })
    }
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("config endpoint: {why}");
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
            (false, rest)
        } else {
            return Err(invalid("not an http:// or https:// URL"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(invalid("no host, or user info or spaces in the host"));
        }
        let path_with_query = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Endpoint {
            https,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `250ms`, `10s`, `1m`, or a plain number of seconds.
fn parse_duration_ns(s: &str) -> Option<u64> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&ns| ns > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_lookup(|key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let c = config(&[("routingKey", "R0UT1NG")]).unwrap();
        assert_eq!(c.routing_key, "R0UT1NG");
        assert_eq!(
            c.endpoint,
            Endpoint {
                https: true,
                authority: "events.pagerduty.com".into(),
                path_with_query: "/v2/enqueue".into()
            }
        );
        assert_eq!(c.timeout_ns, 10_000_000_000);
        assert_eq!(c.dedup_key, DedupKey::Id);
        assert_eq!(c.client, "Switchyard");
    }

    #[test]
    fn routing_key_is_required() {
        assert!(config(&[]).unwrap_err().contains("routingKey"));
    }

    #[test]
    fn options() {
        let c = config(&[
            ("routingKey", "k"),
            ("endpoint", "http://127.0.0.1:8080"),
            ("timeout", "1500ms"),
            ("dedupKey", "check"),
        ])
        .unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint {
                https: false,
                authority: "127.0.0.1:8080".into(),
                path_with_query: "/".into()
            }
        );
        assert_eq!(c.timeout_ns, 1_500_000_000);
        assert_eq!(c.dedup_key, DedupKey::Check);
        assert_eq!(
            config(&[("routingKey", "k"), ("timeout", "2")])
                .unwrap()
                .timeout_ns,
            2_000_000_000
        );
        assert!(config(&[("routingKey", "k"), ("timeout", "2h")]).is_err());
        assert!(config(&[("routingKey", "k"), ("dedupKey", "node")]).is_err());
        assert!(config(&[("routingKey", "k"), ("endpoint", "ftp://x")]).is_err());
        assert!(config(&[("routingKey", "k"), ("endpoint", "https://u:p@x/")]).is_err());
        assert_eq!(
            Endpoint::parse("HTTPS://h:1?x=1#f")
                .unwrap()
                .path_with_query,
            "/?x=1"
        );
    }
}
