//! The one `wasmtime::Engine` of the process, its epoch ticker, and the
//! on-disk cache of compiled components.
//!
//! Compiling a Python or JavaScript component (12–18 MB of WebAssembly)
//! takes seconds; loading the serialized machine code takes milliseconds. The
//! cache key is the SHA-256 of the component's bytes plus the engine's
//! compatibility hash (wasmtime version and the settings that change code),
//! so a new wasmtime or a changed plugin never loads stale code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances: the granularity of call deadlines. A
/// plugin that runs past its timeout is interrupted at the next tick.
pub const TICK: Duration = Duration::from_millis(10);

/// The process-wide engine (created on first use, with its ticker thread).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).expect("the engine settings are valid");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawn the epoch ticker thread");
        engine
    })
}

/// Where compiled components are kept, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    dir: Option<PathBuf>,
}

/// How a component was obtained, for logs and `plugin check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    Compiled,
    FromCache,
}

impl Cache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
        }
    }

    /// No cache: every load compiles.
    pub fn none() -> Self {
        Self { dir: None }
    }

    /// Compiles `bytes`, or loads the code compiled earlier for the same
    /// bytes and engine. Cache failures are logged and never fatal.
    #[allow(unsafe_code)] // Component::deserialize of our own cache (SAFETY below)
    pub fn load(&self, bytes: &[u8]) -> wasmtime::Result<(Component, Loaded)> {
        let engine = engine();
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, Loaded::Compiled));
        };
        let path = dir.join(cache_key(engine, bytes));
        if let Ok(code) = std::fs::read(&path) {
            // Read into memory rather than mapped: a cache file replaced or
            // truncated under a running process cannot fault it.
            // SAFETY: the file was written by `Component::serialize` of this
            // engine version and settings (both in its name), by this
            // program, into a directory that only it writes; wasmtime checks
            // the header and version before using it.
            match unsafe { Component::deserialize(engine, &code) } {
                Ok(component) => return Ok((component, Loaded::FromCache)),
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "unusable cached plugin code; compiling again");
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store(&path, &component) {
            warn!(dir = %dir.display(), error = %e, "cannot cache compiled plugin code");
        } else {
            debug!(file = %path.display(), "compiled plugin code cached");
        }
        Ok((component, Loaded::Compiled))
    }
}

/// `<sha256 of the bytes>-<engine compatibility hash>.cwasm`.
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut name = String::with_capacity(64 + 18 + 6);
    for b in digest {
        name.push_str(&format!("{b:02x}"));
    }
    name.push_str(&format!("-{:016x}.cwasm", hasher.finish()));
    name
}

/// Writes the compiled code atomically (temporary file, then rename).
fn store(path: &Path, component: &Component) -> std::io::Result<()> {
    let code = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = path.parent().expect("a cache file has a directory");
    std::fs::create_dir_all(dir)?;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name()
            .expect("a cache file has a name")
            .to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&tmp, code)?;
    std::fs::rename(&tmp, path)
}
