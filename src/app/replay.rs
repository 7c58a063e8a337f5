//! `switchyard deadletter replay`: a dead letter file sent to its receiver
//! again; what fails again is written beside it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{load, runtime};
use crate::deadletter;
use crate::pipeline::replay;
use crate::plugin::Plugins;

/// Replays `dlq` to the receiver named `receiver` in the config at `path`.
pub fn replay(path: &Path, receiver: &str, dlq: &Path) -> ExitCode {
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
            crate::sink::ReceiverKind::Wasm(p) => vec![(&**p, crate::plugin::World::Sink)],
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
            Ok(built) => built.sink,
            Err(e) => {
                eprintln!("{e}");
                return None;
            }
        };
        Some(replay::replay(spec, sink.as_ref(), entries).await)
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
