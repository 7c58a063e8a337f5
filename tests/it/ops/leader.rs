//! Leader election against a real MongoDB replica set.
//!
//! - The lease goes to one replica; another gets it only once it expired
//!   (or was released).
//! - A leader that cannot renew gives up before the lease can expire: at
//!   that moment no other replica could have taken it yet.
//! - Two `switchyard` processes: the leader is killed with SIGKILL during a
//!   load; the standby takes over within the lease duration (plus its poll)
//!   and resumes from the checkpoint; no document is lost, and the standby
//!   sent nothing while the leader lived.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mongodb::bson::Document;

use switchyard::leader::{LeaderSpec, Lease};
use tokio_util::sync::CancellationToken;

use support::http;
use support::metrics::scrape;
use support::mongo;
use support::process::Process;

fn spec(lease: &str, identity: &str, duration: Duration) -> LeaderSpec {
    LeaderSpec {
        lease: lease.to_owned(),
        collection: "Leases".to_owned(),
        lease_duration: duration,
        renew_interval: duration / 4,
        identity: identity.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_goes_to_one_replica_until_it_expires_or_is_released() {
    let uri = mongo::shared_uri().await;
    let db = mongo::unique_db("lease");
    let duration = Duration::from_secs(2);
    let a = Lease::connect(&uri, None, &db, spec("export", "a", duration))
        .await
        .unwrap();
    let b = Lease::connect(&uri, None, &db, spec("export", "b", duration))
        .await
        .unwrap();

    let taken = Instant::now();
    assert!(
        a.try_acquire().await.unwrap().is_some(),
        "a takes the free lease"
    );
    assert!(b.try_acquire().await.unwrap().is_none(), "b must wait");
    assert!(a.try_acquire().await.unwrap().is_some(), "a renews");
    let renewed = Instant::now();
    assert!(b.try_acquire().await.unwrap().is_none());

    // a stops renewing: b gets the lease once it expired, not before.
    let shutdown = CancellationToken::new();
    b.acquire(&shutdown).await.unwrap();
    let waited = renewed.elapsed();
    assert!(
        waited >= duration - Duration::from_millis(100),
        "b took the lease {waited:?} after a's last renewal (lease: {duration:?})"
    );
    assert!(a.try_acquire().await.unwrap().is_none(), "now a must wait");
    eprintln!(
        "lease moved {waited:?} after the last renewal ({:?} after the first take)",
        taken.elapsed()
    );

    // A release hands it over at once.
    b.release().await;
    assert!(a.try_acquire().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_gives_up_before_its_lease_expires() {
    let uri = mongo::shared_uri().await;
    let db = mongo::unique_db("lease_lost");
    let duration = Duration::from_secs(2);
    let leader = Lease::connect(&uri, None, &db, spec("export", "leader", duration))
        .await
        .unwrap();
    let deadline = leader.try_acquire().await.unwrap().expect("free lease");

    // The same replica, cut off from the database (nothing listens there).
    let cut_off = Lease::connect(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=60000",
        None,
        &db,
        spec("export", "leader", duration),
    )
    .await
    .unwrap();
    let (lost, stop) = (CancellationToken::new(), CancellationToken::new());
    cut_off.hold(deadline, lost.clone(), stop).await;
    assert!(lost.is_cancelled(), "it gave up");
    let gave_up = tokio::time::Instant::now();
    assert!(gave_up >= deadline, "not before its own deadline");

    // At that moment the lease is still valid in the database: nobody
    // else can take it yet, so no two replicas export at once.
    let other = Lease::connect(&uri, None, &db, spec("export", "other", duration))
        .await
        .unwrap();
    assert!(
        other.try_acquire().await.unwrap().is_none(),
        "the lease had not expired when the leader stopped"
    );
}

/// The ids of the events in a batch-mode request.
fn ids(request: &http::Recorded) -> Vec<String> {
    request
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_is_killed() {
    const DOCUMENTS: usize = 3000;
    let lease_duration = Duration::from_secs(3);
    let uri = mongo::shared_uri().await;
    let db = mongo::unique_db("failover");
    let receiver = http::receiver(http::always(202)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: failover}\n\
             source:\n  mongodb:\n    uri: \"$uri\"\n    database: $db\n    resumeTokens: {database: $db}\n    backfill: {rateLimit: 0}\n\
             state: {flushInterval: 200ms}\n\
             telemetry: {listen: 127.0.0.1:0}\n\
             leaderElection: {enabled: true, lease: failover, leaseDuration: 3s, renewInterval: 1s}\n\
             route: {match: [{receiver: out}]}\n\
             receivers:\n\
             \x20 - name: out\n\
             \x20   http:\n\
             \x20     endpoint: \"$url\"\n\
             \x20     mode: batch\n\
             \x20     batch: {maxEvents: 50, maxWait: 20ms}\n\
             \x20     headers: {X-Replica: \"${REPLICA}\"}\n", &[("uri", &uri), ("db", &db), ("url", &receiver.url())],
        ),
    )
    .unwrap();

    let mut a = Process::run(&config, &[("REPLICA", "a"), ("POD_NAME", "pod-a")]);
    a.wait_for("this replica holds the lease", Duration::from_secs(60))
        .await;
    let b = Process::run(&config, &[("REPLICA", "b"), ("POD_NAME", "pod-b")]);
    b.wait_for("standing by", Duration::from_secs(60)).await;
    let b_metrics = b.telemetry_addr().await;
    let ready = reqwest::get(format!("http://{b_metrics}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "a standby is ready");
    assert!(ready.text().await.unwrap().contains("\"role\":\"standby\""));
    assert_eq!(scrape(&b_metrics).await.get("switchyard_leader", &[]), 0.0);

    let docs = mongo::fresh_documents(DOCUMENTS, chrono::Utc::now());
    let want: HashSet<String> = docs.iter().map(mongo::event_id).collect();
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database(&db).collection::<Document>("HealthEvents");
    let mut killed = None;
    for (n, batch) in docs.chunks(50).enumerate() {
        coll.insert_many(batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if n == 20 {
            a.kill(); // SIGKILL, mid-load
            killed = Some(Instant::now());
        }
    }
    let killed = killed.unwrap();
    b.wait_for("this replica holds the lease", Duration::from_secs(30))
        .await;
    let takeover = killed.elapsed();

    let deadline = Instant::now() + Duration::from_secs(120);
    let requests = loop {
        let requests = receiver.requests();
        let got: HashSet<String> = requests.iter().flat_map(ids).collect();
        if want.is_subset(&got) {
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {DOCUMENTS} documents delivered:\n{}",
            want.intersection(&got).count(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scraped = scrape(&b_metrics).await;
    let mut b = b;
    assert!(b.terminate().success(), "{}", b.log());

    let from = |replica: &str| {
        requests
            .iter()
            .filter(|r| r.header("x-replica") == Some(replica))
            .collect::<Vec<_>>()
    };
    let (by_a, by_b) = (from("a"), from("b"));
    assert!(!by_a.is_empty() && !by_b.is_empty());
    assert_eq!(by_a.len() + by_b.len(), requests.len());
    assert!(
        by_a.iter().all(|r| r.at <= killed),
        "nothing from a after its death"
    );
    assert!(
        by_b.iter().all(|r| r.at > killed),
        "the standby sent nothing while the leader lived"
    );
    let delivered: usize = requests.iter().map(|r| ids(r).len()).sum();
    eprintln!(
        "{DOCUMENTS} documents, leader killed: standby took over after {takeover:?}, \
         every document delivered, {} duplicates (delivered by a but not yet checkpointed)",
        delivered - DOCUMENTS
    );
    // The lease expires at most leaseDuration after the last renewal
    // (before the kill); the standby tries every second.
    assert!(
        takeover <= lease_duration + Duration::from_secs(3),
        "takeover took {takeover:?}"
    );
    assert_eq!(scraped.get("switchyard_leader", &[]), 1.0);
    assert_eq!(
        scraped.get("switchyard_leader_acquisitions_total", &[]),
        1.0
    );
}
