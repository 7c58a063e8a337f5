//! The `amqp` receiver against the machine's RabbitMQ (127.0.0.1:5672;
//! `scripts/services` starts it when it is not running), each test with its
//! own exchange and queue: events read back with the CloudEvents AMQP
//! binding checked (structured and binary), templated routing keys,
//! publisher confirms, and an event no queue takes retried, then
//! dead-lettered.

mod support;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use switchyard::pipeline::Stats;

use support::pipeline::{Run, dead_letters};

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
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (guest/guest)");
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// A topic exchange and, if `bind` is given, a queue bound to it.
async fn topology(channel: &Channel, name: &str, bind: Option<&str>) {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: false,
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
                QueueDeclareOptions::default(),
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
    topology(&channel, &name, Some("health.#")).await;
    let run = Run::new(
        50,
        &["rabbit"],
        &format!(
            "  - name: rabbit\n    amqp: {{url: \"{URL}\", exchange: {name}, routingKey: \"health.{{{{data.healthEvent.nodeName}}}}\"}}\n"
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
    topology(&channel, &name, Some("#")).await;
    let run = Run::new(
        10,
        &["rabbit"],
        &format!(
            "  - name: rabbit\n    amqp: {{url: \"{URL}\", exchange: {name}, routingKey: \"{{{{type}}}}\", mode: binary}}\n"
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
    topology(&channel, &name, None).await;
    let run = Run::new(
        3,
        &["rabbit"],
        &format!(
            "  - name: rabbit\n    amqp: {{url: \"{URL}\", exchange: {name}, routingKey: nowhere}}\n    \
             retry: {{maxRetries: 1, initialBackoff: 10ms}}\n    deadLetter: {{file: \"@DIR@/dlq.jsonl\"}}\n"
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
