//! The YAML shape of `leaderElection` (one exporting replica at a time)
//! and its validation.

use serde::Deserialize;

use crate::config::common::{Diagnostics, Duration, Spanned};

/// `leaderElection: {enabled, lease, leaseDuration, renewInterval, …}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Only the replica holding the lease reads and exports; the others wait
    /// as standbys.
    #[serde(default)]
    pub enabled: bool,
    /// The lease document's `_id`: replicas with the same lease compete.
    #[serde(default = "default_lease")]
    pub lease: Spanned<String>,
    /// The collection of lease documents, in `source.mongodb.database`.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// How long a lease lasts without renewal: a dead leader's standby takes
    /// over within this time.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby tries to take over). At
    /// most half of `leaseDuration`.
    #[serde(default = "default_renew_interval")]
    pub renew_interval: Duration,
    /// This replica's name in the lease. Default: `$POD_NAME`, else the
    /// host name, with the process id.
    #[serde(default)]
    pub identity: Option<String>,
}

fn default_lease() -> Spanned<String> {
    Spanned::new(
        "switchyard".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_collection() -> String {
    "Leases".to_owned()
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_renew_interval() -> Duration {
    Duration::from_secs(5)
}

/// `leaderElection`, resolved (only when enabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSpec {
    pub lease: String,
    pub collection: String,
    pub lease_duration: std::time::Duration,
    pub renew_interval: std::time::Duration,
    pub identity: String,
}

pub fn compile(
    config: Option<&LeaderElectionConfig>,
    has_mongodb: bool,
    diags: &mut Diagnostics,
) -> Option<LeaderSpec> {
    let config = config.filter(|c| c.enabled)?;
    let at = Some(config.lease.referenced);
    if !has_mongodb {
        diags.error(
            at,
            "leaderElection: needs a mongodb source (the lease is a document in its database)",
        );
    }
    if config.lease.value.is_empty() {
        diags.error(at, "leaderElection.lease: must not be empty");
    }
    let (duration, renew) = (config.lease_duration.0, config.renew_interval.0);
    if renew.is_zero() || renew * 2 > duration {
        diags.error(
            at,
            format!(
                "leaderElection.renewInterval: must be more than zero and at most half of leaseDuration ({})",
                config.lease_duration
            ),
        );
    }
    if duration.as_millis() < 1000 && !duration.is_zero() {
        diags.warning(
            at,
            "leaderElection.leaseDuration: under 1s leaves no room for a slow database",
        );
    }
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    Some(LeaderSpec {
        lease: config.lease.value.clone(),
        collection: config.collection.clone(),
        lease_duration: duration,
        renew_interval: renew,
        identity,
    })
}

/// `$POD_NAME` (or the host name) and the process id: unique per process,
/// readable in the lease document.
fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "switchyard".to_owned());
    format!("{host}/{}", std::process::id())
}
