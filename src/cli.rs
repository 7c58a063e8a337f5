//! The `switchyard` command line: `run`, `validate`, `route test`,
//! `deadletter replay`, `plugin check`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{self, Compiled, Diagnostics, SourceSpec};
use crate::event::AttributesReader;
use crate::leader::Lease;
use crate::plugin::{PluginSpec, Plugins};
use crate::reload::Reloader;
use crate::telemetry::otlp::Tracing;
use crate::telemetry::traces::Tracer;
use crate::telemetry::{Role, Telemetry};

const EXAMPLES: &str = "\
Examples:
  switchyard run -c config/quickstart.yaml      export events as configured
  switchyard validate -c switchyard.yaml        check a config, print every error
  switchyard route test -c switchyard.yaml events.jsonl
                                                show which receivers each event reaches
  switchyard deadletter replay -c switchyard.yaml --receiver collector dlq.jsonl
                                                send dead-lettered events again
  switchyard plugin check plugins/dist/redact.wasm -c switchyard.yaml
                                                which world a plugin implements, what it imports
  RUST_LOG=switchyard=debug switchyard run      more detail in the log";

/// Switchyard: reads events where they are born, routes them through a YAML
/// route tree and delivers them as CloudEvents 1.0 to many receivers.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Log line format (logs go to stderr; the level comes from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The config file argument shared by the commands.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(
        short,
        long,
        env = "SWITCHYARD_CONFIG",
        default_value = "switchyard.yaml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the exporter until the source ends or SIGINT/SIGTERM.
    Run(ConfigArg),
    /// Check a config file: prints every problem as FILE:LINE:COL: message
    /// and exits 1, or prints `ok`.
    Validate(ConfigArg),
    /// Route commands.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Dead letter commands.
    #[command(subcommand)]
    Deadletter(DeadletterCommand),
    /// WebAssembly plugin commands.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Load a plugin: print the world it implements and the imports it
    /// needs with what the host grants each, instantiate it, and fail
    /// (exit 1) if it cannot run as configured — e.g. it makes HTTP requests
    /// and the config grants it no allowedHosts.
    Check {
        /// The component (`.wasm`).
        plugin: PathBuf,
        /// Check it as this config uses it (its config, grants and limits);
        /// without, it is checked with nothing granted.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadletterCommand {
    /// Send the events of a dead letter file to a receiver again. Events that
    /// fail again are written to DLQ_FILE.remaining (exit 1).
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// The receiver (by name in the config) to send them to.
        #[arg(long)]
        receiver: String,
        /// The dead letter file.
        dlq_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Read records (as the configured mapping expects) and print, for each,
    /// one JSON line {"id":…,"receivers":[…]}.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// Records file, one per line; `-` or nothing reads stdin.
        events: Option<PathBuf>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Validate(c) => validate(&c.config),
        Command::Run(c) => run(&c.config),
        Command::Route(RouteCommand::Test { config, events }) => {
            route_test(&config.config, events.as_deref())
        }
        Command::Deadletter(DeadletterCommand::Replay {
            config,
            receiver,
            dlq_file,
        }) => replay(&config.config, &receiver, &dlq_file),
        Command::Plugin(PluginCommand::Check { plugin, config }) => {
            plugin_check(&plugin, config.as_deref())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads and validates, printing diagnostics to stderr. Warnings do not fail.
fn load(path: &Path) -> Result<Compiled, ()> {
    let file = path.display().to_string();
    let result = config::load(path).and_then(|c| config::validate(&c));
    let print = |d: &Diagnostics| eprint!("{}", d.render(&file));
    match result {
        Ok((compiled, warnings)) => {
            print(&warnings);
            Ok(compiled)
        }
        Err(diags) => {
            print(&diags);
            Err(())
        }
    }
}

fn validate(path: &Path) -> ExitCode {
    let Ok(compiled) = load(path) else {
        return ExitCode::FAILURE;
    };
    // Plugins are loaded and instantiated: a wrong world, a missing grant
    // or a broken component is caught here, not at the first event.
    if let Err(e) = runtime().block_on(load_plugins(&compiled)) {
        eprintln!("{}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("ok");
    ExitCode::SUCCESS
}

async fn load_plugins(compiled: &Compiled) -> Result<Plugins, crate::plugin::LoadError> {
    Plugins::load(compiled.plugins(), &compiled.plugin_cache()).await
}

fn plugin_check(plugin: &Path, config_path: Option<&Path>) -> ExitCode {
    let (specs, cache) = match config_path {
        None => (
            vec![(
                PluginSpec::bare(
                    plugin.to_owned(),
                    crate::plugin::config::DEFAULT_SINK_TIMEOUT,
                ),
                None,
            )],
            crate::plugin::Cache::none(),
        ),
        Some(path) => {
            let Ok(compiled) = load(path) else {
                return ExitCode::FAILURE;
            };
            let wanted = std::fs::canonicalize(plugin).unwrap_or_else(|_| plugin.to_owned());
            let specs: Vec<_> = compiled
                .plugins()
                .into_iter()
                .filter(|(s, _)| std::fs::canonicalize(&s.path).is_ok_and(|p| p == wanted))
                .map(|(s, w)| (s.clone(), Some(w)))
                .collect();
            if specs.is_empty() {
                eprintln!(
                    "{} is not used by {}; without -c it is checked with nothing granted",
                    plugin.display(),
                    path.display()
                );
                return ExitCode::FAILURE;
            }
            (specs, compiled.plugin_cache())
        }
    };
    let mut failed = false;
    runtime().block_on(async {
        for (spec, world) in &specs {
            match crate::plugin::check(spec, &cache, *world).await {
                Ok(report) => {
                    if config_path.is_some() {
                        println!("{} ({}):", spec.place, report.name);
                    }
                    print!("{}", report.render(spec));
                }
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                }
            }
        }
    });
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// Exit code of a leader that lost its lease: Kubernetes restarts it, and
/// it comes back as a standby.
const EXIT_LEASE_LOST: i32 = 75;

fn run(path: &Path) -> ExitCode {
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

fn route_test(path: &Path, events: Option<&Path>) -> ExitCode {
    let Ok(compiled) = load(path) else {
        return ExitCode::FAILURE;
    };
    let input: Box<dyn BufRead> = match events {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let names: Vec<&str> = compiled.receivers.iter().map(|r| r.name.as_str()).collect();
    let mut out = std::io::stdout().lock();
    let mut targets = Vec::new();
    for (n, line) in input.split(b'\n').enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("read error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match compiled.mapper.map(&line) {
            Ok(event) => {
                compiled.routes.route(&event, &mut targets);
                let receivers: Vec<&str> = targets.iter().map(|&r| names[r]).collect();
                let row = serde_json::json!({"id": event.id(), "receivers": receivers});
                if writeln!(out, "{row}").is_err() {
                    return ExitCode::SUCCESS; // stdout closed (e.g. `| head`)
                }
            }
            Err(e) => eprintln!(
                "line {}: malformed record (_id {}): {}",
                n + 1,
                e.id.as_deref().unwrap_or("unknown"),
                e.reason
            ),
        }
    }
    ExitCode::SUCCESS
}

fn replay(path: &Path, receiver: &str, dlq: &Path) -> ExitCode {
    use crate::pipeline::deadletter;
    let Ok(compiled) = load(path) else {
        return ExitCode::FAILURE;
    };
    let Some(spec) = compiled.receivers.iter().find(|r| r.name == receiver) else {
        let names: Vec<&str> = compiled.receivers.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "no receiver {receiver:?} in {}; receivers: {}",
            path.display(),
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let lines = match deadletter::read(dlq) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("{}: {e}", dlq.display());
            return ExitCode::FAILURE;
        }
    };
    let mut entries = Vec::new();
    for line in lines {
        match line {
            Ok(entry) => entries.push(entry),
            Err(e) => eprintln!("{}: {e}; skipped", dlq.display()),
        }
    }
    let total = entries.len();
    let report = runtime().block_on(async {
        // Only this receiver's own plugin: replay runs no transforms.
        let own = match &spec.kind {
            crate::config::ReceiverKind::Wasm(p) => vec![(&**p, crate::plugin::World::Sink)],
            _ => Vec::new(),
        };
        let plugins = match Plugins::load(own, &compiled.plugin_cache()).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return None;
            }
        };
        let sink = match crate::sink::build(spec, &plugins) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return None;
            }
        };
        Some(deadletter::replay(spec, sink.as_ref(), entries).await)
    });
    let Some(report) = report else {
        return ExitCode::FAILURE;
    };
    println!(
        "replayed {} of {total} events to receiver {receiver}",
        report.delivered
    );
    if report.failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    let mut remaining = dlq.as_os_str().to_owned();
    remaining.push(".remaining");
    let remaining = PathBuf::from(remaining);
    let mut out = String::new();
    for (mut entry, error) in report
        .failed
        .iter()
        .map(|(e, r)| (serde_json::to_value(e).unwrap(), r))
    {
        entry["error"] = serde_json::Value::String(error.clone());
        out.push_str(&entry.to_string());
        out.push('\n');
    }
    match std::fs::write(&remaining, out) {
        Ok(()) => eprintln!(
            "{} failed again; written to {}",
            report.failed.len(),
            remaining.display()
        ),
        Err(e) => eprintln!(
            "{} failed again and cannot be written to {}: {e}",
            report.failed.len(),
            remaining.display()
        ),
    }
    ExitCode::FAILURE
}
