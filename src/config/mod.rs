//! The configuration file as a whole: the composition. [`Config`] is its
//! top level, each key's shape owned by the family it configures
//! (`source::SourceConfig`, `mapping::MappingConfig`, `route::RouteConfig`,
//! `sink::ReceiverConfig`, `state`, `telemetry`, `leader`); loading with
//! line/column errors, every structural error at once (`recover.rs`), and
//! [`validate`], which checks what crosses components and compiles the
//! whole into [`Compiled`]. The vocabulary every component's config is
//! written in is [`common`], below them all.
//!
//! Every struct denies unknown keys; every field is documented where it is
//! declared, and those comments are the reference behind the README's
//! configuration section.

pub mod common;
mod recover;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use common::{
    ByteSize, Diagnostic, Diagnostics, Duration, ExpandError, Severity, Spanned, expand,
    expand_with,
};
pub use recover::MAX_ERRORS as MAX_STRUCTURAL_ERRORS;
pub use validate::{Compiled, validate};

use crate::leader::LeaderElectionConfig;
use crate::mapping::MappingConfig;
use crate::route::RouteConfig;
use crate::sink::ReceiverConfig;
use crate::source::SourceConfig;
use crate::state::StateConfig;
use crate::telemetry::TelemetryConfig;
use crate::transform::TransformConfig;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// String map copied into every event's `data.metadata`. The `nvsentinel`
    /// profile requires `cluster`.
    #[serde(default)]
    pub metadata: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Where events come from: exactly one kind.
    pub source: Spanned<SourceConfig>,
    /// How a source record becomes a CloudEvent.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// WebAssembly transforms applied to every event after mapping and
    /// before routing, in order (filter, modify, split).
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// The route tree: which events go to which receivers.
    #[serde(default)]
    pub route: RouteConfig,
    /// Named destinations.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Where the source position is persisted.
    #[serde(default)]
    pub state: StateConfig,
    /// Where compiled plugin code is kept between starts (created if
    /// missing). Default: `<state.dir>/plugin-cache`.
    #[serde(default)]
    pub plugin_cache: Option<Spanned<String>>,
    /// How long SIGINT/SIGTERM may take to drain queues before the process exits.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Prometheus metrics and health endpoints over HTTP.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// Several replicas, one exporting at a time (a lease in MongoDB).
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Reads and parses a config file. Every unknown key and wrong type is
/// reported (up to [`MAX_STRUCTURAL_ERRORS`]); bad YAML and a missing key
/// stop there. [`validate`] then reports every semantic error.
pub fn load(path: &std::path::Path) -> Result<Config, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::one(Diagnostic::error(None, format!("cannot read config: {e}")))
    })?;
    parse(&text)
}

/// Parses config text, reporting every structural error in file order.
pub fn parse(text: &str) -> Result<Config, Diagnostics> {
    recover::parse(text)
}

/// The default config path: `$SWITCHYARD_CONFIG`, else `./switchyard.yaml`.
pub fn default_path() -> PathBuf {
    std::env::var_os("SWITCHYARD_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("switchyard.yaml"))
}
