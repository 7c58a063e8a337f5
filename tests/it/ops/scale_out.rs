//! The scale-out topology for real: a leader pipeline publishes events to a
//! JetStream stream with the `nats` receiver, and two `switchyard run`
//! worker processes share one durable consumer (`source.nats`), each
//! delivering to its own HTTP receiver. One worker is killed with SIGKILL
//! mid-stream: every event still reaches a receiver (the dead worker's
//! unacknowledged messages are redelivered to the other), and in the end
//! the consumer has nothing pending or unacknowledged.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use switchyard::stats::Stats;

use support::brokers::Server;
use support::http::{self, Reply};
use support::pipeline::{Run, distinct_documents};
use support::process::Process;

/// Event ids in the batch requests a receiver got, with how often each came.
fn ids(receiver: &http::Receiver) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for r in receiver.requests() {
        for event in r.json().as_array().expect("a batch").iter() {
            *ids.entry(event["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    ids
}

/// A private `nats-server` with the stream HEALTH (`health.>`).
async fn server_with_stream() -> (Server, jetstream::Context) {
    let server = Server::nats().await;
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    js.create_stream(stream::Config {
        name: "HEALTH".into(),
        subjects: vec!["health.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    (server, js)
}

fn worker_config(dir: &Path, name: &str, nats: &str, endpoint: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        support::yaml(
            "source:\n  nats: {url: \"$nats\", stream: HEALTH, consumer: workers, ackWait: 2s, batch: 50}\n\
             state: {dir: \"$state\"}\n\
             shutdownTimeout: 5s\n\
             route: {match: [{receiver: out}]}\n\
             receivers:\n\
             \x20 - name: out\n\
             \x20   http: {endpoint: \"$endpoint\", mode: batch, batch: {maxEvents: 10, maxWait: 5ms}, concurrency: 2}\n", &[("nats", &nats), ("state", &dir.join(name).display()), ("endpoint", &endpoint)],
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_consumer_and_survive_a_sigkill() {
    const N: usize = 2000;
    let (server, js) = server_with_stream().await;

    // The leader: the file source standing in for MongoDB, publishing
    // every event to JetStream with acks.
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let leader = Run::with_documents(
        &lines,
        &["bus"],
        &support::yaml(
            "  - name: bus\n    nats: {url: \"$server\", subject: \"health.{{data.healthEvent.nodeName}}\", jetstream: true}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = leader.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), N as u64);

    // Two workers, each delivering batches to its own receiver, a little
    // slowly (20 ms a request) so that the work is still going on when one
    // of them dies.
    let slow: http::Responder =
        std::sync::Arc::new(|_, _| Reply::status(202).after(Duration::from_millis(20)));
    let to_a = http::receiver(slow.clone()).await;
    let to_b = http::receiver(slow).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = Process::run(
        &worker_config(dir.path(), "a", &server.url(), &to_a.url()),
        &[],
    );
    let mut b = Process::run(
        &worker_config(dir.path(), "b", &server.url(), &to_b.url()),
        &[],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ids(&to_a).len() < N / 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker a delivers: a {} events, b {}\n{}\n{}",
            ids(&to_a).len(),
            ids(&to_b).len(),
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill();
    let killed_at = ids(&to_a).len();

    // Worker b finishes the work, including what a had taken and not
    // acknowledged (redelivered after ackWait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut all: HashSet<String> = ids(&to_a).into_keys().collect();
        all.extend(ids(&to_b).into_keys());
        if all.len() == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {N} events delivered\n{}",
            all.len(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (from_a, from_b) = (ids(&to_a), ids(&to_b));
    assert!(
        !from_b.is_empty() && killed_at > 0,
        "both workers took part"
    );
    let deliveries: usize = from_a.values().sum::<usize>() + from_b.values().sum::<usize>();
    eprintln!(
        "{N} events: worker a delivered {} before SIGKILL, worker b {}; {} deliveries in all ({} redelivered duplicates)",
        from_a.len(),
        from_b.len(),
        deliveries,
        deliveries - N
    );

    // Everything is acknowledged: nothing pending, nothing awaiting an ack.
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("HEALTH")
        .await
        .unwrap()
        .get_consumer("workers")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer.info().await.unwrap();
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer still has {} unacknowledged and {} pending",
            info.num_ack_pending,
            info.num_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.terminate().success(), "{}", b.log());
}

/// A receiver slower than `ackWait`: the worker reports its messages in
/// progress, so JetStream redelivers none of them (no duplicates) and every
/// one is acknowledged once delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_receivers_keep_their_messages() {
    const N: usize = 20;
    let (server, js) = server_with_stream().await;
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    Run::with_documents(
        &lines,
        &["bus"],
        &support::yaml(
            "  - name: bus\n    nats: {url: \"$server\", subject: health.events, jetstream: true}\n", &[("server", &server.url())],
        ),
    )
    .run_to_end()
    .await;

    // Each batch of 10 takes 2.5 s to be answered; JetStream would
    // redeliver after 1 s without progress reports.
    let slow: http::Responder =
        std::sync::Arc::new(|_, _| Reply::status(202).after(Duration::from_millis(2500)));
    let receiver = http::receiver(slow).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Run {
        yaml: support::yaml(
            "source:\n  nats: {url: \"$server\", stream: HEALTH, consumer: slow, ackWait: 1s}\n\
             state: {dir: \"$dir\"}\n\
             route: {match: [{receiver: out}]}\n\
             receivers:\n\
             \x20 - name: out\n\
             \x20   http: {endpoint: \"$receiver\", mode: batch, batch: {maxEvents: 10, maxWait: 50ms}, concurrency: 1, timeout: 10s}\n",
            &[
                ("server", &server.url()),
                ("dir", &dir.path().display()),
                ("receiver", &receiver.url()),
            ],
        ),
        dir,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let running = tokio::spawn(async move { worker.run(stop).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ids(&receiver).len() < N {
        assert!(tokio::time::Instant::now() < deadline, "all delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("HEALTH")
        .await
        .unwrap()
        .get_consumer("slow")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let info = loop {
        let info = consumer.info().await.unwrap();
        if info.num_ack_pending == 0 || tokio::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    let stats = running.await.unwrap();
    let deliveries: usize = ids(&receiver).values().sum();
    assert_eq!(deliveries, N, "no message was redelivered and sent twice");
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.num_ack_pending, 0, "every message acknowledged");
    assert_eq!(Stats::get(&stats.delivered), N as u64);
}
