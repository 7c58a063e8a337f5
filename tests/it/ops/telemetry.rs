//! `/metrics`, `/healthz` and `/readyz` of the running binary, scraped over
//! HTTP and parsed: the counts match what the test made happen (records
//! read, malformed, dropped per rule, matched per rule, delivered, retried
//! and dead-lettered per receiver, batch sizes, position saves).

use crate::support;

use std::time::{Duration, Instant};

use support::http;
use support::metrics::scrape;
use support::pipeline::SAMPLES;
use support::process::Process;
use support::wasm::{self, Misbehaviour};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_what_happened() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let mut lines: Vec<&str> = SAMPLES.lines().take(N).collect();
    lines.insert(10, "this is not json");
    lines.insert(50, "{\"_id\": {\"$oid\": \"65f000000000000000000001\"}}");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let down = http::receiver(http::always(503)).await;
    let out = dir.path().join("out.jsonl");
    let dlq = dir.path().join("fatal-dlq.jsonl");
    // A transform that traps on events whose id starts with 0 (they pass
    // on unchanged).
    let plugin = dir.path().join("trap.wasm");
    std::fs::write(&plugin, wasm::transform(Misbehaviour::Trap, "0")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input, follow: true}}\n\
             state: {dir: $state, flushInterval: 50ms}\n\
             telemetry: {listen: 127.0.0.1:0}\n\
             transforms: [{wasm: {plugin: $plugin, name: trapper}, onError: pass}]\n\
             route:\n\
             \x20 drop: [{data.healthEvent.recommendedAction: NONE}]\n\
             \x20 match: [{receiver: out}, {receiver: fatal, data.healthEvent.isFatal: true}]\n\
             receivers:\n\
             \x20 - {name: out, file: {path: $out}, queue: {maxBatch: 7}}\n\
             \x20 - name: fatal\n\
             \x20   http: {endpoint: \"$down\"}\n\
             \x20   retry: {maxRetries: 1, initialBackoff: 5ms, jitter: 0}\n\
             \x20   deadLetter: {file: $dlq}\n",
            &[
                ("input", &input.display()),
                ("state", &dir.path().join("state").display()),
                ("plugin", &plugin.display()),
                ("out", &out.display()),
                ("down", &down.url()),
                ("dlq", &dlq.display()),
            ],
        ),
    )
    .unwrap();

    // What the route tree does with these records, from `route test`.
    let routed = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["route", "test", "-c"])
        .arg(&config)
        .arg(&input)
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(routed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), N, "the two malformed records are not routed");
    let to = |name: &str| {
        rows.iter()
            .filter(|r| r["receivers"].as_array().unwrap().iter().any(|x| x == name))
            .count() as f64
    };
    let (to_out, to_fatal) = (to("out"), to("fatal"));
    let trapped = rows
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with('0'))
        .count() as f64;
    assert!(trapped > 0.0);
    let dropped = N as f64 - to_out;
    assert!(to_out > 0.0 && to_fatal > 0.0 && dropped > 0.0);

    let mut process = Process::run(&config, &[]);
    let addr = process.telemetry_addr().await;
    let deadline = Instant::now() + WAIT;
    let scraped = loop {
        let s = scrape(&addr).await;
        let done = |name, receiver| s.find(name, &[("receiver", receiver)]);
        if done("switchyard_receiver_events_delivered_total", "out") == Some(to_out)
            && done("switchyard_receiver_events_dead_lettered_total", "fatal") == Some(to_fatal)
            && s.find("switchyard_events_in_flight", &[]) == Some(0.0)
            // The position is saved every flushInterval (50ms) after that.
            && s.find("switchyard_source_positions_saved_total", &[]) >= Some(1.0)
        {
            break s;
        }
        assert!(Instant::now() < deadline, "not done:\n{}", s.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let get = |name: &str| scraped.get(name, &[]);
    assert_eq!(get("switchyard_events_read_total"), N as f64 + 2.0);
    assert_eq!(get("switchyard_events_mapped_total"), N as f64);
    assert_eq!(get("switchyard_events_malformed_total"), 2.0);
    assert_eq!(get("switchyard_events_unrouted_total"), dropped);
    assert_eq!(get("switchyard_source_connected"), 1.0);
    assert_eq!(get("switchyard_source_position_age_seconds"), 0.0);
    assert_eq!(get("switchyard_leader"), 1.0);
    let rule = |name: &str, rule: &str| scraped.get(name, &[("rule", rule)]);
    assert_eq!(
        rule("switchyard_route_drops_total", "route.drop[0]"),
        dropped
    );
    assert_eq!(
        rule("switchyard_route_matches_total", "route.match[0]"),
        to_out
    );
    assert_eq!(
        rule("switchyard_route_matches_total", "route.match[1]"),
        to_fatal
    );
    let receiver = |name: &str, r: &str| scraped.get(name, &[("receiver", r)]);
    // `fatal`: one event per request, each tried twice, then dead-lettered.
    assert_eq!(
        receiver("switchyard_receiver_delivery_retries_total", "fatal"),
        to_fatal
    );
    assert_eq!(
        receiver(
            "switchyard_receiver_delivery_duration_seconds_count",
            "fatal"
        ),
        2.0 * to_fatal
    );
    assert_eq!(
        receiver("switchyard_receiver_events_delivered_total", "fatal"),
        0.0
    );
    assert_eq!(down.count() as f64, 2.0 * to_fatal);
    // `out`: batches of at most 7; every event in one of them.
    assert_eq!(
        receiver("switchyard_receiver_batch_size_events_sum", "out"),
        to_out
    );
    assert_eq!(
        scraped.get(
            "switchyard_receiver_batch_size_events_bucket",
            &[("receiver", "out"), ("le", "8.0")]
        ),
        receiver("switchyard_receiver_batch_size_events_count", "out"),
        "no batch above maxBatch"
    );
    assert_eq!(receiver("switchyard_receiver_queue_events", "out"), 0.0);
    assert_eq!(
        receiver("switchyard_receiver_events_rejected_total", "out"),
        0.0
    );
    assert!(get("switchyard_source_positions_saved_total") >= 1.0);
    let plugin = |name: &str| {
        scraped.get(
            name,
            &[("plugin", "trapper"), ("place", "transforms[0].wasm")],
        )
    };
    assert_eq!(plugin("switchyard_plugin_calls_total"), N as f64);
    assert_eq!(plugin("switchyard_plugin_traps_total"), trapped);
    assert_eq!(plugin("switchyard_plugin_timeouts_total"), 0.0);
    assert!(plugin("switchyard_plugin_call_duration_seconds_total") > 0.0);
    assert_eq!(get("switchyard_transform_failures_total"), trapped);
    assert!(
        scraped
            .text
            .contains("# TYPE switchyard_receiver_delivery_duration_seconds histogram"),
        "{}",
        scraped.text
    );
    assert_eq!(
        get("switchyard_event_delivery_duration_seconds_count"),
        to_out,
        "one observation per delivered event"
    );
    assert!(get("switchyard_source_position_saved_timestamp_seconds") > 1.7e9);
    assert!(
        !scraped.text.contains("health_events_exporter"),
        "NVSentinel's names only with telemetry.compat: nvsentinel"
    );

    // Health: alive, and ready (the source is open, the receivers built).
    let healthz = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&readyz.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ready": true, "role": "single", "sourceConnected": true, "receivers": 2})
    );
    assert!(process.terminate().success());
}

/// `telemetry.compat: nvsentinel`: NVSentinel's families, their labels and
/// values, summed over receivers that succeed, give up, refuse and fetch
/// tokens through failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvsentinel_names_count_what_happened() {
    const N: usize = 60;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let mut lines: Vec<&str> = SAMPLES.lines().take(N).collect();
    lines.insert(7, "this is not json");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let down = http::receiver(http::always(503)).await;
    let refuses = http::receiver(http::always(400)).await;
    let up = http::receiver(http::always(200)).await;
    let tokens = http::token_server(3600, Duration::ZERO, 2).await;
    let out = dir.path().join("out.jsonl");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input, follow: true}}\n\
             state: {dir: $state, flushInterval: 50ms}\n\
             telemetry: {listen: 127.0.0.1:0, compat: nvsentinel}\n\
             route:\n\
             \x20 drop: [{data.healthEvent.recommendedAction: NONE}]\n\
             \x20 match:\n\
             \x20   - {receiver: out}\n\
             \x20   - {receiver: fatal, data.healthEvent.isFatal: true}\n\
             \x20   - {receiver: refuses, data.healthEvent.isFatal: false}\n\
             \x20   - {receiver: authed, data.healthEvent.isFatal: true}\n\
             receivers:\n\
             \x20 - {name: out, file: {path: $out}}\n\
             \x20 - name: fatal\n\
             \x20   http: {endpoint: \"$down\"}\n\
             \x20   retry: {maxRetries: 1, initialBackoff: 5ms, jitter: 0}\n\
             \x20   deadLetter: {file: $dlq}\n\
             \x20 - name: refuses\n\
             \x20   http: {endpoint: \"$refuses\"}\n\
             \x20   deadLetter: {file: $dlq2}\n\
             \x20 - name: authed\n\
             \x20   http:\n\
             \x20     endpoint: \"$up\"\n\
             \x20     oauth2: {tokenUrl: \"$tok\", clientId: $id, clientSecret: $secret}\n\
             \x20   retry: {initialBackoff: 5ms, jitter: 0}\n",
            &[
                ("input", &input.display()),
                ("state", &dir.path().join("state").display()),
                ("out", &out.display()),
                ("down", &down.url()),
                ("dlq", &dir.path().join("dlq.jsonl").display()),
                ("refuses", &refuses.url()),
                ("dlq2", &dir.path().join("dlq2.jsonl").display()),
                ("up", &up.url()),
                ("tok", &tokens.url()),
                ("id", &http::CLIENT_ID),
                ("secret", &http::CLIENT_SECRET),
            ],
        ),
    )
    .unwrap();

    let routed = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["route", "test", "-c"])
        .arg(&config)
        .arg(&input)
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(routed.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let to = |name: &str| {
        rows.iter()
            .filter(|r| r["receivers"].as_array().unwrap().iter().any(|x| x == name))
            .count() as f64
    };
    let (to_out, to_fatal, to_refuses, to_authed) =
        (to("out"), to("fatal"), to("refuses"), to("authed"));
    assert!(to_fatal > 0.0 && to_refuses > 0.0 && to_authed == to_fatal);
    let dropped = N as f64 - to_out;
    assert!(dropped > 0.0);

    let mut process = Process::run(&config, &[]);
    let addr = process.telemetry_addr().await;
    let deadline = Instant::now() + WAIT;
    let scraped = loop {
        let s = scrape(&addr).await;
        if s.find("switchyard_events_in_flight", &[]) == Some(0.0)
            && s.find("switchyard_events_read_total", &[]) == Some(N as f64 + 1.0)
            && s.find("health_events_exporter_resume_token_update_timestamp", &[])
                .is_some_and(|t| t > 0.0)
        {
            break s;
        }
        assert!(Instant::now() < deadline, "not done:\n{}", s.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let get = |name: &str| scraped.get(name, &[]);
    let with = |name: &str, k: &str, v: &str| scraped.get(name, &[(k, v)]);
    assert_eq!(
        get("health_events_exporter_events_received_total"),
        N as f64 + 1.0
    );
    assert_eq!(get("health_events_exporter_transform_errors_total"), 1.0);
    let delivered = to_out + to_authed;
    assert_eq!(
        with(
            "health_events_exporter_events_published_total",
            "status",
            "success"
        ),
        delivered
    );
    assert_eq!(
        with(
            "health_events_exporter_events_published_total",
            "status",
            "failure"
        ),
        to_fatal + to_refuses
    );
    assert_eq!(
        with(
            "health_events_exporter_publish_errors_total",
            "error_type",
            "max_retries_exceeded"
        ),
        to_fatal
    );
    assert_eq!(
        with(
            "health_events_exporter_publish_errors_total",
            "error_type",
            "rejected"
        ),
        to_refuses
    );
    assert_eq!(
        get("health_events_exporter_publish_duration_seconds_count"),
        delivered
    );
    // NVSentinel's buckets, cumulative up to +Inf.
    let bucket = |le: &str| {
        with(
            "health_events_exporter_publish_duration_seconds_bucket",
            "le",
            le,
        )
    };
    assert!(bucket("0.001") <= bucket("0.025"));
    assert!(bucket("0.025") <= bucket("5.0"));
    assert_eq!(bucket("+Inf"), delivered);
    // The first two token requests fail; the receiver's retries get one.
    assert_eq!(
        get("health_events_exporter_token_refresh_errors_total"),
        2.0
    );
    assert_eq!(tokens.count(), 3);
    let saved = get("health_events_exporter_resume_token_update_timestamp");
    assert!(
        saved >= started.floor() && saved < started + 120.0,
        "{saved}"
    );
    assert_eq!(
        saved,
        get("switchyard_source_position_saved_timestamp_seconds")
    );
    assert_eq!(get("health_events_exporter_backfill_in_progress"), 0.0);
    assert_eq!(
        get("health_events_exporter_backfill_events_processed_total"),
        0.0
    );
    assert_eq!(
        get("health_events_exporter_backfill_duration_seconds_count"),
        0.0
    );
    assert_eq!(get("health_events_exporter_filter_errors_total"), 0.0);
    assert_eq!(get("health_events_exporter_events_filtered_total"), dropped);
    for family in [
        "# TYPE health_events_exporter_publish_duration_seconds histogram",
        "# TYPE health_events_exporter_backfill_duration_seconds histogram",
        "# TYPE health_events_exporter_resume_token_update_timestamp gauge",
        "# TYPE health_events_exporter_events_published counter",
    ] {
        assert!(scraped.text.contains(family), "{family}:\n{}", scraped.text);
    }
    // Switchyard's own names are still there.
    assert_eq!(get("switchyard_events_read_total"), N as f64 + 1.0);
    assert!(process.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_source_is_open() {
    let dir = tempfile::tempdir().unwrap();
    // The followed file does not exist yet: the source waits for it.
    let input = dir.path().join("later.jsonl");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input, follow: true, pollInterval: 20ms}}\n\
             state: {dir: $state}\n\
             telemetry: {listen: 127.0.0.1:0}\n\
             route: {match: [{receiver: out}]}\n\
             receivers: [{name: out, stdout: {}}]\n",
            &[
                ("input", &input.display()),
                ("state", &dir.path().join("state").display()),
            ],
        ),
    )
    .unwrap();
    let mut process = Process::run(&config, &[]);
    let addr = process.telemetry_addr().await;
    let readyz = || async {
        let r = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap(),
        )
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sourceConnected"], false);

    std::fs::write(&input, "").unwrap();
    let deadline = Instant::now() + WAIT;
    while readyz().await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", process.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(process.terminate().success());
}

/// NVSentinel's CEL filter in a running pipeline, as NVSentinel's exporter
/// applies it: `exporter.filter.expression` carried unchanged by a root
/// drop rule (`!(…)`), then CEL in match rules. A field a document lacks
/// fails open (the rule lets the event through) and is counted under both
/// metric names; filtered events still advance the position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvsentinels_cel_filter_runs_in_the_pipeline() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.jsonl");
    let lines: Vec<&str> = SAMPLES.lines().take(N).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let file = |name: &str| dir.path().join(format!("{name}.jsonl"));
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        support::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input, follow: true}}\n\
             state: {dir: $state, flushInterval: 50ms}\n\
             telemetry: {listen: 127.0.0.1:0, compat: nvsentinel}\n\
             route:\n\
             \x20 drop:\n\
             \x20   - expr: \"!(event.recommendedAction != 'NONE')\"\n\
             \x20 match:\n\
             \x20   - receiver: all\n\
             \x20   - receiver: no79\n\
             \x20     expr: \"!('XID_79' in event.errorCode)\"\n\
             \x20   - receiver: west\n\
             \x20     expr: \"event.metadata.zone == 'us-west-2a'\"\n\
             receivers:\n\
             \x20 - {name: all, file: {path: $all}}\n\
             \x20 - {name: no79, file: {path: $no79}}\n\
             \x20 - {name: west, file: {path: $west}}\n",
            &[
                ("input", &input.display()),
                ("state", &dir.path().join("state").display()),
                ("all", &file("all").display()),
                ("no79", &file("no79").display()),
                ("west", &file("west").display()),
            ],
        ),
    )
    .unwrap();

    // What NVSentinel's filter keeps, read from the raw documents.
    let docs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kept: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["healthevent"]["recommendedaction"] != 0)
        .collect();
    let ids = |pick: &dyn Fn(&serde_json::Value) -> bool| -> Vec<&serde_json::Value> {
        kept.iter().copied().filter(|d| pick(d)).collect()
    };
    let zone = |d: &serde_json::Value| {
        d["healthevent"]["metadata"]["zone"]
            .as_str()
            .map(str::to_owned)
    };
    let want_all = ids(&|_| true);
    let want_no79 = ids(&|d| {
        !d["healthevent"]["errorcode"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "XID_79")
    });
    // Missing zone: an evaluation error, so the match rule matches.
    let want_west = ids(&|d| zone(d).is_none_or(|z| z == "us-west-2a"));
    let missing_zone = kept.iter().filter(|d| zone(d).is_none()).count();
    assert!(want_all.len() > 10 && want_all.len() < N / 2);
    assert!(want_no79.len() < want_all.len());
    assert!(missing_zone > 0 && want_west.len() < want_all.len());

    let mut process = Process::run(&config, &[]);
    let addr = process.telemetry_addr().await;
    let deadline = Instant::now() + WAIT;
    let size = std::fs::metadata(&input).unwrap().len();
    let position = || {
        std::fs::read_dir(dir.path().join("state"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".position.json"))
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<String>()
    };
    let scraped = loop {
        let s = scrape(&addr).await;
        if s.find("switchyard_events_in_flight", &[]) == Some(0.0)
            && s.find("switchyard_events_read_total", &[]) == Some(N as f64)
            && position().contains(&format!("\"offset\":{size}"))
        {
            break scrape(&addr).await;
        }
        assert!(Instant::now() < deadline, "not done:\n{}", s.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Counted from the raw documents, checked on what each receiver got.
    let got = |name: &str| support::json_lines(&file(name));
    let health = |e: &serde_json::Value| e["data"]["healthEvent"].clone();
    let (all, no79, west) = (got("all"), got("no79"), got("west"));
    assert_eq!(all.len(), want_all.len());
    assert!(all.iter().all(|e| health(e)["recommendedAction"] != 0));
    assert_eq!(no79.len(), want_no79.len());
    assert!(no79.iter().all(|e| {
        !health(e)["errorCode"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "XID_79")
    }));
    assert_eq!(west.len(), want_west.len());
    assert!(west.iter().all(|e| {
        health(e)["metadata"]["zone"]
            .as_str()
            .is_none_or(|z| z == "us-west-2a")
    }));
    assert_eq!(
        scraped.get("switchyard_route_expr_errors_total", &[]),
        missing_zone as f64
    );
    assert_eq!(
        scraped.get("health_events_exporter_filter_errors_total", &[]),
        missing_zone as f64
    );
    assert_eq!(
        scraped.get("health_events_exporter_events_filtered_total", &[]),
        (N - want_all.len()) as f64
    );
    // The first error is logged, with the rule and the event.
    process
        .wait_for("CEL expression failed", Duration::from_secs(5))
        .await;
    assert!(process.terminate().success());
}
