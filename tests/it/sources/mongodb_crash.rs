//! Crash test: while 10,000 documents are inserted, the switchyard process
//! is killed with SIGKILL at three random moments and restarted. Every
//! document's CloudEvent must be in the file receiver's output at least once;
//! duplicates are reported and must stay within the in-flight window (what
//! was delivered but not yet checkpointed when the process died).

use crate::support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::Document;

use support::mongo;

const DOCUMENTS: usize = 10_000;
const KILLS: usize = 3;
/// Records the source may hand over before the router blocks (1024), the
/// receiver queue (`maxEvents: 1000`) and one batch in delivery (500): the
/// most a kill can leave delivered but not checkpointed, plus what one
/// checkpoint interval (200 ms) can finish at the insert rate.
const IN_FLIGHT_WINDOW: usize = 1024 + 1000 + 500 + 1000;

fn spawn(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("run")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A pseudo-random number from the clock and the process id: the moments
/// differ between runs, and are printed so a failure can be retraced.
fn random_below(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_three_times_during_inserts_loses_nothing() {
    let uri = mongo::shared_uri().await;
    let db = mongo::unique_db("crash");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: crash}\n\
             source:\n  mongodb:\n    uri: \"$uri\"\n    database: $db\n    resumeTokens: {database: $db}\n    backfill: {rateLimit: 0}\n\
             state: {flushInterval: 200ms}\n\
             route: {match: [{receiver: out}]}\n\
             receivers: [{name: out, file: {path: $out}, queue: {maxEvents: 1000}}]\n", &[("uri", &uri), ("db", &db), ("out", &out.display())],
        ),
    )
    .unwrap();

    let docs = mongo::fresh_documents(DOCUMENTS, chrono::Utc::now());
    let want: Vec<String> = docs.iter().map(mongo::event_id).collect();

    // Kill points: three distinct batch numbers among the 100 batches.
    let mut kill_at: Vec<usize> = Vec::new();
    while kill_at.len() < KILLS {
        let k = 5 + random_below(90) as usize;
        if !kill_at.contains(&k) {
            kill_at.push(k);
        }
    }
    kill_at.sort();
    eprintln!("killing after insert batches {kill_at:?}");

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let coll = client.database(&db).collection::<Document>("HealthEvents");
    let mut child = spawn(&config);
    for (n, batch) in docs.chunks(100).enumerate() {
        coll.insert_many(batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if kill_at.contains(&n) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            child = spawn(&config);
        }
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    let counts = loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for id in support::event_ids(&out) {
            *counts.entry(id).or_default() += 1;
        }
        if want.iter().all(|id| counts.contains_key(id)) {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {DOCUMENTS} documents delivered",
            want.iter().filter(|id| counts.contains_key(*id)).count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "{DOCUMENTS} documents, {KILLS} SIGKILLs: every one delivered, {duplicates} duplicates"
    );
    assert_eq!(counts.len(), DOCUMENTS, "only these documents");
    assert!(
        duplicates <= KILLS * IN_FLIGHT_WINDOW,
        "{duplicates} duplicates exceed the in-flight window of {KILLS} × {IN_FLIGHT_WINDOW}"
    );
}
