//! The source position: loaded at start (waiting for a store that is not
//! reachable yet) and persisted while running — every `state.flushInterval`
//! when it has moved, and once more at shutdown — from what the tracker
//! says is finished.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Tracker;
use crate::state::{PositionStore, StateError};
use crate::stats::Stats;

/// Loads the saved position, retrying a store that is not reachable yet (a
/// database still starting) until it answers or shutdown: `Ok(None)`.
pub(super) async fn load_position(
    store: &dyn PositionStore,
    shutdown: &CancellationToken,
) -> Result<Option<Option<serde_json::Value>>, StateError> {
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        match store.load().await {
            Ok(position) => return Ok(Some(position)),
            Err(StateError::Remote(e)) => {
                warn!(error = %e, retry_in = ?wait, "cannot load the saved position yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Persists the committed position every `interval` when it has moved, and
/// once more when stopped. Returns the last save's result.
pub(super) async fn checkpoint(
    store: Option<Arc<dyn PositionStore>>,
    tracker: Arc<Tracker>,
    stats: Arc<Stats>,
    interval: std::time::Duration,
    stop: CancellationToken,
) -> Result<(), StateError> {
    let Some(store) = store else { return Ok(()) };
    let mut saved_version = 0;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.cancelled() => true,
        };
        let (position, version) = tracker.committed();
        if let Some(position) = position.filter(|_| version != saved_version) {
            match store.save(&position.to_json()).await {
                Ok(()) => {
                    saved_version = version;
                    stats.positions_saved.fetch_add(1, Ordering::Relaxed);
                    let now = chrono::Utc::now().timestamp_millis();
                    stats
                        .position_saved_at
                        .store(u64::try_from(now).unwrap_or(0), Ordering::Relaxed);
                }
                Err(e) if stopping => return Err(e),
                Err(e) => warn!(error = %e, "cannot persist source position; will retry"),
            }
        }
        if stopping {
            return Ok(());
        }
    }
}
