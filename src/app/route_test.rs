//! `switchyard route test`: which receivers each record would reach.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use super::load;
use crate::event::AttributesReader;

/// Maps and routes each record of `events` (stdin when `None` or `-`),
/// printing one JSON line per event.
pub fn route_test(path: &Path, events: Option<&Path>) -> ExitCode {
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
