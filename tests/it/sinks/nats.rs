//! The `nats` receiver against a real `nats-server` (JetStream), each test
//! with its own server: events read back by a real consumer with the
//! CloudEvents NATS binding checked, templated subjects, an event whose
//! subject cannot be made rejected alone, and a server killed and restarted
//! under load (nothing lost, no duplicate in the stream, retries counted).

use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use switchyard::stats::Stats;

use support::brokers::Server;
use support::pipeline::{Run, SAMPLES, dead_letters, distinct_documents};

/// A stream capturing `subjects`.
async fn stream(server: &Server, name: &str, subjects: &[&str]) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    js
}

/// Every message in the stream, in order.
async fn read_all(js: &jetstream::Context, name: &str) -> Vec<jetstream::Message> {
    let stream = js.get_stream(name).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(100_000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    while let Some(m) = batch.next().await {
        out.push(m.unwrap());
    }
    out
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_structured_to_templated_subjects() {
    let server = Server::nats().await;
    let js = stream(&server, "HEALTH", &["health.>"]).await;
    let run = Run::new(
        100,
        &["bus"],
        &support::yaml(
            "  - name: bus\n    nats:\n      url: $server\n      subject: \"health.{{data.healthEvent.nodeName}}\"\n      jetstream: true\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 100);

    let messages = read_all(&js, "HEALTH").await;
    assert_eq!(messages.len(), 100);
    for m in &messages {
        assert_eq!(
            header(m, "content-type"),
            Some("application/cloudevents+json; charset=utf-8")
        );
        let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let node = event["data"]["healthEvent"]["nodeName"].as_str().unwrap();
        assert_eq!(m.subject.as_str(), format!("health.{node}"));
        assert_eq!(header(m, "Nats-Msg-Id"), event["id"].as_str());
        assert_eq!(event["specversion"], "1.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_nats_binary_mode_headers() {
    let server = Server::nats().await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut subscription = client.subscribe("events.>").await.unwrap();
    client.flush().await.unwrap();
    let run = Run::new(
        20,
        &["bus"],
        &support::yaml(
            "  - name: bus\n    nats: {url: $server, subject: \"events.{{type}}\", mode: binary}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 20);

    let mut got = Vec::new();
    while got.len() < 20 {
        let m = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("20 messages")
            .unwrap();
        got.push(m);
    }
    for m in &got {
        assert_eq!(header(m, "ce-specversion"), Some("1.0"));
        let ty = header(m, "ce-type").unwrap();
        assert_eq!(m.subject.as_str(), format!("events.{ty}"));
        assert!(header(m, "ce-id").is_some_and(|id| id.len() == 36));
        assert!(
            header(m, "ce-source")
                .unwrap()
                .starts_with("nvsentinel://test/")
        );
        assert_eq!(header(m, "content-type"), Some("application/json"));
        let data: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert!(data["healthEvent"].is_object(), "the payload is the data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_a_subject_is_rejected_alone() {
    let server = Server::nats().await;
    let js = stream(&server, "HEALTH", &["health.>"]).await;
    let mut documents: Vec<String> = SAMPLES.lines().take(10).map(str::to_owned).collect();
    let mut broken: serde_json::Value = serde_json::from_str(&documents[4]).unwrap();
    broken["healthevent"]
        .as_object_mut()
        .unwrap()
        .remove("nodename");
    documents[4] = broken.to_string();
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(
        &lines,
        &["bus"],
        &support::yaml(
            "  - name: bus\n    nats: {url: $server, subject: \"health.{{data.healthEvent.nodeName}}\", jetstream: true}\n    deadLetter: {file: \"@DIR@/dlq.jsonl\"}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 9);
    assert_eq!(Stats::get(&stats.rejected), 1);
    let dead = dead_letters(&run.path("dlq.jsonl"));
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("rejected: subject: \"health.\" has an empty token"),
        "{}",
        dead[0]
    );
    assert_eq!(read_all(&js, "HEALTH").await.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_loses_nothing() {
    const N: usize = 5000;
    let mut server = Server::nats().await;
    let js = stream(&server, "HEALTH", &["health.>"]).await;
    // The samples five times over, with distinct `_id`s (distinct event ids).
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(
        &lines,
        &["bus"],
        &support::yaml(
            "  - name: bus\n    nats: {url: $server, subject: \"health.{{data.healthEvent.nodeName}}\", jetstream: true, timeout: 1s}\n    \
             queue: {maxBatch: 50}\n    retry: {initialBackoff: 50ms, maxBackoff: 500ms}\n",
            &[("server", &server.url())],
        ),
    );
    let pipeline = tokio::spawn(async move {
        let stats = run.run_to_end().await;
        (run, stats)
    });
    // Kill the server once part of the load is in the stream.
    let mut info = js.get_stream("HEALTH").await.unwrap();
    while info.info().await.unwrap().state.messages < (N / 10) as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    let (_run, stats) = pipeline.await.unwrap();
    assert_eq!(Stats::get(&stats.delivered), N as u64);

    let client = async_nats::connect(server.url()).await.unwrap();
    let messages = read_all(&jetstream::new(client), "HEALTH").await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        *by_id
            .entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let ids: BTreeSet<&String> = by_id.keys().collect();
    assert_eq!(ids.len(), N, "every event is in the stream");
    let duplicates: usize = by_id.values().map(|c| c - 1).sum();
    eprintln!(
        "{N} events, server killed and restarted: {} retries, {duplicates} duplicates in the stream",
        Stats::get(&stats.retries)
    );
    assert_eq!(duplicates, 0, "Nats-Msg-Id deduplicates retried events");
    assert!(Stats::get(&stats.retries) > 0, "the outage was retried");
}
