//! The `switchyard` command line: `run`, `validate`, `route test`,
//! `deadletter replay`, `plugin check`. Only the arguments and logging are
//! here; what each command does is in [`crate::app`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app;

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
        Command::Validate(c) => app::validate(&c.config),
        Command::Run(c) => app::run(&c.config),
        Command::Route(RouteCommand::Test { config, events }) => {
            app::route_test(&config.config, events.as_deref())
        }
        Command::Deadletter(DeadletterCommand::Replay {
            config,
            receiver,
            dlq_file,
        }) => app::replay(&config.config, &receiver, &dlq_file),
        Command::Plugin(PluginCommand::Check { plugin, config }) => {
            app::plugin_check(&plugin, config.as_deref())
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
