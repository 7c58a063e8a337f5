//! Semantic validation: checks a parsed [`Config`] once, collects every error
//! (each naming its place and line) and compiles the runtime pieces. Each
//! family validates its own keys (`compile` beside its config type); what
//! crosses them is checked here: receiver names and the routes that use
//! them, the mapping profile a source needs, `metadata.cluster`, leader
//! election's source. Runtime code never fails because of a config mistake.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::Config;
use super::common::{Diagnostics, expanded};
use crate::leader::{self, LeaderSpec};
use crate::mapping::{Mapper, Profile};
use crate::plugin::{PluginSpec, World};
use crate::route::{self, RouteTree};
use crate::sink::{ReceiverKind, ReceiverSpec};
use crate::source::{SourceConfig, SourceSpec};
use crate::state::StateSpec;
use crate::telemetry::{self, TelemetrySpec, TracingSpec};
use crate::transform::TransformSpec;

/// A validated configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub source: SourceSpec,
    pub mapper: Mapper,
    /// Global transforms (after mapping, before routing).
    pub transforms: Vec<TransformSpec>,
    pub routes: RouteTree,
    pub receivers: Vec<ReceiverSpec>,
    pub state: StateSpec,
    /// Where compiled plugin code is cached.
    pub plugin_cache: PathBuf,
    pub shutdown_timeout: std::time::Duration,
    /// The metrics and health server, if configured.
    pub telemetry: Option<TelemetrySpec>,
    /// OpenTelemetry traces, if enabled.
    pub tracing: Option<TracingSpec>,
    /// Leader election, if enabled.
    pub leader: Option<LeaderSpec>,
}

/// Validates and compiles. On success the diagnostics hold only warnings.
pub fn validate(config: &Config) -> Result<(Compiled, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();

    let mut metadata = Map::new();
    for (key, value) in config.metadata.iter().flat_map(|m| m.value.iter()) {
        if let Some(v) = expanded(value, &format!("metadata.{key}"), &mut diags) {
            metadata.insert(key.clone(), Value::String(v));
        }
    }
    let mapper = mapper(config, metadata.clone(), &mut diags);
    let source = SourceConfig::compile(&config.source, &mut diags);
    let transforms: Vec<_> = config
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| t.compile(&format!("transforms[{i}]"), None, &mut diags))
        .collect();

    let mut receivers = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, r) in config.receivers.iter().enumerate() {
        let place = format!("receivers[{i}]");
        if r.name.value.is_empty() {
            diags.error(
                Some(r.name.referenced),
                format!("{place}.name: must not be empty"),
            );
        } else if let Some(&first) = by_name.get(r.name.value.as_str()) {
            let first_line = config.receivers[first].name.referenced.line();
            diags.error(
                Some(r.name.referenced),
                format!("{place}.name: duplicate receiver name {:?} (first defined at line {first_line})", r.name.value),
            );
        } else {
            by_name.insert(&r.name.value, receivers.len());
        }
        // A broken receiver leaves `None`, keeping ids aligned with `by_name`.
        receivers.push(r.compile(&place, &metadata, &mut diags));
    }

    let mut used = vec![false; receivers.len()];
    let view = match mapper.profile() {
        Profile::Nvsentinel => route::expr::View::Nvsentinel,
        _ => route::expr::View::CloudEvent,
    };
    let routes = route::compile(&config.route, &by_name, &mut used, view, &mut diags);
    for (i, r) in config.receivers.iter().enumerate() {
        if by_name.get(r.name.value.as_str()) == Some(&i) && !used[i] {
            diags.warning(
                Some(r.name.referenced),
                format!(
                    "receivers[{i}]: receiver {:?} is not used by any route",
                    r.name.value
                ),
            );
        }
    }

    let state = config.state.compile(&mut diags);
    let plugin_cache = match &config.plugin_cache {
        Some(dir) => expanded(dir, "pluginCache", &mut diags).map(PathBuf::from),
        None => state.as_ref().map(|s| s.dir.join("plugin-cache")),
    };

    let telemetry = telemetry::config::telemetry(config.telemetry.as_ref(), &mut diags);
    let tracing = telemetry::config::tracing(config.telemetry.as_ref(), &mut diags);
    let leader = leader::config::compile(
        config.leader_election.as_ref(),
        matches!(source, Some(SourceSpec::Mongodb(_))),
        &mut diags,
    );

    diags.0.sort_by_key(|d| d.position);
    if diags.has_errors() {
        return Err(diags);
    }
    let compiled = Compiled {
        source: source.expect("no errors means a source"),
        mapper,
        transforms: transforms
            .into_iter()
            .map(|t| t.expect("no errors means every transform built"))
            .collect(),
        routes,
        receivers: receivers
            .into_iter()
            .map(|r| r.expect("no errors means every receiver built"))
            .collect(),
        state: state.expect("no errors means a state"),
        plugin_cache: plugin_cache.expect("no errors means a plugin cache dir"),
        shutdown_timeout: config.shutdown_timeout.0,
        telemetry,
        tracing,
        leader,
    };
    Ok((compiled, diags))
}

/// The mapping, with the check that crosses it and `metadata`: the
/// `nvsentinel` profile names the event source after `metadata.cluster`.
fn mapper(config: &Config, metadata: Map<String, Value>, diags: &mut Diagnostics) -> Mapper {
    let profile = config
        .mapping
        .profile
        .unwrap_or_else(|| config.source.value.default_profile());
    let written = config
        .metadata
        .as_ref()
        .and_then(|m| m.value.get("cluster"));
    let expanded = metadata.get("cluster").and_then(Value::as_str);
    // A cluster whose `${…}` failed to expand was reported already.
    let expansion_failed = written.is_some() && expanded.is_none();
    if profile == Profile::Nvsentinel && expanded.is_none_or(str::is_empty) && !expansion_failed {
        let at = written
            .map(|c| c.referenced)
            .or(config.metadata.as_ref().map(|m| m.referenced));
        diags.error(
            at,
            "metadata.cluster: required by the nvsentinel mapping profile (it names the event source)",
        );
    }
    config.mapping.compile(profile, metadata, diags)
}

impl Compiled {
    /// Every plugin of the config with the world it must implement.
    pub fn plugins(&self) -> Vec<(&PluginSpec, World)> {
        let mut all: Vec<_> = crate::transform::plugin_specs(&self.transforms).collect();
        for r in &self.receivers {
            all.extend(crate::transform::plugin_specs(&r.transforms));
            if let ReceiverKind::Wasm(p) = &r.kind {
                all.push((p, World::Sink));
            }
        }
        all
    }

    /// The cache of compiled plugin code (`pluginCache`).
    pub fn plugin_cache(&self) -> crate::plugin::Cache {
        crate::plugin::Cache::new(self.plugin_cache.clone())
    }
}
