//! The application: what each command of the command line does, once
//! [`crate::cli`] has parsed it. `run.rs` is the exporter's runtime
//! (telemetry server, tracing, leader election, the pipeline with live
//! reload, signals, exit codes); the other commands read a config and act
//! on it once.

mod check;
mod replay;
mod route_test;
mod run;

use std::path::Path;

use crate::config::{self, Compiled, Diagnostics};

pub use check::{plugin_check, validate};
pub use replay::replay;
pub use route_test::route_test;
pub use run::{EXIT_LEASE_LOST, run};

/// Loads and validates, printing diagnostics to stderr. Warnings do not fail.
pub(crate) fn load(path: &Path) -> Result<Compiled, ()> {
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

/// The multi-threaded runtime every async command runs on.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}
