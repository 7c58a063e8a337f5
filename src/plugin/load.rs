//! Loading a plugin: read the component, compile it (or take it from the
//! code cache), find the world it implements, check its imports against
//! what the config grants, and pre-link it. [`super::pool`] then makes and
//! pools its instances.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use sha2::Digest as _;
use tracing::debug;
use wasmtime::component::{Component, Linker};

use super::bindings::sink::SinkPre;
use super::bindings::{Transform as TransformBindings, TransformPre};
use super::check;
use super::engine::{self, Cache, Loaded};
use super::host::HostState;
use super::pool::{Plugin, Pre};
use super::{LoadError, PluginInfo, PluginSpec};

/// The world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Transform,
    Sink,
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            World::Transform => "switchyard:plugin/transform@0.1.0",
            World::Sink => "switchyard:plugin/sink@0.1.0",
        })
    }
}

/// The linker shared by all plugins: WASI (nothing granted), `wasi:http`
/// (policed per plugin), and `switchyard:plugin/host`.
fn linker() -> &'static Linker<HostState> {
    static LINKER: OnceLock<Linker<HostState>> = OnceLock::new();
    LINKER.get_or_init(|| {
        let mut linker = Linker::new(engine::engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links");
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .expect("wasi:http links");
        TransformBindings::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .expect("switchyard:plugin/host links");
        linker
    })
}

impl Plugin {
    /// Reads, compiles (or loads from `cache`), checks and pre-links the
    /// component, then makes its first instance. `expect`: the world the
    /// config uses it as.
    pub async fn load(
        spec: &PluginSpec,
        cache: &Cache,
        expect: Option<World>,
    ) -> Result<Self, LoadError> {
        let fail = |reason: String| LoadError {
            place: spec.place.clone(),
            path: spec.path.clone(),
            reason,
        };
        let bytes = std::fs::read(&spec.path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let started = Instant::now();
        let (component, loaded) = cache
            .load(&bytes)
            .map_err(|e| fail(format!("not a WebAssembly component: {}", root(&e))))?;
        debug!(plugin = %spec.name, ?loaded, took = ?started.elapsed(), "plugin code ready");
        let mut plugin = Self::from_component(spec, &component, loaded, expect).map_err(fail)?;
        plugin.digest = sha2::Sha256::digest(&bytes).into();
        // One instance now: start functions and initial memory are checked
        // at startup, not at the first event.
        let instance = plugin
            .instantiate()
            .await
            .map_err(|e| fail(e.to_string()))?;
        plugin.idle.lock().expect("pool lock").push(instance);
        Ok(plugin)
    }

    fn from_component(
        spec: &PluginSpec,
        component: &Component,
        loaded: Loaded,
        expect: Option<World>,
    ) -> Result<Self, String> {
        let engine = engine::engine();
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let world = if exports.iter().any(|e| e == "transform") {
            World::Transform
        } else if exports.iter().any(|e| e == "deliver") {
            World::Sink
        } else {
            return Err(format!(
                "exports neither `transform` nor `deliver` (it exports: {}); build it against wit/switchyard.wit",
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            ));
        };
        if let Some(expected) = expect.filter(|e| *e != world) {
            return Err(format!(
                "implements {world}, but is used as a {}",
                match expected {
                    World::Transform => "transform",
                    World::Sink => "sink (receiver)",
                }
            ));
        }
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
        check::grants(spec, &imports)?;
        let pre = linker()
            .instantiate_pre(component)
            .map_err(|e| format!("needs an import Switchyard does not provide: {}", root(&e)))?;
        let pre = match world {
            World::Transform => Pre::Transform(TransformPre::new(pre).map_err(|e| {
                format!(
                    "its `transform` export does not match {world}: {}",
                    root(&e)
                )
            })?),
            World::Sink => Pre::Sink(SinkPre::new(pre).map_err(|e| {
                format!("its `deliver` export does not match {world}: {}", root(&e))
            })?),
        };
        let can_block = imports
            .iter()
            .any(|i| i.starts_with("wasi:io/poll") || i.starts_with("wasi:http/"));
        Ok(Self {
            info: Arc::new(PluginInfo::new(spec)),
            world,
            pre,
            idle: Mutex::new(Vec::new()),
            imports,
            loaded,
            digest: [0; 32],
            can_block,
        })
    }
}

/// The innermost message of an error chain (wasmtime wraps traps in
/// backtrace context).
pub(super) fn root(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}
