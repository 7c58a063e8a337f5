//! Throughput of the broker receivers, end to end through the release
//! binary: 200,000 NVSentinel documents from a file, mapped, routed and
//! published — NATS JetStream (every ack awaited, file storage), core NATS,
//! Redis `XADD`, MQTT 5 QoS 1, Kafka with `acks=all` (private `nats-server`,
//! `redis-server`, `mosquitto` and `tansu` — a Kafka-compatible broker, in
//! memory — on loopback) and RabbitMQ with publisher confirms (the
//! machine's, on 127.0.0.1:5672; skipped if it is not running). Every run
//! checks that the broker holds (or a subscriber got) every event.
//!
//! And the scale-out source: the same events read from a JetStream stream
//! by one or two worker processes sharing a durable consumer
//! (`source.nats`), each writing to a file; timed until the consumer has
//! nothing pending or unacknowledged.
//!
//! Prints events/s per run and the median.
//!
//!   cargo bench --bench brokers [-- RUNS [CASE…]]
//!     CASE: jetstream, nats, redis, mqtt, kafka, amqp, workers1, workers2

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

const DOCUMENTS: usize = 200_000;
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn program(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| panic!("{name} is installed (scripts/services install {name})"))
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The samples, again and again, with distinct `_id`s.
fn input(path: &std::path::Path) {
    let samples: Vec<String> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/health-events.jsonl"
    ))
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..DOCUMENTS {
        let mut doc: serde_json::Value = serde_json::from_str(&samples[i % samples.len()]).unwrap();
        doc["_id"]["$oid"] = format!("{i:024x}").into();
        writeln!(out, "{doc}").unwrap();
    }
}

struct Servers {
    nats: Child,
    redis: Child,
    mosquitto: Child,
    tansu: Child,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in [
            &mut self.nats,
            &mut self.redis,
            &mut self.mosquitto,
            &mut self.tansu,
        ] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
    let cases: Vec<&str> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    let wanted = |case: &str| cases.is_empty() || cases.contains(&case);
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("input.jsonl");
    input(&input_path);

    let (nats_port, redis_port, mqtt_port, kafka_port) =
        (free_port(), free_port(), free_port(), free_port());
    let tansu = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tansu"))
        .arg("path")
        .output()
        .unwrap();
    let tansu = String::from_utf8(tansu.stdout).unwrap();
    let kafka_listener = format!("tcp://127.0.0.1:{kafka_port}");
    // Mosquitto's defaults, but no cap on the messages queued for a
    // subscriber (the default, 1000, drops the rest at this rate).
    let mosquitto_conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &mosquitto_conf,
        format!("listener {mqtt_port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"),
    )
    .unwrap();
    let servers = Servers {
        nats: Command::new(program("nats-server"))
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &nats_port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(dir.path().join("nats"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        redis: Command::new(program("redis-server"))
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        mosquitto: Command::new(program("mosquitto"))
            .arg("-c")
            .arg(&mosquitto_conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        tansu: Command::new(tansu.trim())
            .arg("broker")
            .args(["--listener-url", &kafka_listener])
            .args(["--advertised-listener-url", &kafka_listener])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    wait_listening(nats_port);
    wait_listening(redis_port);
    wait_listening(mqtt_port);
    wait_listening(kafka_port);
    let kafka = format!("127.0.0.1:{kafka_port}");

    let nats = format!("nats://127.0.0.1:{nats_port}");
    let redis = format!("redis://127.0.0.1:{redis_port}/");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kafka_client = runtime.block_on(async {
        rskafka::client::ClientBuilder::new(vec![kafka.clone()])
            .build()
            .await
            .unwrap()
    });
    let js = runtime.block_on(async {
        let js = jetstream::new(async_nats::connect(&nats).await.unwrap());
        js.create_stream(stream::Config {
            name: "HEALTH".into(),
            subjects: vec!["health.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js
    });
    let amqp = runtime.block_on(async {
        let connection = Connection::connect(AMQP, ConnectionProperties::default())
            .await
            .ok()?;
        let channel = connection.create_channel().await.unwrap();
        channel
            .exchange_declare(
                "switchyard-bench".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_declare(
                "switchyard-bench".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                "switchyard-bench".into(),
                "switchyard-bench".into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Some((connection, channel))
    });

    let subject = "health.{{data.healthEvent.nodeName}}";
    let mqtt = format!("mqtt://127.0.0.1:{mqtt_port}");
    let all = [
        (
            "jetstream",
            format!("nats: {{url: \"{nats}\", subject: \"{subject}\", jetstream: true}}"),
        ),
        (
            "nats",
            format!("nats: {{url: \"{nats}\", subject: \"{subject}\"}}"),
        ),
        (
            "redis",
            format!("redis: {{url: \"{redis}\", stream: health}}"),
        ),
        (
            "mqtt",
            format!(
                "mqtt: {{url: \"{mqtt}\", topic: \"health/{{{{data.healthEvent.nodeName}}}}\"}}"
            ),
        ),
        (
            "kafka",
            format!(
                "kafka: {{brokers: [\"{kafka}\"], topic: \"health-RUN\", key: \"{{{{data.healthEvent.nodeName}}}}\"}}"
            ),
        ),
        (
            "amqp",
            format!(
                "amqp: {{url: \"{AMQP}\", exchange: switchyard-bench, routingKey: \"{subject}\"}}"
            ),
        ),
    ];
    for (case, receiver) in all.iter().filter(|(c, _)| wanted(c)) {
        if *case == "amqp" && amqp.is_none() {
            println!("amqp: skipped (no RabbitMQ on 127.0.0.1:5672; scripts/services start)");
            continue;
        }
        let mut rates = Vec::new();
        for run in 0..runs {
            // A new topic per run (the in-memory broker cannot empty one).
            let receiver = receiver.replace("health-RUN", &format!("health-{run}"));
            let topic = format!("health-{run}");
            if *case == "kafka" {
                runtime.block_on(async {
                    kafka_client
                        .controller_client()
                        .unwrap()
                        .create_topic(&topic, 3, 1, 5_000)
                        .await
                        .unwrap();
                });
            }
            // Empty the destination first.
            runtime.block_on(async {
                match *case {
                    // A new stream: the ids repeat across runs, and a purged
                    // stream would drop them as duplicates (Nats-Msg-Id).
                    "jetstream" => {
                        js.delete_stream("HEALTH").await.unwrap();
                        js.create_stream(stream::Config {
                            name: "HEALTH".into(),
                            subjects: vec!["health.>".into()],
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    }
                    "redis" => {
                        let mut con = redis::Client::open(redis.as_str())
                            .unwrap()
                            .get_multiplexed_async_connection()
                            .await
                            .unwrap();
                        let _: () = redis::cmd("DEL")
                            .arg("health")
                            .query_async(&mut con)
                            .await
                            .unwrap();
                    }
                    "amqp" => {
                        let (_, channel) = amqp.as_ref().unwrap();
                        channel
                            .queue_purge("switchyard-bench".into(), QueuePurgeOptions::default())
                            .await
                            .unwrap();
                    }
                    _ => {}
                }
            });
            let state = dir.path().join("state");
            let _ = std::fs::remove_dir_all(&state);
            let config = dir.path().join("bench.yaml");
            std::fs::write(
                &config,
                format!(
                    "metadata: {{cluster: bench}}\n\
                     source: {{file: {{path: {input}}}}}\n\
                     state: {{dir: {state}}}\n\
                     route: {{match: [{{receiver: out}}]}}\n\
                     receivers:\n  - name: out\n    {receiver}\n",
                    input = input_path.display(),
                    state = state.display(),
                ),
            )
            .unwrap();
            // MQTT keeps nothing: a subscriber counts what arrives.
            let subscriber = (*case == "mqtt").then(|| runtime.block_on(subscribe(mqtt_port)));
            let started = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["run", "-c"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            let took = started.elapsed();
            assert!(status.success(), "{case}: switchyard failed");
            let held: Option<u64> = runtime.block_on(async {
                match *case {
                    "jetstream" => Some(
                        js.get_stream("HEALTH")
                            .await
                            .unwrap()
                            .info()
                            .await
                            .unwrap()
                            .state
                            .messages,
                    ),
                    "redis" => {
                        let mut con = redis::Client::open(redis.as_str())
                            .unwrap()
                            .get_multiplexed_async_connection()
                            .await
                            .unwrap();
                        Some(
                            redis::cmd("XLEN")
                                .arg("health")
                                .query_async(&mut con)
                                .await
                                .unwrap(),
                        )
                    }
                    "amqp" => {
                        let (_, channel) = amqp.as_ref().unwrap();
                        let q = channel
                            .queue_declare(
                                "switchyard-bench".into(),
                                QueueDeclareOptions {
                                    passive: true,
                                    durable: true,
                                    ..Default::default()
                                },
                                FieldTable::default(),
                            )
                            .await
                            .unwrap();
                        Some(u64::from(q.message_count()))
                    }
                    "kafka" => {
                        let mut held = 0;
                        for p in 0..3 {
                            let pc = kafka_client
                                .partition_client(
                                    topic.as_str(),
                                    p,
                                    rskafka::client::partition::UnknownTopicHandling::Error,
                                )
                                .await
                                .unwrap();
                            // Counted by reading: tansu's latest offset
                            // is the last batch's start, not its end.
                            let mut offset = 0;
                            loop {
                                let (batch, _) =
                                    pc.fetch_records(offset, 1..50_000_000, 100).await.unwrap();
                                let Some(last) = batch.last() else { break };
                                offset = last.offset + 1;
                                held += batch.len() as u64;
                            }
                        }
                        Some(held)
                    }
                    "mqtt" => {
                        let (count, task) = subscriber.unwrap();
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while count.load(Ordering::Relaxed) < DOCUMENTS && Instant::now() < deadline
                        {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        task.abort();
                        Some(count.load(Ordering::Relaxed) as u64)
                    }
                    _ => None,
                }
            });
            if let Some(held) = held {
                assert_eq!(
                    held, DOCUMENTS as u64,
                    "{case}: the broker holds every event"
                );
            }
            let rate = DOCUMENTS as f64 / took.as_secs_f64();
            println!(
                "{case}: {DOCUMENTS} events in {:.2} s = {rate:.0} events/s",
                took.as_secs_f64()
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!("{case} median: {:.0} events/s", rates[rates.len() / 2]);
    }
    for workers in [1, 2] {
        let case = format!("workers{workers}");
        if !wanted(&case) {
            continue;
        }
        let mut rates = Vec::new();
        for _ in 0..runs {
            let took = runtime.block_on(consume(&js, &nats, &input_path, dir.path(), workers));
            let rate = DOCUMENTS as f64 / took.as_secs_f64();
            println!(
                "{case}: {DOCUMENTS} events in {:.2} s = {rate:.0} events/s",
                took.as_secs_f64()
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!("{case} median: {:.0} events/s", rates[rates.len() / 2]);
    }
    if let Some((_, channel)) = &amqp {
        runtime.block_on(async {
            let _ = channel
                .queue_delete("switchyard-bench".into(), Default::default())
                .await;
            let _ = channel
                .exchange_delete("switchyard-bench".into(), Default::default())
                .await;
        });
    }
    drop(servers);
}

/// An MQTT 5 subscriber (QoS 1) on `health/#`, counting what arrives.
async fn subscribe(port: u16) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("bench-subscriber", "127.0.0.1", port),
        1000,
    );
    client
        .subscribe("health/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready);
    let task = tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Incoming::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Incoming::Publish(_)) => {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    subscribed.await.unwrap();
    (count, task)
}

/// Fills a new stream HEALTH with the documents' events (untimed), then
/// times `workers` worker processes sharing one durable consumer until it
/// has nothing pending or unacknowledged.
async fn consume(
    js: &jetstream::Context,
    nats: &str,
    input: &std::path::Path,
    dir: &std::path::Path,
    workers: usize,
) -> Duration {
    let _ = js.delete_stream("HEALTH").await;
    js.create_stream(stream::Config {
        name: "HEALTH".into(),
        subjects: vec!["health.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let config = dir.join("fill.yaml");
    std::fs::write(
        &config,
        format!(
            "metadata: {{cluster: bench}}\n\
             source: {{file: {{path: {input}}}}}\n\
             state: {{dir: {state}}}\n\
             route: {{match: [{{receiver: out}}]}}\n\
             receivers:\n  - name: out\n    nats: {{url: \"{nats}\", subject: \"health.{{{{data.healthEvent.nodeName}}}}\", jetstream: true}}\n",
            input = input.display(),
            state = dir.join("fill-state").display(),
        ),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir.join("fill-state"));
    let status = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "filling the stream failed");

    let started = Instant::now();
    let mut children = Vec::new();
    for w in 0..workers {
        let out = dir.join(format!("worker-{w}.jsonl"));
        let _ = std::fs::remove_file(&out);
        let config = dir.join(format!("worker-{w}.yaml"));
        std::fs::write(
            &config,
            format!(
                "source: {{nats: {{url: \"{nats}\", stream: HEALTH, consumer: bench}}}}\n\
                 state: {{dir: {state}}}\n\
                 route: {{match: [{{receiver: out}}]}}\n\
                 receivers:\n  - name: out\n    file: {{path: {out}, maxSize: 4GiB}}\n",
                state = dir.join(format!("worker-{w}-state")).display(),
                out = out.display(),
            ),
        )
        .unwrap();
        children.push(
            Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["run", "-c"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let stream = js.get_stream("HEALTH").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the workers did not finish");
        if let Ok(mut consumer) = stream
            .get_consumer::<jetstream::consumer::pull::Config>("bench")
            .await
        {
            let info = consumer.info().await.unwrap();
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.delivered.stream_sequence > 0
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    for mut child in children {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    let written: usize = (0..workers)
        .map(|w| {
            std::fs::read_to_string(dir.join(format!("worker-{w}.jsonl")))
                .map_or(0, |s| s.lines().count())
        })
        .sum();
    assert!(
        written >= DOCUMENTS,
        "the workers wrote {written} of {DOCUMENTS} events"
    );
    let _ = stream.delete_consumer("bench").await;
    took
}
