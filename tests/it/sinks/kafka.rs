//! The `kafka` receiver against a real Kafka-protocol broker (`tansu`, an
//! Apache Kafka-compatible broker; Apache Kafka itself cannot be installed
//! here), each test with its own: records read back by a Kafka client with
//! the CloudEvents Kafka binding checked, keys and partitions as the Java
//! client's partitioner puts them, templated topics, a missing topic
//! retried then dead-lettered, and a broker that comes up late.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rskafka::client::partition::UnknownTopicHandling;
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;
use switchyard::stats::Stats;

use support::brokers::Server;
use support::pipeline::{Run, dead_letters, distinct_documents};

async fn client(server: &Server) -> Client {
    ClientBuilder::new(vec![server.url()])
        .build()
        .await
        .unwrap()
}

async fn create_topic(client: &Client, name: &str, partitions: i32) {
    client
        .controller_client()
        .unwrap()
        .create_topic(name, partitions, 1, 5_000)
        .await
        .unwrap();
}

/// Every record of every partition of `topic`, by partition.
async fn read_all(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> HashMap<i32, Vec<RecordAndOffset>> {
    let mut out = HashMap::new();
    for p in 0..partitions {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Error)
            .await
            .unwrap();
        // Until a fetch comes back empty: tansu's high watermark can lag
        // behind the records it has (it reports the last batch's start).
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let (batch, _) = pc.fetch_records(offset, 1..10_000_000, 200).await.unwrap();
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            records.extend(batch);
        }
        out.insert(p, records);
    }
    out
}

fn header<'a>(r: &'a RecordAndOffset, name: &str) -> Option<&'a str> {
    r.record
        .headers
        .get(name)
        .map(|v| std::str::from_utf8(v).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_records_keyed_by_node() {
    let server = Server::kafka().await;
    let client = client(&server).await;
    create_topic(&client, "health", 3).await;
    let run = Run::new(
        100,
        &["log"],
        &support::yaml(
            "  - name: log\n    kafka:\n      brokers: [\"$server\"]\n      topic: health\n      \
             key: \"{{data.healthEvent.nodeName}}\"\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 100);

    let partitions = read_all(&client, "health", 3).await;
    let mut ids = HashSet::new();
    let mut used = 0;
    // Where the Java client's partitioner puts these keys (computed
    // independently, with a Python transcription of Kafka's murmur2).
    let expected = |key: &str| match key {
        "gpu-node-0027" => Some(0),
        "gpu-node-0048" | "gpu-node-0063" => Some(2),
        _ => None,
    };
    let mut checked = 0;
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for (p, records) in &partitions {
        used += usize::from(!records.is_empty());
        for r in records {
            assert_eq!(
                header(r, "content-type"),
                Some("application/cloudevents+json; charset=utf-8")
            );
            let event: serde_json::Value =
                serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
            let node = event["data"]["healthEvent"]["nodeName"].as_str().unwrap();
            let key = std::str::from_utf8(r.record.key.as_deref().unwrap()).unwrap();
            assert_eq!(key, node, "the key is the node");
            // One node's events all in one partition (in order there).
            if let Some(first) = partition_of.insert(node.to_owned(), *p) {
                assert_eq!(first, *p, "{node} is in one partition");
            }
            if let Some(e) = expected(key) {
                assert_eq!(e, *p, "{key} is where the Java client puts it");
                checked += 1;
            }
            ids.insert(event["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 100, "every event once");
    assert!(used > 1, "the keys spread over the partitions");
    assert!(checked > 0, "the sample has the known keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_headers_and_templated_topics() {
    let server = Server::kafka().await;
    let client = client(&server).await;
    create_topic(&client, "fatal-true", 1).await;
    create_topic(&client, "fatal-false", 1).await;
    let run = Run::new(
        60,
        &["log"],
        &support::yaml(
            "  - name: log\n    kafka:\n      brokers: [\"$server\"]\n      mode: binary\n      \
             topic: \"fatal-{{data.healthEvent.isFatal}}\"\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 60);

    let mut total = 0;
    for (topic, fatal) in [("fatal-true", true), ("fatal-false", false)] {
        for r in read_all(&client, topic, 1).await.remove(&0).unwrap() {
            total += 1;
            assert_eq!(header(&r, "ce_specversion"), Some("1.0"));
            assert_eq!(header(&r, "content-type"), Some("application/json"));
            let id = header(&r, "ce_id").unwrap();
            for name in ["ce_type", "ce_source", "ce_time"] {
                assert!(header(&r, name).is_some(), "{name}");
            }
            assert!(header(&r, "ce_datacontenttype").is_none());
            // No partitionkey extension: the key is the event id.
            assert_eq!(r.record.key.as_deref(), Some(id.as_bytes()));
            let data: serde_json::Value =
                serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
            assert_eq!(data["healthEvent"]["isFatal"], fatal);
        }
    }
    assert_eq!(total, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_retried_then_dead_lettered() {
    let server = Server::kafka().await;
    let run = Run::new(
        5,
        &["log"],
        &support::yaml(
            "  - name: log\n    kafka: {brokers: [\"$server\"], topic: nowhere, timeout: 2s}\n    \
             retry: {maxRetries: 2, initialBackoff: 10ms}\n    deadLetter: {file: \"@DIR@/dead.jsonl\"}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    assert_eq!(Stats::get(&stats.dead_lettered), 5);
    assert!(Stats::get(&stats.retries) >= 2);
    let dead = dead_letters(&run.path("dead.jsonl"));
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("\"nowhere\" does not exist"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_comes_up_late_gets_everything() {
    const N: usize = 500;
    let mut server = Server::kafka().await;
    let url = server.url();
    server.kill();
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(
        &lines,
        &["log"],
        &support::yaml(
            "  - name: log\n    kafka: {brokers: [\"$url\"], topic: health, timeout: 1s}\n    \
             queue: {maxBatch: 50}\n    retry: {initialBackoff: 100ms, maxBackoff: 500ms}\n",
            &[("url", &url)],
        ),
    );
    let pipeline = tokio::spawn(async move {
        let stats = run.run_to_end().await;
        (run, stats)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Memory storage: the restarted broker is empty; the topic is made anew.
    server.restart().await;
    let client = client(&server).await;
    create_topic(&client, "health", 2).await;
    let (_run, stats) = pipeline.await.unwrap();
    assert_eq!(Stats::get(&stats.delivered), N as u64);
    assert!(Stats::get(&stats.retries) > 0, "the outage was retried");
    let ids: HashSet<String> = read_all(&client, "health", 2)
        .await
        .into_values()
        .flatten()
        .map(|r| {
            let event: serde_json::Value =
                serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    eprintln!(
        "{N} events, broker down for 2 s: {} retries, {} events in the topic",
        Stats::get(&stats.retries),
        ids.len()
    );
    assert_eq!(ids.len(), N);
}
