//! What a component asks of the host, and whether its config grants it:
//! the checks behind loading and `switchyard plugin check`.

use std::time::{Duration, Instant};

use super::engine::{Cache, Loaded};
use super::{LoadError, PluginSpec};
use super::{Plugin, World};

/// A capability a component's imports ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `switchyard:plugin/host`: log and config (always granted).
    Host,
    /// `wasi:http/outgoing-handler`: outgoing HTTP, only to `allowedHosts`.
    Http,
    /// `wasi:sockets/*`: linked, but every address is refused.
    Sockets,
    /// `wasi:filesystem/*`: linked, with no directory preopened.
    Filesystem,
    /// `wasi:cli/environment`: linked, empty (no variables, no arguments).
    Environment,
    /// Clocks, random, I/O streams, stdout/stderr (to the log): harmless.
    Basic,
}

impl Capability {
    pub fn of(import: &str) -> Self {
        let name = import.split('@').next().unwrap_or(import);
        if name.starts_with("switchyard:plugin/") {
            Self::Host
        } else if name.starts_with("wasi:http/") {
            Self::Http
        } else if name.starts_with("wasi:sockets/") {
            Self::Sockets
        } else if name.starts_with("wasi:filesystem/") {
            Self::Filesystem
        } else if name == "wasi:cli/environment" {
            Self::Environment
        } else {
            Self::Basic
        }
    }

    /// How the host answers it, in `plugin check` output.
    pub fn grant(self, spec: &PluginSpec) -> String {
        match self {
            Self::Host => "granted".to_owned(),
            Self::Http if spec.allowed_hosts.is_empty() => {
                "NOT GRANTED (allowedHosts is empty)".to_owned()
            }
            Self::Http => format!(
                "granted to {}",
                spec.allowed_hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Sockets => "linked, every address refused".to_owned(),
            Self::Filesystem => "linked, no directories".to_owned(),
            Self::Environment => "linked, empty".to_owned(),
            Self::Basic => "granted".to_owned(),
        }
    }
}

/// Fails when the component makes outgoing HTTP requests and the config
/// grants it no host: every request would be refused.
pub(super) fn grants(spec: &PluginSpec, imports: &[String]) -> Result<(), String> {
    let http = imports
        .iter()
        .find(|i| i.starts_with("wasi:http/outgoing-handler"));
    if let Some(import) = http.filter(|_| spec.allowed_hosts.is_empty()) {
        return Err(format!(
            "imports {import} (outgoing HTTP) but allowedHosts is empty; list the hosts it may reach"
        ));
    }
    Ok(())
}

/// What `switchyard plugin check` prints.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    pub world: World,
    pub imports: Vec<(String, Capability)>,
    pub loaded: Loaded,
    pub load_time: Duration,
}

impl Report {
    /// The lines `plugin check` prints.
    pub fn render(&self, spec: &PluginSpec) -> String {
        let mut out = format!(
            "{}: implements {}\n  code: {} in {:.1?}\n  limits: memory {} bytes, timeout {:?}\n  imports:\n",
            spec.path.display(),
            self.world,
            match self.loaded {
                Loaded::Compiled => "compiled",
                Loaded::FromCache => "loaded from cache",
            },
            self.load_time,
            spec.limits.memory,
            spec.limits.timeout,
        );
        for (import, capability) in &self.imports {
            out.push_str(&format!("    {import}: {}\n", capability.grant(spec)));
        }
        out.push_str("  instantiated: ok\n");
        out
    }
}

/// Loads (compiles, checks grants, instantiates) the plugin of `spec`.
pub async fn check(
    spec: &PluginSpec,
    cache: &Cache,
    expect: Option<World>,
) -> Result<Report, LoadError> {
    let started = Instant::now();
    let plugin = Plugin::load(spec, cache, expect).await?;
    Ok(Report {
        name: plugin.name().to_owned(),
        world: plugin.world(),
        imports: plugin
            .imports()
            .iter()
            .map(|i| (i.clone(), Capability::of(i)))
            .collect(),
        loaded: plugin.loaded(),
        load_time: started.elapsed(),
    })
}
