//! Throughput of the broker receivers, end to end through the release
//! binary: 200,000 NVSentinel documents from a file, mapped, routed and
//! published — NATS JetStream (every ack awaited, file storage), core NATS,
//! Redis `XADD` (private `redis-server`s on loopback) and RabbitMQ with
//! publisher confirms (the machine's, on 127.0.0.1:5672; skipped if it is not
//! running). Every run checks that the broker holds every event. Prints
//! events/s per run and the median.
//!
//!   cargo bench --bench brokers [-- RUNS [CASE…]]     CASE: jetstream, nats, redis, amqp

use std::io::Write;
use std::process::{Child, Command, Stdio};
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
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in [&mut self.nats, &mut self.redis] {
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

    let (nats_port, redis_port) = (free_port(), free_port());
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
    };
    wait_listening(nats_port);
    wait_listening(redis_port);
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let redis = format!("redis://127.0.0.1:{redis_port}/");
    let runtime = tokio::runtime::Runtime::new().unwrap();
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
        for _ in 0..runs {
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
