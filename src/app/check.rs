//! `switchyard validate` and `switchyard plugin check`.

use std::path::Path;
use std::process::ExitCode;

use super::{load, runtime};
use crate::config::Compiled;
use crate::plugin::{PluginSpec, Plugins};

/// Validates a config and loads its plugins; prints `ok` or every problem.
pub fn validate(path: &Path) -> ExitCode {
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

/// Loads a plugin (as `config_path` uses it, if given) and reports on it.
pub fn plugin_check(plugin: &Path, config_path: Option<&Path>) -> ExitCode {
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
