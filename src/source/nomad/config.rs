//! `source.nomad`: the YAML shape and its validation into a [`NomadSpec`].

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use serde::Deserialize;

use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, TlsConfig, TlsSpec, check_url, expanded, warn_plain_tls};

/// Topics Nomad publishes (Nomad 1.x). Another name is accepted (newer
/// Nomad versions add topics) but warned about: a typo subscribes to nothing.
const KNOWN_TOPICS: [&str; 16] = [
    "*",
    "ACLToken",
    "ACLPolicy",
    "ACLRole",
    "Allocation",
    "CSIPlugin",
    "CSIVolume",
    "Deployment",
    "Evaluation",
    "HostVolume",
    "Job",
    "Node",
    "NodeDrain",
    "NodePool",
    "Operator",
    "Service",
];

/// `source.nomad`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NomadSourceConfig {
    /// The Nomad agent's HTTP API, as in `NOMAD_ADDR`: `http://host:4646`,
    /// or `https://…` with `tls`.
    #[serde(default = "default_address")]
    pub address: Spanned<String>,
    /// An ACL token (`${NOMAD_TOKEN}`), sent as `X-Nomad-Token`; never
    /// logged. Job, Allocation, Deployment and Evaluation need
    /// `namespace:read-job`, Node needs `node:read`, every other topic (and
    /// `*`) a management token.
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    /// Topic → filter keys. A key is matched exactly against an event's
    /// `Key` (a job ID, an allocation ID, a node ID …) or one of its
    /// `FilterKeys` (for allocations and deployments, the job ID); `*` is
    /// every key. Default: every topic (`{"*": ["*"]}`).
    #[serde(default)]
    pub topics: Option<Spanned<BTreeMap<String, Vec<Spanned<String>>>>>,
    /// The namespace whose events are read, `*` for all. Nomad's default:
    /// `default`. Events without a namespace (Node) always pass.
    #[serde(default = "default_namespace")]
    pub namespace: Spanned<String>,
    /// The region to read (Nomad forwards the request); default the agent's own.
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    /// TLS towards an `https://` address (verification on unless
    /// `insecureSkipVerify`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// How a failed or closed stream is opened again.
    #[serde(default)]
    pub reconnect: ReconnectConfig,
    /// A stream with no line (event or heartbeat) for this long is taken as
    /// dead and opened again. Nomad sends a heartbeat every 30 s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Duration,
}

/// `reconnect: {initialBackoff, maxBackoff}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconnectConfig {
    /// Wait before the first reconnect; doubled after each failure.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between reconnects.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_address() -> Spanned<String> {
    unknown_place("http://127.0.0.1:4646")
}
fn default_namespace() -> Spanned<String> {
    unknown_place("default")
}
fn unknown_place(v: &str) -> Spanned<String> {
    Spanned::new(
        v.to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

/// A validated `source.nomad`.
#[derive(Debug, Clone, PartialEq)]
pub struct NomadSpec {
    /// The API address without a trailing slash (may hold no secret: checked).
    pub address: String,
    /// `host:port` of the address, for logs, the CloudEvent `source` and
    /// the position file's name.
    pub origin: String,
    pub token: Option<Secret>,
    /// `(topic, filter key)` pairs, one `topic=` query parameter each.
    pub topics: Vec<(String, String)>,
    pub namespace: String,
    pub region: Option<String>,
    pub tls: TlsSpec,
    pub initial_backoff: StdDuration,
    pub max_backoff: StdDuration,
    pub idle_timeout: StdDuration,
}

impl NomadSourceConfig {
    pub fn compile(
        &self,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<NomadSpec> {
        let place = "source.nomad";
        let address = check_url(&self.address, &format!("{place}.address"), diags);
        let origin = address.as_deref().and_then(|a| {
            let url = reqwest::Url::parse(a).ok()?;
            if !url.username().is_empty() || url.password().is_some() {
                diags.error(
                    Some(self.address.referenced),
                    format!("{place}.address: must not hold credentials (use token)"),
                );
                return None;
            }
            if url.query().is_some() || url.fragment().is_some() {
                diags.error(
                    Some(self.address.referenced),
                    format!("{place}.address: must not have a query or fragment"),
                );
                return None;
            }
            let host = url.host_str()?;
            let port = url.port_or_known_default()?;
            Some(format!("{host}:{port}"))
        });
        let address_at = if self.address.referenced == serde_saphyr::Location::UNKNOWN {
            at
        } else {
            self.address.referenced
        };
        let tls = self.tls.compile(&format!("{place}.tls"), address_at, diags);
        warn_plain_tls(&self.tls, address.as_deref(), place, address_at, diags);

        let token = match &self.token {
            Some(t) => {
                let v = expanded(t, &format!("{place}.token"), diags);
                match v {
                    // The message never repeats the value.
                    Some(v)
                        if v.is_empty()
                            || http::HeaderValue::from_str(&v).is_err()
                            || v.trim() != v =>
                    {
                        diags.error(
                            Some(t.referenced),
                            format!("{place}.token: not usable as an X-Nomad-Token header (empty, or whitespace or control characters)"),
                        );
                        None
                    }
                    Some(v) => Some(Some(Secret(v))),
                    None => None,
                }
            }
            None => Some(None),
        };

        let topics = self.topics(place, diags);
        let namespace = expanded(&self.namespace, &format!("{place}.namespace"), diags);
        if let Some(ns) = &namespace
            && (ns.is_empty() || ns.contains(char::is_whitespace))
        {
            diags.error(
                Some(self.namespace.referenced),
                format!("{place}.namespace: {ns:?} is not a namespace (`*` for all)"),
            );
        }
        let region = match &self.region {
            Some(r) => Some(expanded(r, &format!("{place}.region"), diags)?),
            None => None,
        };
        let initial = self.reconnect.initial_backoff.0;
        let max = self.reconnect.max_backoff.0;
        if initial.is_zero() {
            diags.error(
                Some(at),
                format!("{place}.reconnect.initialBackoff: must be greater than zero"),
            );
        }
        if max < initial {
            diags.error(
                Some(at),
                format!("{place}.reconnect.maxBackoff: must not be less than initialBackoff"),
            );
        }
        if self.idle_timeout.0 < StdDuration::from_secs(1) {
            diags.error(
                Some(at),
                format!("{place}.idleTimeout: must be at least 1s (Nomad heartbeats every 30s)"),
            );
        }
        Some(NomadSpec {
            address: address?.trim_end_matches('/').to_owned(),
            origin: origin?,
            token: token?,
            topics: topics?,
            namespace: namespace?,
            region,
            tls: tls?,
            initial_backoff: initial,
            max_backoff: max,
            idle_timeout: self.idle_timeout.0,
        })
    }

    fn topics(&self, place: &str, diags: &mut Diagnostics) -> Option<Vec<(String, String)>> {
        let Some(map) = &self.topics else {
            return Some(vec![("*".into(), "*".into())]);
        };
        let mut ok = true;
        let mut pairs = Vec::new();
        if map.value.is_empty() {
            diags.error(
                Some(map.referenced),
                format!("{place}.topics: name at least one topic (or leave it out for all)"),
            );
            return None;
        }
        for (topic, keys) in &map.value {
            let here = format!("{place}.topics.{topic}");
            if topic.is_empty() || topic.contains([':', ' ', '\t']) {
                diags.error(Some(map.referenced), format!("{here}: not a topic name"));
                ok = false;
                continue;
            }
            if !KNOWN_TOPICS.contains(&topic.as_str()) {
                diags.warning(
                    Some(map.referenced),
                    format!(
                        "{here}: not a topic this version knows ({}); Nomad sends nothing for an unknown topic",
                        KNOWN_TOPICS[1..].join(", ")
                    ),
                );
            }
            if keys.is_empty() {
                diags.error(
                    Some(map.referenced),
                    format!("{here}: list at least one filter key (\"*\" for all)"),
                );
                ok = false;
            }
            for key in keys {
                let k = &key.value;
                if k.is_empty() || k.contains(':') || k.contains(char::is_whitespace) {
                    diags.error(
                        Some(key.referenced),
                        format!("{here}: {k:?} is not a filter key"),
                    );
                    ok = false;
                } else if k != "*" && k.contains('*') {
                    diags.error(
                        Some(key.referenced),
                        format!(
                            "{here}: {k:?}: Nomad matches filter keys exactly (a job ID, an allocation ID, …); only \"*\" alone is a wildcard. Filter by pattern in a route instead"
                        ),
                    );
                    ok = false;
                } else {
                    pairs.push((topic.clone(), k.clone()));
                }
            }
        }
        ok.then_some(pairs)
    }
}
