//! The `redis` receiver against a real `redis-server` (one per test):
//! stream entries read back with `XRANGE` (structured and binary), templated
//! keys, `MAXLEN ~` trimming, `PUBLISH` to a subscriber, a key of the wrong
//! type rejecting only its events, and a server killed and restarted under
//! load (every event in the stream).

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use switchyard::stats::Stats;

use support::brokers::Server;
use support::pipeline::{Run, SAMPLES, dead_letters, distinct_documents};

async fn connection(server: &Server) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every entry of every stream matching `pattern`: (key, fields).
async fn entries(server: &Server, pattern: &str) -> Vec<(String, Vec<(String, Vec<u8>)>)> {
    let mut con = connection(server).await;
    let keys: Vec<String> = con.keys(pattern).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let ty: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        if ty != "stream" {
            continue;
        }
        let reply: redis::streams::StreamRangeReply = con.xrange_all(&key).await.unwrap();
        for id in reply.ids {
            let mut fields: Vec<(String, Vec<u8>)> = id
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<Vec<u8>>(v).unwrap()))
                .collect();
            fields.sort();
            out.push((key.clone(), fields));
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &fields.iter().find(|(k, _)| k == name).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_entries_in_templated_streams() {
    let server = Server::redis().await;
    // One node's key holds a string: only that node's events are rejected.
    let first: serde_json::Value = serde_json::from_str(SAMPLES.lines().next().unwrap()).unwrap();
    let blocked = first["healthevent"]["nodename"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut con = connection(&server).await;
    let _: () = con
        .set(format!("health:{blocked}"), "not a stream")
        .await
        .unwrap();

    let run = Run::new(
        100,
        &["streams"],
        &support::yaml(
            "  - name: streams\n    redis: {url: \"$server\", stream: \"health:{{data.healthEvent.nodeName}}\"}\n    deadLetter: {file: \"@DIR@/dlq.jsonl\"}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    let dead = dead_letters(&run.path("dlq.jsonl"));
    assert!(!dead.is_empty());
    for d in &dead {
        assert_eq!(
            d["event"]["data"]["healthEvent"]["nodeName"],
            blocked.as_str()
        );
        assert!(d["error"].as_str().unwrap().contains("another type"), "{d}");
    }
    assert_eq!(Stats::get(&stats.delivered) as usize, 100 - dead.len());

    let all = entries(&server, "health:*").await;
    assert_eq!(all.len(), 100 - dead.len());
    for (key, fields) in &all {
        assert_eq!(fields.len(), 1, "structured: one field");
        let event: serde_json::Value = serde_json::from_slice(field(fields, "event")).unwrap();
        assert_eq!(event["specversion"], "1.0");
        let node = event["data"]["healthEvent"]["nodeName"].as_str().unwrap();
        assert_eq!(key, &format!("health:{node}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_entries_trimmed_with_maxlen() {
    let server = Server::redis().await;
    let run = Run::new(
        500,
        &["streams"],
        &support::yaml(
            "  - name: streams\n    redis: {url: \"$server\", stream: events, maxLen: 100, mode: binary}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 500);
    let all = entries(&server, "events").await;
    assert!(
        all.len() < 500 && all.len() >= 100,
        "trimmed to about 100: {}",
        all.len()
    );
    for (_, fields) in &all {
        assert_eq!(field(fields, "specversion"), b"1.0");
        assert_eq!(field(fields, "id").len(), 36);
        assert_eq!(field(fields, "datacontenttype"), b"application/json");
        let data: serde_json::Value = serde_json::from_slice(field(fields, "data")).unwrap();
        assert!(data["healthEvent"].is_object());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_a_subscriber() {
    let server = Server::redis().await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("health.*").await.unwrap();
    let run = Run::new(
        20,
        &["pub"],
        &support::yaml(
            "  - name: pub\n    redis: {url: \"$server\", channel: \"health.{{type}}\"}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 20);
    let mut messages = pubsub.on_message();
    for _ in 0..20 {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("20 messages")
            .unwrap();
        let event: serde_json::Value = serde_json::from_slice(m.get_payload_bytes()).unwrap();
        assert_eq!(
            m.get_channel_name(),
            format!("health.{}", event["type"].as_str().unwrap())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_loses_nothing() {
    const N: usize = 3000;
    let mut server = Server::redis().await;
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(
        &lines,
        &["streams"],
        &support::yaml(
            "  - name: streams\n    redis: {url: \"$server\", stream: events, timeout: 1s}\n    \
             queue: {maxBatch: 50}\n    retry: {initialBackoff: 50ms, maxBackoff: 500ms}\n",
            &[("server", &server.url())],
        ),
    );
    let pipeline = tokio::spawn(async move {
        let stats = run.run_to_end().await;
        (run, stats)
    });
    let mut con = connection(&server).await;
    while con.xlen::<_, usize>("events").await.unwrap() < N / 10 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    let (_run, stats) = pipeline.await.unwrap();
    assert_eq!(Stats::get(&stats.delivered), N as u64);

    let all = entries(&server, "events").await;
    let ids: HashSet<String> = all
        .iter()
        .map(|(_, f)| {
            let event: serde_json::Value = serde_json::from_slice(field(f, "event")).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    eprintln!(
        "{N} events, server killed and restarted: {} retries, {} entries for {} events",
        Stats::get(&stats.retries),
        all.len(),
        ids.len()
    );
    assert_eq!(ids.len(), N, "every event is in the stream");
    assert!(Stats::get(&stats.retries) > 0, "the outage was retried");
}
