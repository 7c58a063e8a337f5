//! The `wasm:` YAML shape shared by transforms and sink receivers, and its
//! validation into a [`PluginSpec`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::common::{ByteSize, Diagnostics, Duration, Spanned, expand};

/// `wasm: {plugin, name, config, allowedHosts, limits}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmConfig {
    /// The component file (`.wasm`), built against `wit/switchyard.wit`.
    pub plugin: Spanned<String>,
    /// The name in logs and metrics; by default the file name without `.wasm`.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Text values the plugin reads with `host.config(key)`. `${VAR}` and
    /// `${file:…}` are expanded; values never appear in logs.
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<String>>,
    /// Hosts the plugin may reach with `wasi:http/outgoing-handler`:
    /// `host` (any port) or `host:port`. Empty: no network at all.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
    /// Per-call limits.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `limits: {memory, timeout}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory of one instance (all its memories together); growing
    /// past it traps. Default 64MiB.
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Longest time one call may take (CPU and waiting on `wasi:http`);
    /// a plugin still running is interrupted. Default 250ms for transforms,
    /// 30s for sinks.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// Default memory limit of an instance.
pub const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;
/// Default call timeout of a transform.
pub const DEFAULT_TRANSFORM_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);
/// Default call timeout of a sink (it waits on the network).
pub const DEFAULT_SINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Per-call limits, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory: u64,
    pub timeout: std::time::Duration,
}

/// An entry of `allowedHosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: String,
    port: Option<u16>,
}

impl HostRule {
    /// Parses `host` or `host:port` (`[v6]:port` for IPv6 literals).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains("://") || text.contains('/') {
            return Err(format!(
                "{text:?}: give a host name or host:port, not a URL"
            ));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (!h.contains(':') || h.starts_with('[')) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{text:?}: the port must be a number up to 65535"))?;
                (h, Some(port))
            }
            _ => (text, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?}: the host is empty"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case(host) && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) if self.host.contains(':') => write!(f, "[{}]:{p}", self.host),
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// A plugin with every value resolved.
#[derive(Clone)]
pub struct PluginSpec {
    /// Where it is in the config (`transforms[0]`, `receivers[1].wasm`).
    pub place: String,
    pub name: String,
    pub path: PathBuf,
    pub config: BTreeMap<String, String>,
    pub allowed_hosts: Vec<HostRule>,
    pub limits: Limits,
}

/// Equal when the plugin would behave the same: `place` (where it is
/// written) does not count, so moving a receiver in the file changes nothing.
impl PartialEq for PluginSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.path == other.path
            && self.config == other.config
            && self.allowed_hosts == other.allowed_hosts
            && self.limits == other.limits
    }
}

impl std::fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config values may hold expanded secrets: keys only.
        f.debug_struct("PluginSpec")
            .field("place", &self.place)
            .field("name", &self.name)
            .field("path", &self.path)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limits", &self.limits)
            .finish()
    }
}

impl PluginSpec {
    /// A plugin with no config and nothing granted (`plugin check` without `-c`).
    pub fn bare(path: PathBuf, timeout: std::time::Duration) -> Self {
        let name = default_name(&path);
        Self {
            place: name.clone(),
            name,
            path,
            config: BTreeMap::new(),
            allowed_hosts: Vec::new(),
            limits: Limits {
                memory: DEFAULT_MEMORY,
                timeout,
            },
        }
    }
}

fn default_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned())
}

impl WasmConfig {
    /// Validates this plugin config at `place` (e.g. `transforms[0].wasm`).
    pub fn compile(
        &self,
        place: &str,
        default_timeout: std::time::Duration,
        diags: &mut Diagnostics,
    ) -> Option<PluginSpec> {
        let mut ok = true;
        let text = |value: &Spanned<String>, key: &str, diags: &mut Diagnostics| match expand(
            &value.value,
        ) {
            Ok(v) => Some(v.into_owned()),
            Err(e) => {
                diags.error(Some(value.referenced), format!("{place}.{key}: {e}"));
                None
            }
        };
        let path = text(&self.plugin, "plugin", diags).map(PathBuf::from);
        if let Some(p) = &path {
            if p.as_os_str().is_empty() {
                diags.error(
                    Some(self.plugin.referenced),
                    format!("{place}.plugin: must not be empty"),
                );
                ok = false;
            } else if !p.is_file() {
                diags.error(
                    Some(self.plugin.referenced),
                    format!(
                        "{place}.plugin: {} is not a file (build the plugins with scripts/build-plugins)",
                        p.display()
                    ),
                );
                ok = false;
            }
        }
        let mut config = BTreeMap::new();
        for (key, value) in &self.config {
            match text(value, &format!("config.{key}"), diags) {
                Some(v) => {
                    config.insert(key.clone(), v);
                }
                None => ok = false,
            }
        }
        let mut allowed_hosts = Vec::new();
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            match text(host, &format!("allowedHosts[{i}]"), diags).map(|h| HostRule::parse(&h)) {
                Some(Ok(rule)) => allowed_hosts.push(rule),
                Some(Err(e)) => {
                    diags.error(
                        Some(host.referenced),
                        format!("{place}.allowedHosts[{i}]: {e}"),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        let memory = self.limits.memory.map_or(DEFAULT_MEMORY, |m| m.0);
        if memory < 1024 * 1024 {
            diags.error(
                Some(self.plugin.referenced),
                format!("{place}.limits.memory: must be at least 1MiB"),
            );
            ok = false;
        }
        let timeout = self.limits.timeout.map_or(default_timeout, |t| t.0);
        if timeout.is_zero() {
            diags.error(
                Some(self.plugin.referenced),
                format!("{place}.limits.timeout: must be greater than zero"),
            );
            ok = false;
        }
        let path = path?;
        let name = match &self.name {
            Some(n) if n.value.is_empty() => {
                diags.error(
                    Some(n.referenced),
                    format!("{place}.name: must not be empty"),
                );
                return None;
            }
            Some(n) => n.value.clone(),
            None => default_name(&path),
        };
        ok.then(|| PluginSpec {
            place: place.to_owned(),
            name,
            path,
            config,
            allowed_hosts,
            limits: Limits { memory, timeout },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::HostRule;

    #[test]
    fn host_rules_match_host_and_port() {
        let any = HostRule::parse("Events.PagerDuty.com").unwrap();
        assert!(any.matches("events.pagerduty.com", 443));
        assert!(any.matches("events.pagerduty.com", 8080));
        assert!(!any.matches("evil.pagerduty.com", 443));
        assert!(!any.matches("events.pagerduty.com.evil", 443));

        let one = HostRule::parse("127.0.0.1:8080").unwrap();
        assert!(one.matches("127.0.0.1", 8080));
        assert!(!one.matches("127.0.0.1", 8081));
        assert_eq!(one.to_string(), "127.0.0.1:8080");

        let v6 = HostRule::parse("[::1]:9000").unwrap();
        assert!(v6.matches("[::1]", 9000));
        assert_eq!(v6.to_string(), "[::1]:9000");

        assert!(HostRule::parse("https://example.com").is_err());
        assert!(HostRule::parse("example.com:http").is_err());
        assert!(HostRule::parse(":80").is_err());
    }
}
