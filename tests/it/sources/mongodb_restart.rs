//! mongod killed (SIGKILL) and restarted while documents are being inserted:
//! the exporter reconnects with backoff, resumes from its last token, and
//! every acknowledged document is delivered. Needs its own replica set (it
//! kills it), so it does not run against SWITCHYARD_TEST_MONGODB_URI.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::options::WriteConcern;
use switchyard::config::{parse, validate};
use switchyard::pipeline;
use switchyard::stats::Stats;
use tokio_util::sync::CancellationToken;

use support::mongo::{self, ReplicaSet};

/// Inserts `docs` in batches of 20, each batch retried until the server
/// acknowledges it (a duplicate key means an earlier try was applied).
/// Returns how many attempts failed.
async fn insert_all(
    uri: String,
    docs: Vec<Document>,
    progress: tokio::sync::watch::Sender<usize>,
) -> usize {
    let mut failures = 0;
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client
        .database("nvsentinel")
        .collection_with_options::<Document>(
            "HealthEvents",
            mongodb::options::CollectionOptions::builder()
                .write_concern(WriteConcern::majority())
                .build(),
        );
    for (n, batch) in docs.chunks(20).enumerate() {
        loop {
            match coll.insert_many(batch).ordered(false).await {
                Ok(_) => break,
                Err(e) if e.to_string().contains("E11000") => break,
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        progress.send_replace((n + 1) * 20);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongod_restarted_under_load_loses_nothing() {
    if std::env::var_os(mongo::URI_ENV).is_some() {
        eprintln!("skipped: this test restarts its own mongod");
        return;
    }
    let mut rs = ReplicaSet::start().await;
    // Give up on server selection after 1 s, so that a 3 s outage reaches
    // the source's own reconnect loop, not only the driver's retries.
    let uri = format!("{}&serverSelectionTimeoutMS=1000", rs.uri());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let yaml = support::yaml(
        "metadata: {cluster: test}\n\
         source: {mongodb: {uri: \"$uri\", backfill: {enabled: false}}}\n\
         state: {flushInterval: 100ms}\n\
         route: {match: [{receiver: out}]}\n\
         receivers: [{name: out, file: {path: $out}}]\n",
        &[("uri", &uri), ("out", &out.display())],
    );
    let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
    let shutdown = CancellationToken::new();
    let exporter = tokio::spawn(pipeline::run(compiled, shutdown.clone()));

    // Wait for the stream to be open (its start token saved).
    let client = mongodb::Client::with_uri_str(rs.uri()).await.unwrap();
    let tokens = client
        .database("nvsentinel")
        .collection::<Document>("ResumeTokens");
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokens.find_one(Document::new()).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "stream did not open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let docs = mongo::fresh_documents(2000, chrono::Utc::now());
    let want: HashSet<String> = docs.iter().map(mongo::event_id).collect();
    let (progress, mut inserted) = tokio::sync::watch::channel(0);
    let inserter = tokio::spawn(insert_all(uri.clone(), docs, progress));

    // Crash mongod a third of the way in, leave it down for 3 s.
    inserted.wait_for(|n| *n >= 600).await.unwrap();
    let before = rs.pid();
    rs.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    rs.restart().await;
    assert_ne!(rs.pid(), before, "a new mongod process");
    let failed_inserts = inserter.await.unwrap();
    assert!(failed_inserts > 0, "inserts failed while mongod was down");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: HashSet<String> = support::event_ids(&out).into_iter().collect();
        if want.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} documents delivered after the restart",
            want.intersection(&got).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let stats = exporter.await.unwrap().unwrap();
    assert!(
        Stats::get(&stats.source.reconnects) >= 1,
        "the source reconnected after the outage"
    );
}
