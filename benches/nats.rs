//! Throughput of the `nats` receiver, end to end through the release
//! binary: 300,000 NVSentinel documents from a file, mapped, routed and
//! published to a private `nats-server` on loopback — JetStream with every
//! acknowledgement awaited (file storage), and core NATS. Prints events/s
//! per run and the median.
//!
//!   cargo bench --bench nats [-- RUNS]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

const DOCUMENTS: usize = 300_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_server() -> &'static str {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nats-server is installed (scripts/services install nats-server)")
}

/// The samples, 300 times, with distinct `_id`s.
fn input(path: &std::path::Path) {
    let samples = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/health-events.jsonl"
    ))
    .unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..DOCUMENTS {
        let line = samples.lines().nth(i % 1000).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(line).unwrap();
        doc["_id"]["$oid"] = format!("{i:024x}").into();
        writeln!(out, "{doc}").unwrap();
    }
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let input_path = dir.path().join("input.jsonl");
    input(&input_path);
    let port = free_port();
    let mut server = Command::new(nats_server())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path().join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let js = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match async_nats::connect(&url).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("nats-server: {e}"),
            }
        };
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: "HEALTH".into(),
            subjects: vec!["health.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js
    });

    for jetstream in [true, false] {
        let mut rates = Vec::new();
        for _ in 0..runs {
            let state = dir.path().join("state");
            let _ = std::fs::remove_dir_all(&state);
            runtime.block_on(async {
                js.get_stream("HEALTH").await.unwrap().purge().await.unwrap();
            });
            let config = dir.path().join("bench.yaml");
            std::fs::write(
                &config,
                format!(
                    "metadata: {{cluster: bench}}\n\
                     source: {{file: {{path: {input}}}}}\n\
                     state: {{dir: {state}}}\n\
                     route: {{match: [{{receiver: bus}}]}}\n\
                     receivers:\n\
                     \x20 - name: bus\n\
                     \x20   nats: {{url: \"{url}\", subject: \"health.{{{{data.healthEvent.nodeName}}}}\", jetstream: {jetstream}}}\n",
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
            assert!(status.success());
            if jetstream {
                let stored = runtime.block_on(async {
                    let mut s = js.get_stream("HEALTH").await.unwrap();
                    s.info().await.unwrap().state.messages
                });
                assert_eq!(stored, DOCUMENTS as u64, "every event acknowledged and stored");
            }
            let rate = DOCUMENTS as f64 / took.as_secs_f64();
            println!(
                "{}: {DOCUMENTS} events in {:.2} s = {:.0} events/s",
                if jetstream { "jetstream (acked)" } else { "core nats (flushed)" },
                took.as_secs_f64(),
                rate
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{} median: {:.0} events/s",
            if jetstream { "jetstream" } else { "core nats" },
            rates[rates.len() / 2]
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
