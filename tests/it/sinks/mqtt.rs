//! The `mqtt` receiver against a real Mosquitto, each test with its own
//! broker: events read back by a real subscriber with the CloudEvents MQTT
//! binding checked (MQTT 5 structured and binary, MQTT 3.1.1 structured),
//! templated topics, TLS with a private CA, and a broker restarted under
//! load (every event reaches the subscriber, retries counted).

use crate::support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
use switchyard::stats::Stats;

use support::brokers::Server;
use support::pipeline::{Run, distinct_documents};

/// A real MQTT 5 subscriber (QoS 1) collecting what arrives on `filter`.
/// With `persistent`, its session outlives a broker restart.
struct Subscriber {
    received: Arc<Mutex<Vec<Publish>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(server: &Server, filter: &str, persistent: bool) -> Self {
        let mut options = MqttOptions::new(
            format!("sub-{}-{}", std::process::id(), server.port),
            "127.0.0.1",
            server.port,
        );
        options.set_clean_start(!persistent);
        if persistent {
            options.set_session_expiry_interval(Some(3600));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready);
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => sink.lock().unwrap().push(p),
                    Ok(_) => {}
                    // The broker is restarting: try again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("subscribed")
            .unwrap();
        Self { received, task }
    }

    /// Waits until `n` messages arrived (or 20 s passed) and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Publish> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.received.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Anything beyond `n` (duplicates) arrives within a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn property<'a>(p: &'a Publish, name: &str) -> Option<&'a str> {
    let props = p.properties.as_ref()?;
    props
        .user_properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn topic(p: &Publish) -> String {
    String::from_utf8(p.topic.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_structured_to_templated_topics() {
    let server = Server::mosquitto().await;
    let subscriber = Subscriber::start(&server, "health/#", false).await;
    let run = Run::new(
        100,
        &["edge"],
        &support::yaml(
            "  - name: edge\n    mqtt:\n      url: $server\n      topic: \"health/{{data.healthEvent.nodeName}}\"\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 100);

    let messages = subscriber.wait_for(100).await;
    assert_eq!(messages.len(), 100, "each event once");
    let mut ids = HashSet::new();
    for m in &messages {
        let props = m.properties.as_ref().expect("MQTT 5 properties");
        assert_eq!(
            props.content_type.as_deref(),
            Some("application/cloudevents+json; charset=utf-8")
        );
        assert!(
            props.user_properties.is_empty(),
            "structured: no attributes as properties"
        );
        let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(event["specversion"], "1.0");
        let node = event["data"]["healthEvent"]["nodeName"].as_str().unwrap();
        assert_eq!(topic(m), format!("health/{node}"));
        ids.insert(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_binary_mode_user_properties() {
    let server = Server::mosquitto().await;
    let subscriber = Subscriber::start(&server, "gpu/+/events", false).await;
    let run = Run::new(
        50,
        &["edge"],
        &support::yaml(
            "  - name: edge\n    mqtt:\n      url: $server\n      mode: binary\n      \
             topic: \"gpu/{{data.healthEvent.agent}}/events\"\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 50);

    let messages = subscriber.wait_for(50).await;
    assert_eq!(messages.len(), 50);
    for m in &messages {
        let props = m.properties.as_ref().expect("MQTT 5 properties");
        assert_eq!(props.content_type.as_deref(), Some("application/json"));
        assert_eq!(property(m, "specversion"), Some("1.0"));
        for name in ["id", "source", "type", "time", "subject"] {
            assert!(property(m, name).is_some(), "user property {name}");
        }
        assert!(
            property(m, "datacontenttype").is_none(),
            "the content type travels in its own property"
        );
        // The payload is the data alone.
        let data: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let agent = data["healthEvent"]["agent"].as_str().unwrap();
        assert_eq!(topic(m), format!("gpu/{agent}/events"));
        assert!(property(m, "time").unwrap().ends_with('Z'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_structured() {
    let server = Server::mosquitto().await;
    // A 3.1.1 subscriber: the message carries no properties at all.
    let mut options = rumqttc::MqttOptions::new("sub-311", "127.0.0.1", server.port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    client
        .subscribe("legacy/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    let _ = tx.send(p);
                }
                _ => {}
            }
        }
    });
    ready.await.unwrap();

    let run = Run::new(
        20,
        &["edge"],
        &support::yaml(
            "  - name: edge\n    mqtt: {url: \"$server\", version: 3.1.1, topic: \"legacy/{{data.healthEvent.nodeName}}\"}\n",
            &[("server", &server.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 20);
    let mut ids = HashSet::new();
    while ids.len() < 20 {
        let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("all 20 arrive")
            .unwrap();
        assert_eq!(p.qos, rumqttc::QoS::AtLeastOnce);
        let event: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        ids.insert(event["id"].as_str().unwrap().to_owned());
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_verification_on() {
    let pki = support::tls::Pki::new();
    let server = Server::mosquitto_tls(&pki).await;
    let url = format!("mqtts://localhost:{}", server.port);

    // Trusting the CA: delivered.
    let run = Run::new(
        10,
        &["edge"],
        &support::yaml(
            "  - name: edge\n    mqtt:\n      url: $url\n      topic: t\n      tls: {caFile: $pki}\n",
            &[("url", &url), ("pki", &pki.ca.display())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 10);

    // Without the CA the certificate is refused: nothing is delivered, the
    // events are retried and then dead-lettered.
    let run = Run::new(
        3,
        &["edge"],
        &support::yaml(
            "  - name: edge\n    mqtt: {url: \"$url\", topic: t, timeout: 2s}\n    \
             retry: {maxRetries: 1, initialBackoff: 10ms}\n    deadLetter: {file: \"@DIR@/dead.jsonl\"}\n",
            &[("url", &url)],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    assert_eq!(Stats::get(&stats.dead_lettered), 3);
    let dead = support::pipeline::dead_letters(&run.path("dead.jsonl"));
    let reason = dead[0]["error"].as_str().unwrap();
    assert!(reason.contains("MQTT broker"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_under_load_loses_nothing() {
    const N: usize = 3000;
    let mut server = Server::mosquitto().await;
    let subscriber = Subscriber::start(&server, "load/#", true).await;
    let documents = distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(
        &lines,
        &["edge"],
        &support::yaml(
            "  - name: edge\n    mqtt: {url: \"$server\", topic: \"load/{{data.healthEvent.nodeName}}\", timeout: 1s}\n    \
             queue: {maxBatch: 50}\n    retry: {initialBackoff: 50ms, maxBackoff: 500ms}\n",
            &[("server", &server.url())],
        ),
    );
    let pipeline = tokio::spawn(async move {
        let stats = run.run_to_end().await;
        (run, stats)
    });
    while subscriber.received.lock().unwrap().len() < N / 10 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // A clean stop: Mosquitto saves its sessions (and the messages queued
    // for the subscriber) only then; a SIGKILL loses what it acknowledged
    // since its last save, whoever published it.
    server.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await;
    let (_run, stats) = pipeline.await.unwrap();
    assert_eq!(Stats::get(&stats.delivered), N as u64);

    let messages = subscriber.wait_for(N).await;
    let ids: HashSet<String> = messages
        .iter()
        .map(|m| {
            let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    eprintln!(
        "{N} events, broker restarted: {} retries, {} messages for {} events",
        Stats::get(&stats.retries),
        messages.len(),
        ids.len()
    );
    if ids.len() != N {
        eprintln!("the broker's log:\n{}", server.log());
    }
    assert_eq!(ids.len(), N, "every event reached the subscriber");
    assert!(Stats::get(&stats.retries) > 0, "the outage was retried");
}
