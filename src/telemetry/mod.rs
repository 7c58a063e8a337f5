//! What operators watch: Prometheus metrics (`metrics.rs`, read from the
//! pipeline's counters at scrape time), health (`/healthz`, `/readyz`) and
//! the HTTP server for both (`server.rs`); OpenTelemetry traces of every
//! event (`traces.rs`: the spans; `otlp.rs`: the exporter and its settings).
//!
//! [`Telemetry`] is the meeting point: the pipeline publishes what runs now
//! ([`Live`], replaced on every reload), the reloader counts reloads, leader
//! election sets the role.

pub mod config;
mod metrics;
mod nvsentinel;
pub mod otlp;
mod server;
pub mod traces;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use config::{
    Compat, OtlpProtocol, TelemetryConfig, TelemetrySpec, TracingConfig, TracingSpec,
};
pub use server::{ServeError, serve};

use crate::plugin::Plugin;
use crate::route::RouteTree;
use crate::sink::http::oauth2::TokenSource;
use crate::stats::{ReceiverStats, Stats};

/// The running pipeline as metrics see it; the pipeline publishes it
/// ([`Telemetry::set_live`]) on start and on every reload.
pub struct Live {
    pub stats: Arc<Stats>,
    /// The records between the source and its position.
    pub progress: Arc<dyn Progress>,
    pub routes: RouteTree,
    pub receivers: Vec<ReceiverView>,
    /// The global transforms' plugins.
    pub transforms: Vec<Arc<Plugin>>,
}

/// How far the source position is held back: what the pipeline's tracker
/// of unfinished records tells metrics.
pub trait Progress: Send + Sync {
    /// Records read but not yet finished by all their receivers.
    fn in_flight(&self) -> usize;
    /// At most this many may be in flight (`state.maxInFlight`).
    fn window(&self) -> usize;
    /// When the oldest unfinished record was read; `None` when none is.
    fn oldest_unfinished(&self) -> Option<std::time::Instant>;
}

/// A receiver, as metrics see it.
pub struct ReceiverView {
    pub name: Arc<str>,
    /// It has a disk buffer (its `buffer_*` stats mean something).
    pub disk_buffer: bool,
    pub stats: Arc<ReceiverStats>,
    /// Its OAuth2 token source, if any.
    pub tokens: Option<Arc<TokenSource>>,
    pub plugins: Vec<Arc<Plugin>>,
}

/// This replica's part in leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// No leader election: this process exports.
    Single = 0,
    /// Holds the lease and exports.
    Leader = 1,
    /// Waits for the lease.
    Standby = 2,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// Shared state behind `/metrics`, `/healthz` and `/readyz`.
#[derive(Default)]
pub struct Telemetry {
    live: Mutex<Option<Live>>,
    role: AtomicU8,
    /// Config reloads that took effect.
    pub reloads_succeeded: AtomicU64,
    /// Config reloads refused (invalid file, plugin that does not load).
    pub reloads_failed: AtomicU64,
    /// Whether the last reload attempt took effect (true before any).
    last_reload_failed: AtomicBool,
    /// Times this process became the leader.
    pub leaderships: AtomicU64,
    /// Whose metric names `/metrics` serves as well (`telemetry.compat`).
    compat: Option<Compat>,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Serves `compat`'s metric names beside Switchyard's own.
    pub fn with_compat(compat: Option<Compat>) -> Arc<Self> {
        Arc::new(Self {
            compat,
            ..Self::default()
        })
    }

    /// The pipeline runs `live` from now on.
    pub fn set_live(&self, live: Live) {
        *self.live.lock().expect("telemetry lock") = Some(live);
    }

    /// The pipeline stopped.
    pub fn clear_live(&self) {
        *self.live.lock().expect("telemetry lock") = None;
    }

    pub fn set_role(&self, role: Role) {
        let old = self.role.swap(role as u8, Ordering::Relaxed);
        if role == Role::Leader && old != Role::Leader as u8 {
            self.leaderships.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Leader,
            2 => Role::Standby,
            _ => Role::Single,
        }
    }

    /// Counts a reload attempt.
    pub fn reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.reloads_succeeded
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_reload_failed.store(!ok, Ordering::Relaxed);
    }

    /// `/readyz`: whether this replica does its job now, and what it is.
    pub fn readiness(&self) -> Readiness {
        let role = self.role();
        let live = self.live.lock().expect("telemetry lock");
        let (receivers, source_connected) = match live.as_ref() {
            Some(l) => (
                Some(l.receivers.len()),
                l.stats.source.connected.load(Ordering::Relaxed),
            ),
            None => (None, false),
        };
        // A standby is ready: it is healthy and waiting, which is its job.
        let ready = role == Role::Standby || (receivers.is_some() && source_connected);
        Readiness {
            ready,
            role,
            receivers,
            source_connected,
        }
    }
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub role: Role,
    /// Receivers built, when the pipeline runs.
    pub receivers: Option<usize>,
    pub source_connected: bool,
}

impl Readiness {
    /// One JSON object, e.g. `{"ready":true,"role":"leader","sourceConnected":true,"receivers":3}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "ready": self.ready,
            "role": self.role.as_str(),
            "sourceConnected": self.source_connected,
            "receivers": self.receivers,
        })
        .to_string()
    }
}
