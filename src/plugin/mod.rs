//! WebAssembly plugins: components built against `wit/switchyard.wit`
//! (world `transform` or `sink`), run sandboxed on wasmtime.
//!
//! One [`engine()`](engine::engine) per process; each plugin is compiled
//! once (or loaded from the on-disk cache) and keeps a small pool of
//! instances, each with its own `Store`. Every call runs under a deadline
//! (epoch ticks, `limits.timeout`) and a memory limit (`limits.memory`). A
//! trap, a timeout or a memory overrun ends that instance — it is dropped
//! and a fresh one is made for the next call — and is returned as a
//! [`Failure`] for the caller's policy; the host and other plugins go on.
//!
//! `load.rs` reads, compiles, checks and pre-links a component (finding the
//! world it implements); `pool.rs` makes, pools and calls its instances;
//! `host.rs` is the host side of the WIT interface; `check.rs` what
//! `switchyard plugin check` reports.

mod bindings;
mod check;
pub mod config;
mod convert;
pub mod engine;
mod host;
mod load;
mod pool;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use check::{Capability, Report, check};
pub use config::{HostRule, Limits, PluginSpec};
pub use convert::{data_bytes, from_wit, to_wit};
pub use engine::{Cache, Loaded};
pub use load::World;
pub use pool::{Failure, Plugin};

/// Counters of one plugin (exported as `switchyard_plugin_*` metrics).
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls into the plugin (one per event for transforms, per batch for sinks).
    pub calls: AtomicU64,
    /// Calls where the guest returned an error value.
    pub errors: AtomicU64,
    /// Calls that returned malformed events.
    pub malformed: AtomicU64,
    /// Traps (guest panics, `unreachable`, out-of-bounds access …).
    pub traps: AtomicU64,
    /// Calls interrupted at their deadline.
    pub timeouts: AtomicU64,
    /// Calls that tried to grow memory past `limits.memory`.
    pub memory_limits: AtomicU64,
    /// Instances created (the first, plus one per failure that ended one).
    pub instances: AtomicU64,
    /// Instances retired holding most of their memory limit, and calls tried
    /// again on a fresh instance after one ran out of memory that earlier
    /// calls had used up.
    pub recycled: AtomicU64,
    /// `wasi:http` requests refused because the host was not allowed.
    pub denied: AtomicU64,
    /// Time spent in calls, in nanoseconds.
    pub call_nanos: AtomicU64,
}

impl PluginStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What every instance of a plugin shares: its name, config and grants.
pub struct PluginInfo {
    pub name: String,
    /// Where it is used: `transforms[0]`, `receivers[1].wasm`.
    pub place: String,
    config: HashMap<String, String>,
    allowed_hosts: Vec<HostRule>,
    pub limits: Limits,
    pub stats: PluginStats,
}

impl std::fmt::Debug for PluginInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config values may hold expanded secrets: keys only.
        f.debug_struct("PluginInfo")
            .field("name", &self.name)
            .field("config_keys", &self.config.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limits", &self.limits)
            .finish()
    }
}

impl PluginInfo {
    fn new(spec: &PluginSpec) -> Self {
        Self {
            name: spec.name.clone(),
            place: spec.place.clone(),
            config: spec
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allowed_hosts: spec.allowed_hosts.clone(),
            limits: spec.limits,
            stats: PluginStats::default(),
        }
    }

    /// Whether `wasi:http` may reach `host:port`.
    fn allows(&self, host: &str, port: u16) -> bool {
        self.allowed_hosts
            .iter()
            .any(|rule| rule.matches(host, port))
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("plugin {place} ({path}): {reason}")]
pub struct LoadError {
    pub place: String,
    pub path: PathBuf,
    pub reason: String,
}

/// The plugins of a config, loaded and instantiated once, by their place in
/// the config (`transforms[0]`, `receivers[2].wasm`, …).
#[derive(Debug, Default, Clone)]
pub struct Plugins {
    by_place: BTreeMap<String, Arc<Plugin>>,
}

impl Plugins {
    /// Loads every plugin of `specs`, each expected to implement `world`.
    pub async fn load<'a>(
        specs: impl IntoIterator<Item = (&'a PluginSpec, World)>,
        cache: &Cache,
    ) -> Result<Self, LoadError> {
        let mut by_place = BTreeMap::new();
        for (spec, world) in specs {
            let plugin = Plugin::load(spec, cache, Some(world)).await?;
            by_place.insert(spec.place.clone(), Arc::new(plugin));
        }
        Ok(Self { by_place })
    }

    /// The plugin loaded for `place`.
    pub fn get(&self, place: &str) -> Option<Arc<Plugin>> {
        self.by_place.get(place).cloned()
    }
}

/// The WIT types hosts code sees (`cloud-event`, `delivery`).
pub mod bindings_types {
    pub use super::bindings::switchyard::plugin::types::{CloudEvent, Delivery};
}
