//! `state`: where positions are kept and how far the source may run ahead
//! of them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::common::{Diagnostics, Duration, Spanned, expanded, nonzero};

/// `state: {dir, flushInterval}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateConfig {
    /// Directory for the persisted source position (created if missing).
    #[serde(default = "default_state_dir")]
    pub dir: Spanned<String>,
    /// How often an advanced position is written (and always at shutdown).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    /// At most this many records read but not yet finished by all their
    /// receivers (the window between the source and the position): when it
    /// is full the source waits, so a receiver stuck on one record bounds
    /// memory instead of growing it with the stream.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: Spanned<usize>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
            flush_interval: default_flush_interval(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

fn default_max_in_flight() -> Spanned<usize> {
    Spanned::new(
        DEFAULT_MAX_IN_FLIGHT,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// `state.maxInFlight`'s default: twice a receiver queue's default size.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 65_536;

fn default_state_dir() -> Spanned<String> {
    Spanned::new(
        "/var/lib/switchyard".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}

/// `state`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSpec {
    pub dir: PathBuf,
    pub flush_interval: std::time::Duration,
    /// The window between the source and the position (`state.maxInFlight`).
    pub max_in_flight: usize,
}

impl StateConfig {
    pub fn compile(&self, diags: &mut Diagnostics) -> Option<StateSpec> {
        let dir = expanded(&self.dir, "state.dir", diags);
        if self.max_in_flight.value == 0 {
            diags.error(
                Some(self.max_in_flight.referenced),
                "state.maxInFlight: must be at least 1 (the records read but not yet delivered)",
            );
        }
        nonzero(self.flush_interval, "state.flushInterval", diags);
        Some(StateSpec {
            dir: PathBuf::from(dir?),
            flush_interval: self.flush_interval.0,
            max_in_flight: self.max_in_flight.value,
        })
    }
}
