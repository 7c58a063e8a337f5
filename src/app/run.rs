//! `switchyard run`: the exporter's runtime. Telemetry and tracing start
//! first, then leader election (when enabled), then the pipeline with live
//! reload until the source ends or a signal stops it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{load, runtime};
use crate::config::Compiled;
use crate::leader::Lease;
use crate::reload::Reloader;
use crate::source::SourceSpec;
use crate::telemetry::otlp::Tracing;
use crate::telemetry::traces::Tracer;
use crate::telemetry::{Role, Telemetry};

/// Exit code of a leader that lost its lease: Kubernetes restarts it, and
/// it comes back as a standby.
pub const EXIT_LEASE_LOST: i32 = 75;

/// Runs the exporter as `path` configures it.
pub fn run(path: &Path) -> ExitCode {
    let Ok(compiled) = load(path) else {
        return ExitCode::FAILURE;
    };
    runtime().block_on(serve(path, compiled))
}

/// Telemetry and tracing, leader election, then [`export`].
async fn serve(path: &Path, compiled: Compiled) -> ExitCode {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    info!(config = %path.display(), receivers = compiled.receivers.len(), "switchyard starting");
    let telemetry = Telemetry::with_compat(compiled.telemetry.as_ref().and_then(|t| t.compat));
    if let Some(t) = &compiled.telemetry {
        // Serves until the process exits, also while draining.
        if let Err(e) =
            crate::telemetry::serve(t.listen, telemetry.clone(), CancellationToken::new()).await
        {
            error!(error = %e, "cannot start the telemetry server");
            return ExitCode::FAILURE;
        }
    }
    let tracing = match compiled.tracing.as_ref().map(Tracing::start).transpose() {
        Ok(tracing) => tracing,
        Err(e) => {
            error!(error = %e, "cannot start tracing");
            return ExitCode::FAILURE;
        }
    };
    let tracer = tracing.as_ref().map(Tracing::tracer);
    let code = lead_and_export(path, compiled, telemetry, tracer, shutdown).await;
    if let Some(tracing) = tracing {
        tracing.shutdown().await;
    }
    code
}

/// Leader election (when enabled), then [`export`].
async fn lead_and_export(
    path: &Path,
    compiled: Compiled,
    telemetry: Arc<Telemetry>,
    tracer: Option<Tracer>,
    shutdown: CancellationToken,
) -> ExitCode {
    let (Some(spec), SourceSpec::Mongodb(mongo)) = (compiled.leader.clone(), &compiled.source)
    else {
        return export(path, compiled, telemetry, tracer, shutdown).await;
    };
    let lease = match Lease::connect(&mongo.uri, mongo.tls.as_ref(), &mongo.database, spec).await {
        Ok(lease) => lease,
        Err(e) => {
            error!(error = %e, "switchyard stopped with an error");
            return ExitCode::FAILURE;
        }
    };
    telemetry.set_role(Role::Standby);
    let Some(deadline) = lease.acquire(&shutdown).await else {
        return ExitCode::SUCCESS; // shut down while standing by
    };
    info!(lease = %lease.spec().lease, identity = %lease.spec().identity, "this replica holds the lease; exporting");
    telemetry.set_role(Role::Leader);
    // The file may have changed while this replica stood by.
    let compiled = match load(path) {
        Ok(newer) => newer,
        Err(()) => {
            warn!("the config file is not valid now; exporting with the one read at start");
            compiled
        }
    };
    let (lost, stop) = (CancellationToken::new(), CancellationToken::new());
    let holding = async {
        lease.hold(deadline, lost.clone(), stop.clone()).await;
        lost.cancelled().await;
    };
    tokio::select! {
        code = export(path, compiled, telemetry, tracer, shutdown) => {
            stop.cancel();
            lease.release().await;
            code
        }
        () = holding => {
            error!("exiting so that no two replicas export at once; unfinished events are read again by the next leader");
            std::process::exit(EXIT_LEASE_LOST);
        }
    }
}

/// Runs the pipeline with hot reload until the source ends or `shutdown`.
async fn export(
    path: &Path,
    compiled: Compiled,
    telemetry: Arc<Telemetry>,
    tracer: Option<Tracer>,
    shutdown: CancellationToken,
) -> ExitCode {
    let (reloads, reloaded) = tokio::sync::mpsc::channel(1);
    let reloader = Reloader::new(path, compiled.clone(), reloads, Some(telemetry.clone()));
    if let Err(e) = reloader.spawn(shutdown.clone()) {
        warn!(error = %e, "config changes will not be picked up; restart to apply them");
    }
    let options = crate::pipeline::Options {
        reloads: Some(reloaded),
        telemetry: Some(telemetry),
        tracer,
        ..Default::default()
    };
    match crate::pipeline::run_with(compiled, options, shutdown).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "switchyard stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGHUP reloads the config while exporting; a standby ignores it
    // (registering a handler replaces the default action, termination).
    let _hangup = signal(SignalKind::hangup());
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    info!("signal received; stopping the source and draining queues (again to exit at once)");
    shutdown.cancel();
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    warn!("second signal; exiting without draining");
    std::process::exit(130);
}
