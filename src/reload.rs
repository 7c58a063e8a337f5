//! Hot reload. Watches the config file's directory — which also catches the
//! way Kubernetes updates a mounted ConfigMap: it swaps the `..data` symlink
//! and never writes the file itself — and SIGHUP.
//!
//! A changed file is checked exactly as `switchyard validate` checks it
//! (parse, validate, load every plugin). Valid: it goes to the pipeline,
//! which switches over between two records (see `pipeline::topology`).
//! Invalid: every error is logged with its line and counted, and the old
//! config keeps running.
//!
//! `source`, `state`, `pluginCache`, `telemetry`, `leaderElection` and
//! `shutdownTimeout` are read at start only: a reload that changes them
//! applies everything else and warns that those need a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{self, Compiled};
use crate::pipeline::Reload;
use crate::plugin::Plugins;
use crate::telemetry::Telemetry;

/// Events closer together than this are one change (an editor's or
/// Kubernetes' several steps).
const SETTLE: Duration = Duration::from_millis(150);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {dir} for config changes: {source}")]
pub struct WatchError {
    dir: String,
    source: notify::Error,
}

/// Watches `path` until `shutdown`, sending valid changed configs to the
/// pipeline through `reloads`. `running` is the config the pipeline
/// started with.
pub struct Reloader {
    path: PathBuf,
    running: Compiled,
    /// The text of the last config tried: an unchanged file is not reloaded
    /// on a mere touch (SIGHUP always reloads).
    last_text: Option<String>,
    reloads: mpsc::Sender<Reload>,
    telemetry: Option<Arc<Telemetry>>,
}

impl Reloader {
    pub fn new(
        path: &Path,
        running: Compiled,
        reloads: mpsc::Sender<Reload>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Self {
        Self {
            path: path.to_owned(),
            running,
            last_text: std::fs::read_to_string(path).ok(),
            reloads,
            telemetry,
        }
    }

    /// Starts watching (errors here are reported before the task runs) and
    /// returns the task.
    pub fn spawn(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, WatchError> {
        let (tx, mut changes) = mpsc::channel::<()>(1);
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    // Full means a check is pending already.
                    let _ = tx.try_send(());
                }
            })
            .map_err(|source| WatchError {
                dir: dir.display().to_string(),
                source,
            })?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                dir: dir.display().to_string(),
                source,
            })?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| WatchError {
                dir: dir.display().to_string(),
                source: notify::Error::io(e),
            })?;
        info!(config = %self.path.display(), "watching the config file for changes (and SIGHUP)");
        Ok(tokio::spawn(async move {
            let _watcher = watcher; // dropping it stops the watch
            loop {
                let forced = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(()) = changes.recv() => false,
                    Some(()) = hangup.recv() => true,
                };
                tokio::time::sleep(SETTLE).await;
                while changes.try_recv().is_ok() {}
                self.check(forced).await;
            }
        }))
    }

    /// Reads the file and, if it changed (or `forced`), reloads it.
    async fn check(&mut self, forced: bool) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            // Mid-swap, or removed: the next event tells.
            Err(e) if !forced => {
                warn!(config = %self.path.display(), error = %e, "cannot read the config file; keeping the running config");
                return;
            }
            Err(e) => {
                self.refused(&[format!("{}: cannot read config: {e}", self.path.display())]);
                return;
            }
        };
        if !forced && self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        info!(config = %self.path.display(), signal = forced, "config changed; validating");
        self.last_text = Some(text.clone());
        match self.prepare(&text).await {
            Ok((compiled, plugins)) => self.apply(compiled, plugins).await,
            Err(lines) => self.refused(&lines),
        }
    }

    /// Everything `switchyard validate` checks; the errors as
    /// `FILE:LINE:COL: message` lines.
    async fn prepare(&self, text: &str) -> Result<(Compiled, Plugins), Vec<String>> {
        let file = self.path.display().to_string();
        let lines = |d: &config::Diagnostics| -> Vec<String> {
            d.render(&file).lines().map(str::to_owned).collect()
        };
        let (compiled, warnings) = config::parse(text)
            .and_then(|c| config::validate(&c))
            .map_err(|d| lines(&d))?;
        for line in lines(&warnings) {
            warn!("{line}");
        }
        let plugins = Plugins::load(compiled.plugins(), &self.running.plugin_cache())
            .await
            .map_err(|e| vec![format!("{file}: {e}")])?;
        Ok((compiled, plugins))
    }

    async fn apply(&mut self, compiled: Compiled, plugins: Plugins) {
        for section in restart_only(&self.running, &compiled) {
            warn!(
                section,
                "config reloaded, but this section is read at start only; the running one stays until a restart"
            );
        }
        let (done, answer) = oneshot::channel();
        let receivers = compiled.receivers.len();
        let reload = Reload {
            compiled,
            plugins,
            done,
        };
        if self.reloads.send(reload).await.is_err() {
            return; // the pipeline has stopped
        }
        match answer.await {
            Ok(Ok(())) => {
                info!(config = %self.path.display(), receivers, "config reloaded");
                self.count(true);
            }
            Ok(Err(e)) => self.refused(&[format!("{}: {e}", self.path.display())]),
            Err(_) => {} // the pipeline stopped before taking it
        }
    }

    fn refused(&self, lines: &[String]) {
        for line in lines {
            error!("{line}");
        }
        error!(config = %self.path.display(), errors = lines.len(), "config reload refused; the running config stays in force");
        self.count(false);
    }

    fn count(&self, ok: bool) {
        if let Some(t) = &self.telemetry {
            t.reloaded(ok);
        }
    }
}

/// The sections that differ between `running` and `new` but only take
/// effect at start.
fn restart_only(running: &Compiled, new: &Compiled) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.source != new.source {
        changed.push("source");
    }
    if running.state != new.state {
        changed.push("state");
    }
    if running.plugin_cache != new.plugin_cache {
        changed.push("pluginCache");
    }
    if running.telemetry != new.telemetry {
        changed.push("telemetry");
    }
    if running.leader != new.leader {
        changed.push("leaderElection");
    }
    if running.shutdown_timeout != new.shutdown_timeout {
        changed.push("shutdownTimeout");
    }
    changed
}
