//! Leader election: several replicas, one exporting at a time. The lease is
//! one document in the source's MongoDB (no new dependency):
//!
//! ```text
//! {_id: "switchyard", holder: "pod-a/7", expiresAt: ISODate, renewedAt: ISODate, acquiredAt: ISODate}
//! ```
//!
//! Taking and renewing are one atomic `findAndModify` (an upsert with an
//! update pipeline) judged by the database's clock (`$$NOW`), so replicas'
//! clocks do not matter: it writes this replica as the holder only if the
//! lease is free, expired or already its own, and the document it returns
//! says who holds the lease now.
//!
//! Safety: before each attempt the leader notes its own monotonic time; a
//! successful attempt makes the lease valid until that time plus
//! `leaseDuration`, which is never later than the expiry the database wrote.
//! If the leader cannot renew, it stops exporting (the process exits) a
//! margin before that local deadline — so before any standby can take the
//! lease. A standby that takes over resumes from the persisted position.
//!
//! `config.rs`: the `leaderElection` settings.

pub mod config;

use std::time::Duration;

use mongodb::Collection;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{CollectionOptions, ReturnDocument, WriteConcern};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::source::mongodb::MongoTlsSpec;

pub use config::{LeaderElectionConfig, LeaderSpec};

/// The lease, as one replica sees it.
pub struct Lease {
    coll: Collection<Document>,
    spec: LeaderSpec,
}

/// Why the lease could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("leader election: {0}")]
pub struct LeaseError(String);

impl Lease {
    /// The lease `spec.lease` in `spec.collection` of `database` (the
    /// source's) at `uri`, with the source's `tls`. Connects lazily: an
    /// unreachable database shows in the first attempt.
    pub async fn connect(
        uri: &str,
        tls: Option<&MongoTlsSpec>,
        database: &str,
        spec: LeaderSpec,
    ) -> Result<Self, LeaseError> {
        let client = crate::source::mongodb::connect(uri, tls, "switchyard-lease")
            .await
            .map_err(|e| LeaseError(format!("cannot connect to MongoDB: {e}")))?;
        let coll = client.database(database).collection_with_options(
            &spec.collection,
            CollectionOptions::builder()
                .write_concern(WriteConcern::majority())
                .build(),
        );
        Ok(Self { coll, spec })
    }

    pub fn spec(&self) -> &LeaderSpec {
        &self.spec
    }

    /// Takes or renews the lease. `Some(deadline)`: this replica holds it
    /// and must stop exporting by `deadline` unless renewed. `None`:
    /// another replica holds it.
    pub async fn try_acquire(&self) -> Result<Option<Instant>, LeaseError> {
        let sent = Instant::now();
        let me = &self.spec.identity;
        let millis = i64::try_from(self.spec.lease_duration.as_millis()).unwrap_or(i64::MAX);
        // The condition lives in the update: an upsert cannot filter with
        // `$expr`. `ok`: free, expired, or ours already.
        let update = vec![
            doc! {"$set": {
                "previous": "$holder",
                "ok": {"$or": [
                    {"$eq": ["$holder", me]},
                    {"$lt": [{"$ifNull": ["$expiresAt", DateTime::MIN]}, "$$NOW"]},
                ]},
            }},
            doc! {"$set": {
                "holder": {"$cond": ["$ok", me, "$holder"]},
                "expiresAt": {"$cond": ["$ok", {"$add": ["$$NOW", millis]}, "$expiresAt"]},
                "renewedAt": {"$cond": ["$ok", "$$NOW", "$renewedAt"]},
                "acquiredAt": {"$cond": [
                    {"$and": ["$ok", {"$ne": ["$previous", me]}]}, "$$NOW", "$acquiredAt",
                ]},
            }},
            doc! {"$unset": ["previous", "ok"]},
        ];
        let lease = self
            .coll
            .find_one_and_update(doc! {"_id": &self.spec.lease}, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(|e| LeaseError(e.to_string()))?;
        let holder = lease.as_ref().and_then(|d| d.get_str("holder").ok());
        if holder == Some(me.as_str()) {
            Ok(Some(sent + self.spec.lease_duration - self.margin()))
        } else {
            Ok(None)
        }
    }

    /// Gives the lease up (graceful shutdown): a standby takes over at its
    /// next attempt instead of waiting for the expiry.
    pub async fn release(&self) {
        let filter = doc! {"_id": &self.spec.lease, "holder": &self.spec.identity};
        let update = vec![doc! {"$set": {"expiresAt": "$$NOW"}}];
        match self.coll.update_one(filter, update).await {
            Ok(_) => info!(lease = %self.spec.lease, "lease released"),
            Err(e) => {
                warn!(lease = %self.spec.lease, error = %e, "cannot release the lease; a standby takes over when it expires")
            }
        }
    }

    /// How long before the local deadline the leader stops: time for a
    /// last renewal attempt and for the process to exit.
    fn margin(&self) -> Duration {
        (self.spec.renew_interval / 2).min(Duration::from_secs(2))
    }

    /// Waits until this replica holds the lease (`Some(deadline)`), or
    /// `None` at shutdown. Database errors are logged and retried.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Option<Instant> {
        let mut logged_holder = false;
        loop {
            match self.try_acquire().await {
                Ok(Some(deadline)) => return Some(deadline),
                Ok(None) => {
                    if !logged_holder {
                        info!(lease = %self.spec.lease, identity = %self.spec.identity, "standing by: another replica holds the lease");
                        logged_holder = true;
                    }
                }
                Err(e) => warn!(error = %e, "cannot reach the lease; will try again"),
            }
            // Often enough to take over soon after the expiry.
            let poll = self.spec.renew_interval.min(Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Renews the lease every `renewInterval` until `stop`; cancels `lost`
    /// (and returns) when it can no longer be sure to hold it: another
    /// replica took it, or renewals failed until the deadline.
    pub async fn hold(
        &self,
        mut deadline: Instant,
        lost: CancellationToken,
        stop: CancellationToken,
    ) {
        let mut wait = self.spec.renew_interval;
        loop {
            let next = Instant::now() + wait;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next.min(deadline)) => {}
            }
            if Instant::now() >= deadline {
                error!(lease = %self.spec.lease, "lease not renewed in time; this replica stops exporting");
                lost.cancel();
                return;
            }
            let attempt = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.try_acquire() => r,
                _ = tokio::time::sleep_until(deadline) => Err(LeaseError("renewal timed out".into())),
            };
            // After a failure, try again soon: the deadline is near.
            wait = self.spec.renew_interval.min(Duration::from_secs(1));
            match attempt {
                Ok(Some(d)) => {
                    deadline = d;
                    wait = self.spec.renew_interval;
                }
                Ok(None) => {
                    error!(lease = %self.spec.lease, "another replica holds the lease; this replica stops exporting");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, left = ?deadline.saturating_duration_since(Instant::now()), "cannot renew the lease; retrying");
                }
            }
        }
    }
}
