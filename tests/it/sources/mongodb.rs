//! The MongoDB change-stream source against a real replica set: live
//! streaming, restart, backfill order/limits/rate, the backfill → stream
//! hand-over, recovery from a lost resume token, malformed documents, TLS
//! with a client certificate from separate files.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, doc, oid::ObjectId};
use switchyard::config::{parse, validate};
use switchyard::pipeline;
use switchyard::stats::Stats;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use support::mongo;

/// An in-process exporter: MongoDB source → route everything → file receiver.
struct Exporter {
    shutdown: CancellationToken,
    task: JoinHandle<Result<Arc<Stats>, pipeline::PipelineError>>,
}

struct Setup {
    /// The exporter's URI.
    uri: String,
    /// The test's own (the same, or with TLS options).
    client_uri: String,
    db: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(test: &str) -> Self {
        let uri = mongo::shared_uri().await;
        Self {
            client_uri: uri.clone(),
            uri,
            db: mongo::unique_db(test),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(&self.client_uri)
            .await
            .unwrap()
    }

    async fn events(&self) -> mongodb::Collection<Document> {
        self.client()
            .await
            .database(&self.db)
            .collection("HealthEvents")
    }

    async fn tokens(&self) -> mongodb::Collection<Document> {
        self.client()
            .await
            .database(&self.db)
            .collection("ResumeTokens")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.jsonl")
    }

    /// Config with `backfill` and extra `source.mongodb` keys.
    fn config(&self, source_extra: &str) -> String {
        support::yaml(
            "metadata: {cluster: test}\n\
             source:\n  mongodb:\n    uri: \"$uri\"\n    database: $db\n    resumeTokens: {database: $db}\n$source_extra\n\
             state: {flushInterval: 100ms}\n\
             route: {match: [{receiver: out}]}\n\
             receivers: [{name: out, file: {path: $out}}]\n",
            &[
                ("uri", &self.uri),
                ("db", &self.db),
                ("source_extra", &source_extra),
                ("out", &self.out().display()),
            ],
        )
    }

    fn start(&self, source_extra: &str) -> Exporter {
        let yaml = self.config(source_extra);
        let (compiled, _) =
            validate(&parse(&yaml).unwrap()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pipeline::run(compiled, shutdown.clone()));
        Exporter { shutdown, task }
    }
}

impl Exporter {
    async fn stop(self) -> Arc<Stats> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops")
            .unwrap()
            .unwrap()
    }
}

fn documents(n: usize, at: chrono::DateTime<chrono::Utc>) -> Vec<Document> {
    mongo::fresh_documents(n, at)
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter().map(mongo::event_id).collect()
}

fn output_ids(path: &Path) -> Vec<String> {
    support::event_ids(path)
}

async fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    support::wait_until(what, Duration::from_secs(secs), f).await
}

async fn wait_for_ids(path: &Path, want: &[String]) {
    let want: HashSet<&String> = want.iter().collect();
    wait_for(&format!("{} events", want.len()), 60, || {
        let got = output_ids(path);
        want.iter().all(|id| got.contains(id))
    })
    .await;
}

fn assert_exactly_once(path: &Path, want: &[String]) {
    let got = output_ids(path);
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for id in &got {
        *counts.entry(id).or_default() += 1;
    }
    for id in want {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "event {id} delivered {} times",
            counts.get(id).unwrap_or(&0)
        );
    }
    assert_eq!(got.len(), want.len(), "no other events");
}

async fn saved_token(setup: &Setup) -> Option<Document> {
    setup
        .tokens()
        .await
        .find_one(doc! {"clientName": "switchyard"})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_then_restart_resumes_after_the_last_finished_event() {
    let setup = Setup::new("live").await;
    let coll = setup.events().await;
    let exporter = setup.start("    backfill: {enabled: false}\n");
    // The stream opens asynchronously; once a token is saved it is open.
    wait_for_token(&setup).await;

    let first = documents(50, chrono::Utc::now());
    coll.insert_many(&first).await.unwrap();
    wait_for_ids(&setup.out(), &ids(&first)).await;
    let stats = exporter.stop().await;
    assert_eq!(Stats::get(&stats.delivered), 50);
    let token = saved_token(&setup).await.expect("token saved");
    for key in ["clientName", "resumeToken", "updatedAt", "lastEventTime"] {
        assert!(token.contains_key(key), "token document has {key}: {token}");
    }

    // Written while the exporter is down: delivered after the restart, and
    // nothing from before is sent again.
    let second = documents(30, chrono::Utc::now());
    coll.insert_many(&second).await.unwrap();
    let exporter = setup.start("    backfill: {enabled: false}\n");
    let all: Vec<String> = ids(&first).into_iter().chain(ids(&second)).collect();
    wait_for_ids(&setup.out(), &all).await;
    exporter.stop().await;
    assert_exactly_once(&setup.out(), &all);
}

async fn wait_for_token(setup: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while saved_token(setup).await.is_none() {
        assert!(Instant::now() < deadline, "no resume token saved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_exported_with_the_full_document() {
    let setup = Setup::new("updates").await;
    let coll = setup.events().await;
    let exporter =
        setup.start("    operationTypes: [insert, update]\n    backfill: {enabled: false}\n");
    wait_for_token(&setup).await;
    let docs = documents(1, chrono::Utc::now());
    coll.insert_one(&docs[0]).await.unwrap();
    coll.update_one(
        doc! {"_id": docs[0].get("_id").unwrap()},
        doc! {"$set": {"healthevent.message": "updated"}},
    )
    .await
    .unwrap();
    wait_for("insert and update", 60, || {
        output_ids(&setup.out()).len() == 2
    })
    .await;
    exporter.stop().await;
    let lines = std::fs::read_to_string(setup.out()).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["data"]["healthEvent"]["message"], "updated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_sends_the_newest_max_events_oldest_first_at_the_rate_limit() {
    let setup = Setup::new("backfill").await;
    let coll = setup.events().await;
    let now = chrono::Utc::now();
    // 10 documents too old for maxAge, then 300 within it, one per second.
    let mut docs = Vec::new();
    for (i, mut d) in documents(310, now).into_iter().enumerate() {
        let age = if i < 10 {
            chrono::TimeDelta::days(40)
        } else {
            chrono::TimeDelta::seconds(400 - i as i64)
        };
        d.insert(
            "createdAt",
            BsonDateTime::from_millis((now - age).timestamp_millis()),
        );
        docs.push(d);
    }
    // Inserted in reverse, so insertion order is not the answer.
    let mut shuffled = docs.clone();
    shuffled.reverse();
    coll.insert_many(&shuffled).await.unwrap();

    let started = Instant::now();
    let exporter = setup
        .start("    backfill: {maxAge: 720h, maxEvents: 200, batchSize: 50, rateLimit: 400}\n");
    let newest: Vec<String> = ids(&docs[110..]);
    wait_for_ids(&setup.out(), &newest).await;
    let elapsed = started.elapsed();
    wait_for_token(&setup).await; // the end of the backfill is checkpointed
    let stats = exporter.stop().await;

    assert_eq!(
        output_ids(&setup.out()),
        newest,
        "the newest 200, oldest first"
    );
    assert!(
        elapsed >= Duration::from_millis(450),
        "200 documents at 400/s take at least 0.5 s, took {elapsed:?}"
    );
    assert_eq!(Stats::get(&stats.read), 200);
    // One backfill ran to its end: observed once, for as long as it took.
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("took", "", stats.source.backfill_duration.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let took = support::metrics::parse(&text);
    assert_eq!(took.get("took_count", &[]), 1.0, "{text}");
    let secs = took.get("took_sum", &[]);
    // 200 documents at 400/s; its last pause may end after the delivery.
    assert!((0.45..10.0).contains(&secs), "{secs} s");
    assert!(!stats.source.backfilling.load(Ordering::Relaxed));
    let token = saved_token(&setup)
        .await
        .expect("the end of the backfill is checkpointed");
    let last = token
        .get_datetime("lastEventTime")
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        last,
        docs[309]
            .get_datetime("createdAt")
            .unwrap()
            .timestamp_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_inserted_during_the_backfill_are_delivered_once() {
    let setup = Setup::new("handover").await;
    let coll = setup.events().await;
    let history = documents(1500, chrono::Utc::now() - chrono::TimeDelta::minutes(1));
    coll.insert_many(&history).await.unwrap();

    // 1500 documents at 1000/s: the backfill runs for about 1.5 s while
    // more documents arrive.
    let exporter = setup.start("    backfill: {rateLimit: 1000, batchSize: 100}\n");
    let mut live = Vec::new();
    for _ in 0..10 {
        let batch = documents(50, chrono::Utc::now());
        coll.insert_many(&batch).await.unwrap();
        live.extend(batch);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let all: Vec<String> = ids(&history).into_iter().chain(ids(&live)).collect();
    wait_for_ids(&setup.out(), &all).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // any duplicate would arrive by now
    exporter.stop().await;
    assert_exactly_once(&setup.out(), &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_resume_token_is_recovered_by_backfill_from_the_last_event_time() {
    let setup = Setup::new("lost").await;
    let coll = setup.events().await;
    // A real event token with its cluster time rewritten to 1970: the
    // server no longer finds that event (as after an oplog roll-over or a
    // rollback) and refuses to resume (ChangeStreamFatalError, 280).
    let mut probe = coll.watch().await.unwrap();
    coll.insert_one(doc! {"probe": true}).await.unwrap();
    let event = futures_util::StreamExt::next(&mut probe)
        .await
        .unwrap()
        .unwrap();
    let token = mongodb::bson::to_document(&event.id).unwrap();
    let data = token.get_str("_data").unwrap();
    let ancient = format!("{}00000001{}", &data[..2], &data[10..]);

    let checkpointed = chrono::Utc::now() - chrono::TimeDelta::minutes(10);
    let before = documents(20, checkpointed - chrono::TimeDelta::minutes(5)); // finished earlier
    let after = documents(40, checkpointed + chrono::TimeDelta::minutes(5)); // written since
    coll.insert_many(before.iter().chain(&after)).await.unwrap();
    setup
        .tokens()
        .await
        .update_one(
            doc! {"clientName": "switchyard"},
            doc! {"$set": {"resumeToken": {"_data": &ancient}, "lastEventTime": BsonDateTime::from_millis(checkpointed.timestamp_millis())}},
        )
        .upsert(true)
        .await
        .unwrap();

    let exporter = setup.start("    backfill: {enabled: false}\n");
    wait_for_ids(&setup.out(), &ids(&after)).await;
    // Streaming again after the recovery.
    let later = documents(5, chrono::Utc::now());
    coll.insert_many(&later).await.unwrap();
    wait_for_ids(&setup.out(), &ids(&later)).await;
    let stats_out = exporter.stop().await;
    assert_eq!(
        Stats::get(&stats_out.source.tokens_lost),
        1,
        "the loss is counted"
    );
    assert_eq!(Stats::get(&stats_out.source.backfilled), 40);
    let got = output_ids(&setup.out());
    assert!(
        ids(&before).iter().all(|id| !got.contains(id)),
        "events before the checkpoint are not re-sent"
    );
    assert_eq!(Stats::get(&stats_out.delivered), 45);
    let token = saved_token(&setup).await.unwrap();
    assert_ne!(
        token
            .get_document("resumeToken")
            .unwrap()
            .get_str("_data")
            .unwrap(),
        ancient,
        "a fresh token is saved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_documents_are_skipped_and_do_not_hold_the_token_back() {
    let setup = Setup::new("malformed").await;
    let coll = setup.events().await;
    let exporter = setup.start("    backfill: {enabled: false}\n");
    wait_for_token(&setup).await;
    let before = saved_token(&setup).await.unwrap();

    let mut docs =
        mongo::sample_documents("tests/testdata/nvsentinel/malformed-health-events.jsonl");
    for d in &mut docs {
        d.insert("_id", ObjectId::new());
        d.insert("createdAt", BsonDateTime::now());
    }
    coll.insert_many(&docs).await.unwrap();
    let good: Vec<Document> = docs.iter().filter(|d| is_well_formed(d)).cloned().collect();
    assert_eq!(good.len(), 8);
    wait_for_ids(&setup.out(), &ids(&good)).await;
    // The token moves past the malformed documents: the last one inserted is
    // malformed, and its time is what the saved position ends at.
    let last_doc_time = docs.last().unwrap().get_datetime("createdAt").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while saved_token(&setup)
        .await
        .unwrap()
        .get_datetime("lastEventTime")
        .ok()
        != Some(last_doc_time)
    {
        assert!(
            Instant::now() < deadline,
            "the token did not move past the malformed documents"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = exporter.stop().await;
    assert_eq!(Stats::get(&stats.malformed), 8);
    assert_eq!(Stats::get(&stats.mapped), 8);
    let after = saved_token(&setup).await.unwrap();
    assert_ne!(before.get("resumeToken"), after.get("resumeToken"));
}

/// The 8 malformed samples: no `healthevent`, `isfatal: "yes"`, a null
/// entity type, `errorcode` as a string.
fn is_well_formed(d: &Document) -> bool {
    let Ok(he) = d.get_document("healthevent") else {
        return false;
    };
    let fatal_ok = matches!(he.get("isfatal"), Some(Bson::Boolean(_)));
    let codes_ok = matches!(he.get("errorcode"), Some(Bson::Array(_)));
    let entities_ok = he.get_array("entitiesimpacted").is_ok_and(|a| {
        a.iter().all(|e| matches!(e, Bson::Document(d) if matches!(d.get("entitytype"), Some(Bson::String(_)))))
    });
    fatal_ok && codes_ok && entities_ok
}

/// `cert` then `key`, as one PEM file (the shape mongod and the driver's
/// `tlsCertificateKeyFile` want).
fn joined_pem(cert: &Path, key: &Path, to: PathBuf) -> PathBuf {
    let mut pem = std::fs::read(cert).unwrap();
    pem.extend(std::fs::read(key).unwrap());
    std::fs::write(&to, pem).unwrap();
    to
}

/// The first line of base64 in a PEM private key: it must appear in no message.
fn key_material(key: &Path) -> String {
    std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// A mongod that requires TLS and a client certificate signed by its CA.
/// The source is given the CA, the certificate and the key as three files
/// (as a cert-manager Secret mounts them) and streams; the same source
/// without a certificate, or with a certificate of another CA, is refused,
/// with an error that names the TLS failure and holds no key material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_in_separate_files() {
    let pki = support::tls::Pki::new();
    let dir = pki.dir.path();
    let tls = mongo::Tls {
        server_cert_key: joined_pem(
            &pki.server_cert,
            &pki.server_key,
            dir.join("server-joined.pem"),
        ),
        ca: pki.ca.clone(),
        client_cert_key: joined_pem(
            &pki.client_cert,
            &pki.client_key,
            dir.join("client-joined.pem"),
        ),
    };
    let rs = mongo::ReplicaSet::start_tls(tls.clone()).await;
    let setup = Setup {
        uri: rs.uri(),
        client_uri: format!(
            "{}&tls=true&tlsCAFile={}&tlsCertificateKeyFile={}",
            rs.uri(),
            tls.ca.display(),
            tls.client_cert_key.display()
        ),
        db: mongo::unique_db("tls"),
        dir: tempfile::tempdir().unwrap(),
    };
    let files = support::yaml(
        "    tls: {caFile: $pki, certFile: $pki2, keyFile: $pki3}\n",
        &[
            ("pki", &pki.ca.display()),
            ("pki2", &pki.client_cert.display()),
            ("pki3", &pki.client_key.display()),
        ],
    );

    let exporter = setup.start(&support::yaml(
        "    backfill: {enabled: false}\n$files",
        &[("files", &files)],
    ));
    wait_for_token(&setup).await;
    let docs = documents(20, chrono::Utc::now());
    setup.events().await.insert_many(&docs).await.unwrap();
    wait_for_ids(&setup.out(), &ids(&docs)).await;
    let stats = exporter.stop().await;
    assert_eq!(Stats::get(&stats.delivered), 20);
    // The joined certificate and key lived only while the client was made.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("switchyard-mongodb-client-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Refused: no client certificate; a certificate another CA signed.
    let other = support::tls::Pki::new();
    for (case, tls_yaml, key) in [
        (
            "no client certificate",
            support::yaml("    tls: {caFile: $pki}\n", &[("pki", &pki.ca.display())]),
            &pki.client_key,
        ),
        (
            "a certificate of another CA",
            support::yaml(
                "    tls: {caFile: $pki, certFile: $other, keyFile: $other2}\n",
                &[
                    ("pki", &pki.ca.display()),
                    ("other", &other.client_cert.display()),
                    ("other2", &other.client_key.display()),
                ],
            ),
            &other.client_key,
        ),
    ] {
        let refused = Setup {
            uri: format!("{}&serverSelectionTimeoutMS=3000", rs.uri()),
            client_uri: setup.client_uri.clone(),
            db: setup.db.clone(),
            dir: tempfile::tempdir().unwrap(),
        };
        let yaml = refused.config(&tls_yaml);
        let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
        let switchyard::source::SourceSpec::Mongodb(spec) = &compiled.source else {
            panic!("a mongodb source")
        };
        let client = switchyard::source::mongodb::connect(&spec.uri, spec.tls.as_ref(), "test")
            .await
            .expect("the client is made; the server refuses the handshake");
        let err = client
            .database(&refused.db)
            .collection::<Document>("HealthEvents")
            .find_one(doc! {})
            .await
            .expect_err(case)
            .to_string();
        // mongod closes the connection without a TLS alert: the driver
        // can only tell that the TLS session ended.
        assert!(
            err.contains("Server selection timeout") && err.contains("TLS"),
            "{case}: {err}"
        );
        assert!(!err.contains(&key_material(key)), "{case}: {err}");
        assert!(
            !err.contains(&key_material(&pki.client_key)),
            "{case}: {err}"
        );
    }
    let log = rs.log();
    // Each was refused for its certificate, not for anything else.
    assert!(
        log.contains("no SSL certificate provided by peer"),
        "mongod refused the client without a certificate"
    );
    assert!(
        log.contains("SSL peer certificate validation failed"),
        "mongod refused the certificate of another CA"
    );
}
