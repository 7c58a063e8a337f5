//! `source.nomad` against an in-process replica of Nomad's event stream
//! (tests/it/support/nomad.rs; no Nomad agent can be installed here), with the
//! real `switchyard` binary: events mapped and routed by `data.Topic` /
//! `data.Type`, Nomad's topic and namespace filters, heartbeats ignored,
//! exact resumption after SIGKILL (inside a multi-event index), a dropped
//! connection resumed with nothing lost, a resume index fallen out of the
//! buffer reported as a gap, a wrong token refused and retried, and TLS
//! (verification on by default, a CA file and a client certificate).

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::http::{self, Reply};
use support::metrics::scrape;
use support::nomad::{Nomad, Options, fixture};
use support::process::Process;
use support::tls::{ClientAuth, Pki};
use support::{json_lines, wait_json_lines};

const WAIT: Duration = Duration::from_secs(60);

/// A config reading `nomad` with `source` extra settings (YAML flow map
/// entries), state in `dir/state`.
fn write_config(dir: &Path, nomad: &Nomad, source: &str, rest: &str) -> PathBuf {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "source:\n\
             \x20 nomad: {address: \"$url\", idleTimeout: 2s, reconnect: {initialBackoff: 50ms, maxBackoff: 200ms}$source}\n\
             state: {dir: $state, flushInterval: 50ms}\n\
             telemetry: {listen: 127.0.0.1:0}\n\
             $rest", &[("url", &nomad.url()), ("source", &source), ("state", &dir.join("state").display()), ("rest", &rest)],
        ),
    )
    .unwrap();
    config
}

/// Everything routed to the file receiver `out`: the config's `route` and
/// `receivers`, and the file's path.
fn to_file(dir: &Path) -> (String, PathBuf) {
    let out = dir.join("out.jsonl");
    let rest = support::yaml(
        "route: {match: [{receiver: out}]}\n\
         receivers: [{name: out, file: {path: $out}}]\n",
        &[("out", &out.display())],
    );
    (rest, out)
}

/// The position file's content, once it exists.
fn position(dir: &Path) -> Option<Value> {
    let entry = std::fs::read_dir(dir.join("state"))
        .ok()?
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("nomad-")
        })?;
    serde_json::from_slice(&std::fs::read(entry).ok()?).ok()
}

fn subjects(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect()
}

fn unique_ids(events: &[Value]) -> BTreeSet<String> {
    let ids: BTreeSet<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), events.len(), "duplicates in {events:#?}");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_filtered_mapped_and_routed_by_topic_and_type() {
    let nomad = Nomad::start(Options {
        token: Some("s3cr3t-nomad-token".into()),
        heartbeat: Duration::from_millis(100),
        ..Options::default()
    })
    .await;
    let mut failed = fixture("AllocationUpdated", "alloc-2");
    failed["Payload"]["Allocation"]["ClientStatus"] = json!("failed");
    let mut other_job = fixture("AllocationCreated", "alloc-3");
    other_job["FilterKeys"] = json!(["api"]);
    let mut batch_ns = fixture("JobRegistered", "nightly");
    batch_ns["Namespace"] = json!("batch");
    let job_index = nomad.publish(vec![fixture("JobRegistered", "web")]);
    nomad.publish(vec![fixture("EvaluationUpdated", "eval-1")]);
    let alloc_index = nomad.publish(vec![
        fixture("AllocationUpdated", "alloc-1"),
        failed,
        other_job,
    ]);
    nomad.publish(vec![fixture("DeploymentStatusUpdate", "deploy-1")]);
    nomad.publish(vec![fixture("NodeRegistration", "node-1"), batch_ns]);

    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(format!("{name}.jsonl"));
    let config = write_config(
        dir.path(),
        &nomad,
        ", token: \"${NOMAD_TOKEN}\", topics: {Job: [\"*\"], Allocation: [web], Deployment: [\"*\"], Node: [\"*\"]}",
        &support::yaml(
            "route:\n\
             \x20 match: [{receiver: all}]\n\
             \x20 routes:\n\
             \x20   - match: [{receiver: allocations, data.Topic: Allocation}]\n\
             \x20   - match: [{receiver: failed, data.Type: AllocationUpdated, data.Payload.Allocation.ClientStatus: failed}]\n\
             \x20   - match: [{receiver: jobs, type: \"io.hashicorp.nomad.job.*\"}]\n\
             receivers:\n\
             \x20 - {name: all, file: {path: $all}}\n\
             \x20 - {name: allocations, file: {path: $allocations}}\n\
             \x20 - {name: failed, file: {path: $failed}}\n\
             \x20 - {name: jobs, file: {path: $jobs}}\n",
            &[
                ("all", &out("all").display()),
                ("allocations", &out("allocations").display()),
                ("failed", &out("failed").display()),
                ("jobs", &out("jobs").display()),
            ],
        ),
    );
    let mut process = Process::run(&config, &[("NOMAD_TOKEN", "s3cr3t-nomad-token")]);
    // Not the evaluation (topic not asked for), not the allocation of job
    // `api` (filter key), not the job in namespace `batch`.
    let all = wait_json_lines(&out("all"), 5, &process, WAIT).await;
    assert_eq!(
        subjects(&all),
        ["web", "alloc-1", "alloc-2", "deploy-1", "node-1"]
    );
    // Each receiver has its own queue: wait for each file, then check it.
    assert_eq!(
        subjects(&wait_json_lines(&out("allocations"), 2, &process, WAIT).await),
        ["alloc-1", "alloc-2"]
    );
    assert_eq!(
        subjects(&wait_json_lines(&out("failed"), 1, &process, WAIT).await),
        ["alloc-2"]
    );
    assert_eq!(
        subjects(&wait_json_lines(&out("jobs"), 1, &process, WAIT).await),
        ["web"]
    );

    let job = &all[0];
    assert_eq!(job["type"], "io.hashicorp.nomad.job.jobregistered");
    assert_eq!(job["source"], format!("nomad://{}", nomad.addr));
    assert_eq!(job["time"], "2023-11-14T22:13:20Z");
    assert_eq!(job["data"]["Topic"], "Job");
    assert_eq!(job["data"]["Index"], job_index);
    assert_eq!(job["data"]["Payload"]["Job"]["TaskGroups"][0]["Count"], 3);
    assert_eq!(all[2]["data"]["Index"], alloc_index);
    unique_ids(&all);

    // Heartbeats (every 100 ms) are not events, and keep the stream alive
    // past `idleTimeout` (2 s): one request, no reconnect.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(json_lines(&out("all")).len(), 5);
    assert_eq!(nomad.requests().len(), 1, "{}", process.log());
    let query = &nomad.requests()[0];
    for part in [
        "index=0",
        "namespace=default",
        "topic=Job%3A*",
        "topic=Allocation%3Aweb",
    ] {
        assert!(query.contains(part), "{query}");
    }
    let metrics = scrape(&process.telemetry_addr().await).await;
    assert_eq!(metrics.get("switchyard_events_read_total", &[]), 5.0);
    assert_eq!(metrics.get("switchyard_source_reconnects_total", &[]), 0.0);
    assert_eq!(metrics.get("switchyard_source_connected", &[]), 1.0);
    assert!(!process.log().contains("s3cr3t-nomad-token"));
    process.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_inside_a_multi_event_index_resumes_exactly() {
    let nomad = Nomad::start(Options::default()).await;
    nomad.publish(vec![fixture("JobRegistered", "web")]);
    let multi = nomad.publish(vec![
        fixture("AllocationCreated", "alloc-1"),
        fixture("AllocationUpdated", "alloc-2"),
        fixture("AllocationUpdated", "alloc-3"),
        fixture("AllocationUpdated", "alloc-4"),
    ]);
    nomad.publish(vec![fixture("DeploymentStatusUpdate", "deploy-1")]);

    // Accepts two events, then answers 503 until `healthy`: the position
    // stops after the first event of the multi-event index.
    let healthy = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<Value>::new()));
    let responder: http::Responder = {
        let (healthy, accepted) = (healthy.clone(), accepted.clone());
        Arc::new(move |n, r| {
            if n < 2 || healthy.load(Ordering::SeqCst) {
                accepted.lock().unwrap().push(r.json());
                Reply::status(200)
            } else {
                Reply::status(503)
            }
        })
    };
    let receiver = http::receiver(responder).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &nomad,
        "",
        &support::yaml(
            "route: {match: [{receiver: out}]}\n\
             receivers:\n\
             \x20 - name: out\n\
             \x20   http: {endpoint: \"$receiver\", concurrency: 1}\n\
             \x20   retry: {initialBackoff: 20ms, maxBackoff: 50ms, jitter: 0}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    let mut process = Process::run(&config, &[]);
    let deadline = Instant::now() + WAIT;
    while position(dir.path()) != Some(json!({"index": multi, "events": 1})) {
        assert!(
            Instant::now() < deadline,
            "position {:?}; log:\n{}",
            position(dir.path()),
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // alloc-2 is being retried (503) when the process dies.
    while receiver.count() < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    assert_eq!(subjects(&accepted.lock().unwrap()), ["web", "alloc-1"]);

    healthy.store(true, Ordering::SeqCst);
    nomad.publish(vec![fixture("NodeRegistration", "node-1")]);
    let process = Process::run(&config, &[]);
    let deadline = Instant::now() + WAIT;
    while accepted.lock().unwrap().len() < 7 {
        assert!(Instant::now() < deadline, "{}", process.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(
        subjects(&accepted),
        [
            "web", "alloc-1", "alloc-2", "alloc-3", "alloc-4", "deploy-1", "node-1"
        ],
        "nothing lost, nothing finished sent again"
    );
    unique_ids(&accepted);
    // The restart asked for the multi-event index again (and skipped its
    // first, finished event).
    assert_eq!(nomad.requested_indexes(), [0, multi]);
    assert!(process.log().contains("resuming Nomad's event stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_resumed_with_nothing_lost() {
    let nomad = Nomad::start(Options::default()).await;
    nomad.publish(vec![fixture("JobRegistered", "web")]);
    let second = nomad.publish(vec![
        fixture("AllocationCreated", "alloc-1"),
        fixture("AllocationCreated", "alloc-2"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (rest, out) = to_file(dir.path());
    let config = write_config(dir.path(), &nomad, "", &rest);
    let process = Process::run(&config, &[]);
    wait_json_lines(&out, 3, &process, WAIT).await;

    nomad.drop_connections();
    // Published while the source is cut off: still in Nomad's buffer.
    nomad.publish(vec![
        fixture("AllocationUpdated", "alloc-1"),
        fixture("AllocationUpdated", "alloc-2"),
    ]);
    nomad.publish(vec![fixture("DeploymentStatusUpdate", "deploy-1")]);
    let all = wait_json_lines(&out, 6, &process, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_now = json_lines(&out);
    assert_eq!(all_now.len(), 6, "no event twice");
    assert_eq!(
        subjects(&all),
        [
            "web", "alloc-1", "alloc-2", "alloc-1", "alloc-2", "deploy-1"
        ]
    );
    unique_ids(&all);
    // The reconnect resumed at the last index read, with its two events skipped.
    assert_eq!(nomad.requested_indexes(), [0, second]);
    let metrics = scrape(&process.telemetry_addr().await).await;
    assert_eq!(metrics.get("switchyard_source_reconnects_total", &[]), 1.0);
    assert_eq!(metrics.get("switchyard_source_gaps_total", &[]), 0.0);
    assert!(process.log().contains("Nomad closed the event stream"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_index_fallen_out_of_the_buffer_is_reported_as_a_gap() {
    let nomad = Nomad::start(Options {
        capacity: 3,
        ..Options::default()
    })
    .await;
    nomad.publish(vec![fixture("JobRegistered", "job-1")]);
    let resume = nomad.publish(vec![fixture("JobRegistered", "job-2")]);
    let dir = tempfile::tempdir().unwrap();
    let (rest, out) = to_file(dir.path());
    let config = write_config(dir.path(), &nomad, "", &rest);
    let mut process = Process::run(&config, &[]);
    wait_json_lines(&out, 2, &process, WAIT).await;
    assert!(process.terminate().success());

    // While switchyard is down, five more indexes: the buffer (3) keeps the
    // last three; job-3 and job-4 are gone.
    for n in 3..=7 {
        nomad.publish(vec![fixture("JobRegistered", &format!("job-{n}"))]);
    }
    let oldest = nomad.oldest().unwrap();
    let process = Process::run(&config, &[]);
    process
        .wait_for("Nomad no longer buffers the resume index", WAIT)
        .await;
    let log = process.log();
    assert!(
        log.contains(&format!(
            "events after index {resume} (its first 1 taken) up to index {} may be lost",
            oldest - 1
        )),
        "{log}"
    );
    assert!(log.contains("ERROR"), "{log}");
    let got = wait_json_lines(&out, 5, &process, WAIT).await;
    assert_eq!(
        subjects(&got),
        ["job-1", "job-2", "job-5", "job-6", "job-7"]
    );
    // Delivery goes on.
    nomad.publish(vec![fixture("JobRegistered", "job-8")]);
    wait_json_lines(&out, 6, &process, WAIT).await;
    let metrics = scrape(&process.telemetry_addr().await).await;
    assert_eq!(metrics.get("switchyard_source_gaps_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_retried_with_backoff() {
    let nomad = Nomad::start(Options {
        token: Some("the-right-token".into()),
        ..Options::default()
    })
    .await;
    nomad.publish(vec![fixture("JobRegistered", "web")]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write_config(
        dir.path(),
        &nomad,
        ", token: \"${NOMAD_TOKEN}\"",
        &support::yaml(
            "route: {match: [{receiver: out}]}\n\
             receivers: [{name: out, file: {path: $out}}]\n",
            &[("out", &out.display())],
        ),
    );
    let mut process = Process::run(&config, &[("NOMAD_TOKEN", "a-wrong-token")]);
    process
        .wait_for_n("permission denied (HTTP 403)", 4, WAIT)
        .await;
    let log = process.log();
    // 50 ms doubling to the 200 ms ceiling.
    for wait in ["retry_in=50ms", "retry_in=100ms", "retry_in=200ms"] {
        assert!(log.contains(wait), "{log}");
    }
    assert!(log.contains("ERROR"), "{log}");
    assert!(!log.contains("a-wrong-token"), "the token is never logged");
    assert!(json_lines(&out).is_empty());
    assert!(nomad.requests().len() >= 4);
    process.terminate();

    // The right token reads.
    let process = Process::run(&config, &[("NOMAD_TOKEN", "the-right-token")]);
    wait_json_lines(&out, 1, &process, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verifies_the_server_by_default_and_presents_a_client_certificate() {
    let pki = Pki::new();
    let (nomad, server) = Nomad::start_tls(Options::default(), &pki, ClientAuth::Required).await;
    nomad.publish(vec![fixture("JobRegistered", "web")]);
    let dir = tempfile::tempdir().unwrap();
    let (rest, out) = to_file(dir.path());

    // The test CA is not trusted: no handshake, retried, nothing read.
    let config = write_config(dir.path(), &nomad, "", &rest);
    let mut process = Process::run(&config, &[]);
    process
        .wait_for_n("Nomad's event stream interrupted", 2, WAIT)
        .await;
    assert_eq!(server.handshakes(), 0);
    assert!(!server.handshake_failures().is_empty());
    assert!(json_lines(&out).is_empty());
    process.terminate();

    let config = write_config(
        dir.path(),
        &nomad,
        &support::yaml(
            ", tls: {caFile: $pki, certFile: $pki2, keyFile: $pki3}",
            &[
                ("pki", &pki.ca.display()),
                ("pki2", &pki.client_cert.display()),
                ("pki3", &pki.client_key.display()),
            ],
        ),
        &rest,
    );
    let process = Process::run(&config, &[]);
    let got = wait_json_lines(&out, 1, &process, WAIT).await;
    assert_eq!(subjects(&got), ["web"]);
    assert!(nomad.url().starts_with("https://"));
}

/// A new cluster at the same address (a restarted `nomad agent -dev`)
/// starts its indexes again: its frames below the saved position are
/// skipped, each with a WARN saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_below_the_position_are_skipped_with_a_warning() {
    let nomad = Nomad::start(Options::default()).await;
    for n in 1..=3 {
        nomad.publish(vec![fixture("JobRegistered", &format!("old-{n}"))]);
    }
    let dir = tempfile::tempdir().unwrap();
    let (rest, out) = to_file(dir.path());
    let config = write_config(dir.path(), &nomad, "", &rest);
    let mut process = Process::run(&config, &[]);
    wait_json_lines(&out, 3, &process, WAIT).await;
    assert!(process.terminate().success());

    nomad.reset();
    nomad.publish(vec![fixture("JobRegistered", "new-1")]);
    let process = Process::run(&config, &[]);
    process
        .wait_for("Nomad sent an index below the position", WAIT)
        .await;
    assert!(process.log().contains("remove the position file"));
    // Past the old position, the new cluster's events are read.
    for n in 2..=4 {
        nomad.publish(vec![fixture("JobRegistered", &format!("new-{n}"))]);
    }
    let got = wait_json_lines(&out, 4, &process, WAIT).await;
    assert_eq!(subjects(&got), ["old-1", "old-2", "old-3", "new-4"]);
}
