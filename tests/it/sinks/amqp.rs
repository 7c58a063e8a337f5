//! The `amqp` receiver against the machine's RabbitMQ (127.0.0.1:5672;
//! `scripts/services` starts it when it is not running), each test with its
//! own exchange and queue: events read back with the CloudEvents AMQP
//! binding checked (structured and binary), templated routing keys,
//! publisher confirms, and an event no queue takes retried, then
//! dead-lettered. A private RabbitMQ node is killed and restarted under
//! load: every event is in its durable queue.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use switchyard::stats::Stats;

use support::brokers::Server;
use support::pipeline::{Run, dead_letters, distinct_documents};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker, started by `scripts/services` if it is not listening.
async fn channel() -> (Connection, Channel) {
    if std::net::TcpStream::connect("127.0.0.1:5672").is_err() {
        let status =
            std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services"))
                .arg("start")
                .status()
                .unwrap();
        assert!(status.success(), "scripts/services start");
    }
    open(URL).await
}

async fn open(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {url}: {e}"));
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// A topic exchange and, if `bind` is given, a queue bound to it; both
/// kept across a broker restart if `durable`.
async fn topology(channel: &Channel, name: &str, bind: Option<&str>, durable: bool) {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: false,
                durable,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    if let Some(pattern) = bind {
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                name.into(),
                name.into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
}

async fn cleanup(channel: &Channel, name: &str) {
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await;
}

/// Every message in the queue.
async fn drain(channel: &Channel, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let mut out = Vec::new();
    while let Some(m) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(m);
    }
    out
}

fn unique(test: &str) -> String {
    format!("switchyard-{test}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_with_templated_routing_keys_and_confirms() {
    let (_connection, channel) = channel().await;
    let name = unique("structured");
    topology(&channel, &name, Some("health.#"), false).await;
    let run = Run::new(
        50,
        &["rabbit"],
        &support::yaml(
            "  - name: rabbit\n    amqp: {url: \"$URL\", exchange: $name, routingKey: \"health.{{data.healthEvent.nodeName}}\"}\n",
            &[("URL", &URL), ("name", &name)],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 50);
    let messages = drain(&channel, &name).await;
    cleanup(&channel, &name).await;
    assert_eq!(messages.len(), 50);
    for m in &messages {
        let p = &m.delivery.properties;
        assert_eq!(
            p.content_type().as_ref().map(|t| t.as_str()),
            Some("application/cloudevents+json; charset=utf-8")
        );
        assert_eq!(*p.delivery_mode(), Some(2), "persistent");
        let event: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
        assert_eq!(
            p.message_id().as_ref().map(|i| i.as_str()),
            event["id"].as_str()
        );
        let node = event["data"]["healthEvent"]["nodeName"].as_str().unwrap();
        assert_eq!(m.delivery.routing_key.as_str(), format!("health.{node}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_headers() {
    let (_connection, channel) = channel().await;
    let name = unique("binary");
    topology(&channel, &name, Some("#"), false).await;
    let run = Run::new(
        10,
        &["rabbit"],
        &support::yaml(
            "  - name: rabbit\n    amqp: {url: \"$URL\", exchange: $name, routingKey: \"{{type}}\", mode: binary}\n",
            &[("URL", &URL), ("name", &name)],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 10);
    let messages = drain(&channel, &name).await;
    cleanup(&channel, &name).await;
    assert_eq!(messages.len(), 10);
    for m in &messages {
        let p = &m.delivery.properties;
        let headers = p.headers().as_ref().unwrap().inner();
        let text = |key: &str| match headers.get(key) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(text("cloudEvents:specversion"), "1.0");
        assert_eq!(text("cloudEvents:id").len(), 36);
        assert_eq!(text("cloudEvents:type"), m.delivery.routing_key.as_str());
        assert!(text("cloudEvents:source").starts_with("nvsentinel://test/"));
        assert_eq!(
            p.content_type().as_ref().map(|t| t.as_str()),
            Some("application/json")
        );
        let data: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
        assert!(data["healthEvent"].is_object(), "the body is the data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_queue_takes_is_retried_then_dead_lettered() {
    let (_connection, channel) = channel().await;
    let name = unique("unroutable");
    topology(&channel, &name, None, false).await;
    let run = Run::new(
        3,
        &["rabbit"],
        &support::yaml(
            "  - name: rabbit\n    amqp: {url: \"$URL\", exchange: $name, routingKey: nowhere}\n    \
             retry: {maxRetries: 1, initialBackoff: 10ms}\n    deadLetter: {file: \"@DIR@/dlq.jsonl\"}\n",
            &[("URL", &URL), ("name", &name)],
        ),
    );
    let stats = run.run_to_end().await;
    cleanup(&channel, &name).await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    let dead = dead_letters(&run.path("dlq.jsonl"));
    assert_eq!(dead.len(), 3);
    for d in &dead {
        assert!(
            d["error"]
                .as_str()
                .unwrap()
                .contains("routed it to no queue"),
            "{d}"
        );
        assert_eq!(d["attempts"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_under_load_loses_nothing() {
    const N: usize = 3000;
    let mut server = Server::rabbitmq().await;
    let (connection, channel) = open(&server.url()).await;
    topology(&channel, "health", Some("health.#"), true).await;
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(
        &lines,
        &["rabbit"],
        &support::yaml(
            "  - name: rabbit\n    amqp: {url: \"$server\", exchange: health, routingKey: \"health.{{data.healthEvent.nodeName}}\", persistent: true, timeout: 1s}\n    \
             queue: {maxBatch: 50}\n    retry: {initialBackoff: 50ms, maxBackoff: 500ms}\n",
            &[("server", &server.url())],
        ),
    );
    let pipeline = tokio::spawn(async move {
        let stats = run.run_to_end().await;
        (run, stats)
    });
    // Kill the broker once part of the load is in the queue.
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    while channel
        .queue_declare("health".into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
        < (N / 10) as u32
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop((channel, connection));
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    // The binding again, as a consumer declares its topology when it
    // reconnects: about one run in fifty, RabbitMQ 3.10 comes back from the
    // kill with the durable queue but without the binding made a second
    // before it, and every event would be returned unroutable (and retried)
    // for ever.
    let (_connection, channel) = open(&server.url()).await;
    channel
        .queue_declare("health".into(), passive, FieldTable::default())
        .await
        .expect("RabbitMQ kept the durable queue across the kill");
    topology(&channel, "health", Some("health.#"), true).await;
    let (_run, stats) = pipeline.await.unwrap();
    assert_eq!(Stats::get(&stats.delivered), N as u64);

    let messages = drain(&channel, "health").await;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        let event: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
        *by_id
            .entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let duplicates: usize = by_id.values().map(|c| c - 1).sum();
    eprintln!(
        "{N} events, broker killed and restarted: {} retries, {duplicates} duplicates in the queue",
        Stats::get(&stats.retries)
    );
    assert_eq!(by_id.len(), N, "every event is in the queue");
    assert!(Stats::get(&stats.retries) > 0, "the outage was retried");
}
