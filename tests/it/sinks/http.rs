//! The `http` receiver against real HTTP servers on 127.0.0.1:0: the three
//! CloudEvents modes, batch limits, every retry class, Retry-After, dead
//! letters and replay, OAuth2 client credentials, and a dead receiver beside
//! a healthy one.

use crate::support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::config::{parse, validate};
use switchyard::pipeline;
use switchyard::stats::Stats;
use tokio_util::sync::CancellationToken;

use support::http::{self, Reply};
use support::pipeline::{Run, SAMPLES, dead_letters};

fn expected_ids(n: usize) -> HashSet<String> {
    let mapped = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["route", "test", "-c", "config/quickstart.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let lines: Vec<&str> = SAMPLES.lines().take(n).collect();
    mapped
        .stdin
        .as_ref()
        .unwrap()
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    let out = mapped.wait_with_output().unwrap();
    support::ids_in(&String::from_utf8(out.stdout).unwrap())
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_mode_posts_one_cloudevent_per_request() {
    let receiver = http::receiver(http::always(202)).await;
    let run = Run::new(
        20,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\", concurrency: 4, headers: {X-Tenant: acme}}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 20);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 20);
    let mut ids = HashSet::new();
    for r in &requests {
        assert_eq!(
            r.header("content-type"),
            Some("application/cloudevents+json; charset=utf-8")
        );
        assert_eq!(r.header("x-tenant"), Some("acme"));
        let event = r.json();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "com.nvidia.nvsentinel.health.v1");
        ids.insert(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids, expected_ids(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_sends_attributes_as_headers_and_data_as_body() {
    let receiver = http::receiver(http::always(200)).await;
    let run = Run::new(
        5,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\", mode: binary}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    run.run_to_end().await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 5);
    let ids: HashSet<String> = requests
        .iter()
        .map(|r| r.header("ce-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected_ids(5));
    for r in &requests {
        assert_eq!(r.header("ce-specversion"), Some("1.0"));
        assert_eq!(r.header("ce-type"), Some("com.nvidia.nvsentinel.health.v1"));
        assert_eq!(
            r.header("ce-source"),
            Some("nvsentinel://test/healthevents")
        );
        assert!(r.header("ce-subject").unwrap().starts_with("gpu-node-"));
        assert!(r.header("ce-time").is_some());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let data = r.json();
        assert_eq!(data["metadata"]["cluster"], "test");
        assert!(data["healthEvent"]["nodeName"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_respects_count_and_bytes() {
    let receiver = http::receiver(http::always(202)).await;
    let run = Run::new(
        35,
        &["counted", "sized"],
        &support::yaml(
            "  - name: counted\n    http: {endpoint: \"$url?counted\", mode: batch, batch: {maxEvents: 10, maxWait: 1s}}\n\
             \x20 - name: sized\n    http: {endpoint: \"$url?sized\", mode: batch, batch: {maxEvents: 100, maxBytes: 3000, maxWait: 1s}}\n",
            &[("url", &receiver.url())],
        ),
    );
    run.run_to_end().await;
    let requests = receiver.requests();
    let batches = |which: &str| -> Vec<(usize, usize)> {
        requests
            .iter()
            .filter(|r| r.uri.ends_with(which))
            .map(|r| {
                assert_eq!(
                    r.header("content-type"),
                    Some("application/cloudevents-batch+json; charset=utf-8")
                );
                (r.json().as_array().unwrap().len(), r.body.len())
            })
            .collect()
    };
    let counted = batches("?counted");
    let mut sizes: Vec<usize> = counted.iter().map(|b| b.0).collect();
    sizes.sort_unstable(); // concurrent requests arrive in any order
    assert_eq!(sizes, [5, 10, 10, 10]);
    let sized = batches("?sized");
    assert_eq!(sized.iter().map(|b| b.0).sum::<usize>(), 35);
    assert!(sized.len() > 1, "the byte limit split the batch");
    for (events, bytes) in &sized {
        assert!(*bytes <= 3000, "{events} events in {bytes} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_waits_for_a_batch_to_fill_but_not_longer_than_max_wait() {
    let receiver = http::receiver(http::always(202)).await;
    let run = Run::new(
        3,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\", mode: batch, batch: {maxEvents: 100, maxWait: 600ms}}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    // A followed file: the queue stays open, so the batch can only end by
    // filling up or by waiting.
    let run = Run {
        yaml: run
            .yaml
            .replace("input.jsonl}}", "input.jsonl, follow: true}}"),
        ..run
    };
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn({
        let yaml = run.yaml.clone();
        let shutdown = shutdown.clone();
        async move {
            pipeline::run(validate(&parse(&yaml).unwrap()).unwrap().0, shutdown)
                .await
                .unwrap()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.count() == 0 {
        assert!(Instant::now() < deadline, "no batch sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "three events, one batch");
    assert_eq!(requests[0].json().as_array().unwrap().len(), 3);
    let waited = requests[0].at - started;
    assert!(
        waited >= Duration::from_millis(550),
        "the batch waited for more events: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_delivered() {
    // Each event: 503, then 408, then 500, then accepted.
    let receiver = http::receiver(Arc::new(|n, _| match n % 4 {
        0 => Reply::status(503),
        1 => Reply::status(408),
        2 => Reply::status(500),
        _ => Reply::status(202),
    }))
    .await;
    let run = Run::new(
        3,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\", concurrency: 1}\n    retry: {initialBackoff: 20ms, maxBackoff: 100ms}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 3);
    assert_eq!(Stats::get(&stats.retries), 9);
    assert_eq!(receiver.count(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let receiver = http::receiver(Arc::new(|n, _| {
        if n == 0 {
            Reply::status(429).with_header("retry-after", "1")
        } else {
            Reply::status(202)
        }
    }))
    .await;
    let run = Run::new(
        1,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\"}\n    retry: {initialBackoff: 10ms}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    run.run_to_end().await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "waited as asked, not 10 ms: {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_and_exhausted_retries_go_to_the_dead_letter_file() {
    let rejecting = http::receiver(http::always(400)).await;
    let failing = http::receiver(http::always(503)).await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = Run::new(2, &["rejecting", "failing", "down"], "");
    let dir = run.dir.path().to_owned();
    let dlq = |name: &str| dir.join(format!("dlq/{name}.jsonl"));
    let receivers = support::yaml(
        "  - name: rejecting\n    http: {endpoint: \"$rejecting\"}\n    deadLetter: {file: $dlq}\n\
         \x20 - name: failing\n    http: {endpoint: \"$failing\"}\n    retry: {maxRetries: 2, initialBackoff: 10ms}\n    deadLetter: {file: $dlq2}\n\
         \x20 - name: down\n    http: {endpoint: \"http://$closed/events\", timeout: 2s}\n    retry: {maxRetries: 1, initialBackoff: 10ms}\n    deadLetter: {file: $dlq3}\n",
        &[
            ("rejecting", &rejecting.url()),
            ("dlq", &dlq("rejecting").display()),
            ("failing", &failing.url()),
            ("dlq2", &dlq("failing").display()),
            ("closed", &closed),
            ("dlq3", &dlq("down").display()),
        ],
    );
    let run = Run {
        yaml: run.yaml.clone() + &receivers,
        ..run
    };
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.dead_lettered), 6);
    assert_eq!(Stats::get(&stats.rejected), 2);
    assert_eq!(rejecting.count(), 2, "a 400 is not retried");
    assert_eq!(failing.count(), 6, "two events, three attempts each");

    let ids = expected_ids(2);
    for (name, error, attempts) in [
        ("rejecting", "rejected: HTTP 400", 1),
        ("failing", "HTTP 503", 3),
    ] {
        let entries = dead_letters(&dlq(name));
        assert_eq!(entries.len(), 2, "{name}");
        for e in &entries {
            assert_eq!(e["receiver"], name);
            assert_eq!(e["error"], error);
            assert_eq!(e["attempts"], attempts);
            assert!(ids.contains(e["event"]["id"].as_str().unwrap()));
            assert!(e["firstAttempt"].as_str().unwrap() <= e["lastAttempt"].as_str().unwrap());
        }
    }
    let down = dead_letters(&dlq("down"));
    assert_eq!(down.len(), 2);
    assert!(
        down[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect"),
        "{}",
        down[0]["error"]
    );
    // The position moved past dead-lettered events: they count as finished.
    assert!(std::fs::read_dir(run.path("state")).unwrap().count() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_replayed() {
    let rejecting = http::receiver(http::always(400)).await;
    let run = Run::new(
        4,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$rejecting\"}\n    deadLetter: {file: $value}\n",
            &[("rejecting", &rejecting.url()), ("value", &"DLQ")],
        ),
    );
    let dlq = run.path("dlq.jsonl");
    let run = Run {
        yaml: run.yaml.replace("DLQ", &dlq.display().to_string()),
        ..run
    };
    run.run_to_end().await;
    assert_eq!(dead_letters(&dlq).len(), 4);

    // The receiver is fixed: replay to it (a config pointing at the new one).
    let accepting = http::receiver(http::always(202)).await;
    let config = run.path("replay.yaml");
    std::fs::write(
        &config,
        run.yaml.replace(&rejecting.url(), &accepting.url()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["deadletter", "replay", "-c"])
        .arg(&config)
        .args(["--receiver", "collector"])
        .arg(&dlq)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "replayed 4 of 4 events to receiver collector\n"
    );
    let ids: HashSet<String> = accepting
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, expected_ids(4));

    // Replaying to a receiver that still rejects keeps what failed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["deadletter", "replay", "-c"])
        .arg(config.with_file_name("none.yaml"))
        .args(["--receiver", "collector"])
        .arg(&dlq)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a missing config fails");
    std::fs::write(run.path("still.yaml"), &run.yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["deadletter", "replay", "-c"])
        .arg(run.path("still.yaml"))
        .args(["--receiver", "collector"])
        .arg(&dlq)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let remaining = dead_letters(&run.path("dlq.jsonl.remaining"));
    assert_eq!(remaining.len(), 4);
    assert_eq!(remaining[0]["error"], "rejected: HTTP 400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_token_is_fetched_once_and_shared_by_concurrent_requests() {
    // The token endpoint is slow: 16 requests in flight all wait for one fetch.
    let tokens = http::token_server(3600, Duration::from_millis(300), 0).await;
    let receiver = http::receiver(http::always(202)).await;
    let run = Run::new(
        40,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http:\n      endpoint: \"$receiver\"\n      concurrency: 16\n      oauth2: {tokenUrl: \"$tokens\", clientId: $http, clientSecret: $http2, scopes: [events:write], audience: collector}\n",
            &[
                ("receiver", &receiver.url()),
                ("tokens", &tokens.url()),
                ("http", &http::CLIENT_ID),
                ("http2", &http::CLIENT_SECRET),
            ],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 40);
    assert_eq!(tokens.count(), 1, "one token request for all deliveries");
    let body = tokens.bodies.lock().unwrap()[0].clone();
    assert!(body.contains("grant_type=client_credentials"));
    assert!(body.contains("scope=events%3Awrite"), "{body}");
    assert!(body.contains("audience=collector"), "{body}");
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-0"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_fetches_a_new_token_once() {
    let tokens = http::token_server(3600, Duration::ZERO, 0).await;
    // The first token has been revoked.
    let receiver = http::receiver(Arc::new(|_, r| {
        if r.header("authorization") == Some("Bearer tok-0") {
            Reply::status(401)
        } else {
            Reply::status(202)
        }
    }))
    .await;
    let run = Run::new(
        5,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http:\n      endpoint: \"$receiver\"\n      concurrency: 1\n      oauth2: {tokenUrl: \"$tokens\", clientId: $http, clientSecret: $http2}\n",
            &[
                ("receiver", &receiver.url()),
                ("tokens", &tokens.url()),
                ("http", &http::CLIENT_ID),
                ("http2", &http::CLIENT_SECRET),
            ],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 5);
    assert_eq!(
        Stats::get(&stats.retries),
        0,
        "the 401 is answered inside one attempt"
    );
    assert_eq!(tokens.count(), 2);
    assert_eq!(receiver.count(), 6, "one 401, then five accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_retried_with_backoff_and_never_leaks_the_secret() {
    let tokens = http::token_server(3600, Duration::ZERO, 2).await;
    let receiver = http::receiver(http::always(202)).await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), format!("{}\n", http::CLIENT_SECRET)).unwrap();
    let run = Run::new(
        1,
        &["collector", "wrong"],
        &support::yaml(
            "  - name: collector\n    http:\n      endpoint: \"$url\"\n      oauth2: {tokenUrl: \"$tok\", clientId: $id, clientSecretFile: $file}\n    retry: {initialBackoff: 20ms}\n\
             \x20 - name: wrong\n    http:\n      endpoint: \"$url\"\n      oauth2: {tokenUrl: \"$tok\", clientId: $id, clientSecret: not-the-secret}\n    retry: {maxRetries: 0, initialBackoff: 20ms}\n    deadLetter: {file: DLQ}\n",
            &[
                ("url", &receiver.url()),
                ("tok", &tokens.url()),
                ("id", &http::CLIENT_ID),
                ("file", &secret_file.path().display()),
            ],
        ),
    );
    let dlq = run.path("dlq.jsonl");
    let run = Run {
        yaml: run.yaml.replace("DLQ", &dlq.display().to_string()),
        ..run
    };
    let stats = run.run_to_end().await;
    assert_eq!(
        Stats::get(&stats.delivered),
        1,
        "delivered once the token endpoint recovered"
    );
    let entries = dead_letters(&dlq);
    assert_eq!(entries.len(), 1);
    let error = entries[0]["error"].as_str().unwrap();
    assert!(error.starts_with("token endpoint"), "{error}");
    assert!(
        !error.contains("not-the-secret") && !error.contains(http::CLIENT_SECRET),
        "{error}"
    );
}

#[tokio::test]
async fn oauth2_tokens_are_refreshed_before_they_expire() {
    use switchyard::config::common::{Secret, TlsSpec};
    use switchyard::sink::http::config::OAuth2Spec;
    use switchyard::sink::http::oauth2::TokenSource;
    let tokens = http::token_server(1, Duration::ZERO, 0).await;
    let spec = OAuth2Spec {
        token_url: tokens.url(),
        client_id: http::CLIENT_ID.into(),
        client_secret: Secret(http::CLIENT_SECRET.into()),
        scopes: vec![],
        audience: None,
        tls: TlsSpec::default(),
    };
    let source = TokenSource::new(&spec, Duration::from_secs(5)).unwrap();
    assert_eq!(source.token().await.unwrap(), "tok-0");
    assert_eq!(source.token().await.unwrap(), "tok-0", "cached");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        source.token().await.unwrap(),
        "tok-1",
        "refreshed before the one-second lifetime ran out"
    );
    assert_eq!(tokens.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_does_not_slow_a_healthy_one() {
    let healthy = http::receiver(http::always(202)).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = Run::new(
        200,
        &["healthy", "dead"],
        &support::yaml(
            "  - name: healthy\n    http: {endpoint: \"$healthy\", mode: batch, batch: {maxEvents: 50, maxWait: 10ms}}\n\
             \x20 - name: dead\n    http: {endpoint: \"http://$closed/\", timeout: 1s}\n    retry: {initialBackoff: 50ms, maxBackoff: 200ms}\n",
            &[("healthy", &healthy.url()), ("closed", &closed)],
        ),
    );
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        let yaml = run.yaml.clone();
        async move {
            let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
            pipeline::run(compiled, shutdown).await.unwrap()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthy
        .requests()
        .iter()
        .map(|r| r.json().as_array().unwrap().len())
        .sum::<usize>()
        < 200
    {
        assert!(
            Instant::now() < deadline,
            "the healthy receiver was held back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let stats = task.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(5),
        "healthy receiver done while the dead one retries: {elapsed:?}"
    );
    assert_eq!(
        Stats::get(&stats.delivered),
        200,
        "only the healthy receiver delivered"
    );
    assert!(Stats::get(&stats.retries) > 0);
    assert_eq!(
        std::fs::read_dir(run.path("state"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "no position past the dead receiver's events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    // A redirect could move the events and headers from https to http, or
    // turn the POST into a GET that looks delivered: it is a rejection.
    let target = http::receiver(http::always(202)).await;
    let location = target.url();
    let redirecting = http::receiver(Arc::new(move |n, _| {
        let status = [307, 302, 301][n % 3];
        Reply::status(status).with_header("location", location.clone())
    }))
    .await;
    let run = Run::new(
        3,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$redirecting\", concurrency: 1, headers: {X-Api-Key: sekrit}}\n    deadLetter: {file: DLQ}\n",
            &[("redirecting", &redirecting.url())],
        ),
    );
    let dlq = run.path("dlq.jsonl");
    let run = Run {
        yaml: run.yaml.replace("DLQ", &dlq.display().to_string()),
        ..run
    };
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    assert_eq!(target.count(), 0, "nothing reached the redirect target");
    let errors: Vec<String> = dead_letters(&dlq)
        .iter()
        .map(|e| e["error"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        errors,
        [
            "rejected: HTTP 307",
            "rejected: HTTP 302",
            "rejected: HTTP 301"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retried() {
    // The first answer comes after the client's timeout.
    let receiver = http::receiver(Arc::new(|n, _| {
        if n == 0 {
            Reply::status(202).after(Duration::from_secs(2))
        } else {
            Reply::status(202)
        }
    }))
    .await;
    let run = Run::new(
        1,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\", timeout: 300ms}\n    retry: {initialBackoff: 10ms}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 1);
    assert_eq!(Stats::get(&stats.retries), 1);
    assert_eq!(receiver.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_finishing_out_of_order_keep_the_position_ordered() {
    // The first event's delivery is held back while the 99 after it finish.
    let first: serde_json::Value = serde_json::from_str(SAMPLES.lines().next().unwrap()).unwrap();
    let first_id = switchyard::mapping::derive_id(
        "nvsentinel",
        first["_id"]["$oid"].as_str().unwrap().as_bytes(),
    );
    let receiver = http::receiver(Arc::new(move |_, r| {
        let held = r.json()["id"] == first_id.as_str();
        Reply::status(202).after(if held {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        })
    }))
    .await;
    let run = Run::new(
        100,
        &["collector"],
        &support::yaml(
            "  - name: collector\n    http: {endpoint: \"$receiver\", concurrency: 16}\n",
            &[("receiver", &receiver.url())],
        ),
    );
    let run = Run {
        yaml: run
            .yaml
            .replace("state: {dir: ", "state: {flushInterval: 20ms, dir: "),
        ..run
    };
    let task = tokio::spawn({
        let yaml = run.yaml.clone();
        async move {
            pipeline::run(
                validate(&parse(&yaml).unwrap()).unwrap().0,
                CancellationToken::new(),
            )
            .await
            .unwrap()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.count() < 100 {
        assert!(Instant::now() < deadline, "not all requests arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // ten checkpoint intervals
    let state = run.path("state");
    let saved_early = std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        saved_early, 0,
        "99 finished events do not move the position past the unfinished first one"
    );
    task.await.unwrap();
    let position = std::fs::read_dir(&state)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(position).unwrap()).unwrap();
    let input_len = std::fs::metadata(run.path("input.jsonl")).unwrap().len();
    assert_eq!(
        saved["offset"], input_len,
        "and once it finishes, the position reaches the end"
    );
}

/// One event a receiver refuses for ever (503, retried without end, no dead
/// letters) holds the position, and with it the window of records in flight
/// (`state.maxInFlight`): the source stops after `window` more records
/// instead of growing memory with the stream; the healthy receiver gets
/// exactly those. After a restart with the receiver fixed, the stuck event
/// and everything after it is delivered: the healthy receiver gets its
/// window again (at-least-once), never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_event_stops_the_source_after_the_window() {
    const N: usize = 2_000;
    const WINDOW: usize = 150;
    const STUCK: usize = 300;
    let documents = support::pipeline::distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let run = Run::with_documents(&lines, &["stuck", "healthy"], "");
    // The ids in input order, as Switchyard maps them.
    let ids = mapped_ids(&lines);
    let stuck_id = ids[STUCK].clone();
    let (stuck, refusing) = refusing(&stuck_id).await;
    let healthy = http::receiver(http::always(200)).await;
    let mut run = run;
    run.yaml = run
        .yaml
        .replace(
            "state: {dir: ",
            &support::yaml(
                "state: {maxInFlight: $WINDOW, dir: ",
                &[("WINDOW", &WINDOW)],
            ),
        )
        .replace("shutdownTimeout: 2s", "shutdownTimeout: 200ms")
        + &support::yaml(
            "  - name: stuck\n    http: {endpoint: \"$stuck\", concurrency: 4}\n    retry: {initialBackoff: 5ms, maxBackoff: 20ms}\n\
             \x20 - name: healthy\n    http: {endpoint: \"$healthy\", concurrency: 4}\n",
            &[("stuck", &stuck.url()), ("healthy", &healthy.url())],
        );

    let shutdown = CancellationToken::new();
    let first = tokio::spawn({
        let (yaml, shutdown) = (run.yaml.clone(), shutdown.clone());
        async move {
            let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
            pipeline::run(compiled, shutdown).await.unwrap()
        }
    });
    // The window fills: the stuck event and WINDOW - 1 records after it.
    let read = STUCK + WINDOW;
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthy.count() < read {
        assert!(Instant::now() < deadline, "healthy got {}", healthy.count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // … and stays full: nothing more is read while the event is refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(healthy.count(), read, "the source waits for the window");
    let want: HashSet<String> = ids[..read].iter().cloned().collect();
    assert_eq!(received(&healthy).into_iter().collect::<HashSet<_>>(), want);
    assert!(stuck.requests().len() > read, "the stuck event is retried");
    shutdown.cancel();
    let stats = first.await.unwrap();
    assert_eq!(Stats::get(&stats.read), read as u64);

    // Fixed: the restart reads from the stuck event on.
    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = healthy.count();
    run.run_to_end().await;
    let again: Vec<String> = healthy.requests()[before..]
        .iter()
        .map(|q| q.json()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(again.len(), N - STUCK, "the window again, then the rest");
    let again: HashSet<String> = again.into_iter().collect();
    assert_eq!(again, ids[STUCK..].iter().cloned().collect::<HashSet<_>>());
    assert_eq!(
        received(&stuck).into_iter().collect::<HashSet<_>>(),
        ids.iter().cloned().collect::<HashSet<_>>()
    );
}

/// The same stuck event, but the stuck receiver has a disk buffer: for the
/// source position an event is done once it is on that receiver's disk, so
/// the position and the healthy receiver move on through the whole input
/// while the stuck one's buffer grows on disk. A restart (receiver fixed)
/// re-sends only what the stuck receiver had not finished — the stuck
/// event and everything behind it — to it alone; the healthy receiver gets
/// nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_buffer_lets_the_position_and_the_others_move_past_a_stuck_event() {
    const N: usize = 2_000;
    const WINDOW: usize = 150;
    const STUCK: usize = 300;
    let documents = support::pipeline::distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let ids = mapped_ids(&lines);
    let stuck_id = ids[STUCK].clone();
    let (stuck, refusing) = refusing(&stuck_id).await;
    let healthy = http::receiver(http::always(200)).await;
    let mut run = Run::with_documents(&lines, &["stuck", "healthy"], "");
    run.yaml = run
        .yaml
        .replace(
            "state: {dir: ",
            &support::yaml(
                "state: {maxInFlight: $WINDOW, flushInterval: 50ms, dir: ",
                &[("WINDOW", &WINDOW)],
            ),
        )
        .replace("shutdownTimeout: 2s", "shutdownTimeout: 200ms")
        + &support::yaml(
            "  - name: stuck\n    http: {endpoint: \"$stuck\", concurrency: 4}\n    retry: {initialBackoff: 5ms, maxBackoff: 20ms}\n    buffer: {type: disk, maxSize: 64MiB}\n\
             \x20 - name: healthy\n    http: {endpoint: \"$healthy\", concurrency: 4}\n",
            &[("stuck", &stuck.url()), ("healthy", &healthy.url())],
        );
    let all: HashSet<String> = ids.iter().cloned().collect();

    // The whole input flows: to the healthy receiver, into the buffer, and
    // the position reaches the end of the file. (The stuck receiver keeps
    // the run from ending, as without a buffer: stop it.)
    let shutdown = CancellationToken::new();
    let first = tokio::spawn({
        let (yaml, shutdown) = (run.yaml.clone(), shutdown.clone());
        async move {
            let (compiled, _) = validate(&parse(&yaml).unwrap()).unwrap();
            pipeline::run(compiled, shutdown).await.unwrap()
        }
    });
    let size = std::fs::metadata(run.path("input.jsonl")).unwrap().len();
    let position = || saved_positions(&run.path("state"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthy.count() < N || !position().contains(&format!("\"offset\":{size}")) {
        assert!(
            Instant::now() < deadline,
            "healthy got {}, position {}",
            healthy.count(),
            position()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let stats = first.await.unwrap();
    assert_eq!(Stats::get(&stats.read), N as u64);
    let got: HashSet<String> = received(&healthy).into_iter().collect();
    assert_eq!(got, all, "the healthy receiver is not held back");
    assert_eq!(healthy.count(), N);
    // The stuck receiver took the others from its buffer meanwhile (its own
    // window is its queue), and kept retrying the refused one.
    let attempts = received(&stuck);
    assert!(
        attempts.iter().filter(|i| **i == stuck_id).count() > 1,
        "retried"
    );
    let delivered: HashSet<String> = attempts.into_iter().filter(|i| *i != stuck_id).collect();
    let buffered: u64 = std::fs::read_dir(run.path("state/buffers/stuck"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(buffered > 0, "the stuck receiver's events wait on disk");

    // Fixed and restarted: the buffer re-sends from the stuck event on.
    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (healthy_before, stuck_before) = (healthy.count(), stuck.count());
    run.run_to_end().await;
    assert_eq!(
        healthy.count(),
        healthy_before,
        "nothing again for the healthy one"
    );
    let again = received(&stuck)[stuck_before..].to_vec();
    let again_set: HashSet<String> = again.iter().cloned().collect();
    assert!(again_set.contains(&stuck_id));
    let missing: Vec<&String> = ids
        .iter()
        .filter(|i| !delivered.contains(*i) && !again_set.contains(*i))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    // Only what it had not finished: at most the stuck event's window
    // behind it (the buffer's position waits for the stuck event too).
    assert!(
        again_set.iter().all(|i| ids[STUCK..].contains(i)),
        "nothing from before the stuck event is sent again"
    );
}

/// SIGKILL while a slow receiver's disk buffer holds most of the input:
/// nothing is lost. The position had reached the end of the file (every
/// event was on disk), so the healthy receiver gets nothing again; the slow
/// one gets, after the restart, exactly a suffix of the input in buffer
/// order: from the oldest event it had not finished (as last saved) on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_buffer_survives_sigkill() {
    use support::process::Process;
    const N: usize = 3_000;
    let documents = support::pipeline::distinct_documents(N);
    let lines: Vec<&str> = documents.iter().map(String::as_str).collect();
    let ids = mapped_ids(&lines);
    let slow_now = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let slow = http::receiver({
        let slow_now = slow_now.clone();
        Arc::new(
            move |_, _| match slow_now.load(std::sync::atomic::Ordering::SeqCst) {
                true => Reply::status(200).after(Duration::from_millis(50)),
                false => Reply::status(200),
            },
        )
    })
    .await;
    let healthy = http::receiver(http::always(200)).await;
    let run = Run::with_documents(&lines, &["slow", "healthy"], "");
    let config = run.path("config.yaml");
    std::fs::write(
        &config,
        run.yaml
            .replace("state: {dir: ", "state: {flushInterval: 50ms, dir: ")
            + &support::yaml(
                "  - name: slow\n    http: {endpoint: \"$slow\", concurrency: 2}\n    buffer: {type: disk}\n\
                 \x20 - name: healthy\n    http: {endpoint: \"$healthy\", concurrency: 4}\n", &[("slow", &slow.url()), ("healthy", &healthy.url())],
            ),
    )
    .unwrap();
    let size = std::fs::metadata(run.path("input.jsonl")).unwrap().len();
    let position = || saved_positions(&run.path("state"));

    let mut p = Process::run(&config, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !position().contains(&format!("\"offset\":{size}")) || slow.count() < 100 {
        assert!(
            Instant::now() < deadline,
            "position {}\n{}",
            position(),
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.kill();
    let first: HashSet<String> = received(&slow).into_iter().collect();
    assert!(first.len() < N / 2, "the slow receiver is still far behind");
    assert_eq!(healthy.count(), N);

    slow_now.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = slow.count();
    let mut p = Process::run(&config, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: HashSet<String> = received(&slow).into_iter().collect();
        if got.len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slow has {} of {N}\n{}",
            got.len(),
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The file source ends: the process drains and exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.try_wait().is_none() {
        assert!(Instant::now() < deadline, "{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(healthy.count(), N, "nothing again for the healthy receiver");
    let again: HashSet<String> = received(&slow)[before..].iter().cloned().collect();
    let from = ids
        .iter()
        .position(|i| again.contains(i))
        .expect("something re-sent");
    let suffix: HashSet<String> = ids[from..].iter().cloned().collect();
    assert_eq!(
        again, suffix,
        "a suffix of the buffer, from the oldest unfinished event"
    );
    assert!(
        ids[..from].iter().all(|i| first.contains(i)),
        "what was not re-sent had been delivered"
    );
    assert!(
        p.log()
            .contains("disk buffer: sending what the receiver had not finished"),
        "{}",
        p.log()
    );
}

/// The ids Switchyard gives `lines` (its `nvsentinel` mapping with the
/// harness's metadata), in order.
fn mapped_ids(lines: &[&str]) -> Vec<String> {
    use switchyard::event::AttributesReader;
    let mapping = "metadata: {cluster: test}\nsource: {stdin: {}}\nroute: {match: [{receiver: o}]}\nreceivers: [{name: o, stdout: {}}]\n";
    let (compiled, _) = validate(&parse(mapping).unwrap()).unwrap();
    lines
        .iter()
        .map(|l| compiled.mapper.map(l.as_bytes()).unwrap().id().to_owned())
        .collect()
}

/// The saved source positions in a run's state directory, as text.
fn saved_positions(state: &std::path::Path) -> String {
    std::fs::read_dir(state)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".position.json"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// A receiver that answers 503 to the event `id` while the flag is set,
/// and 200 to everything else.
async fn refusing(id: &str) -> (http::Receiver, Arc<std::sync::atomic::AtomicBool>) {
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let receiver = http::receiver({
        let (id, refusing) = (id.to_owned(), refusing.clone());
        Arc::new(move |_, r| {
            let this = r.json()["id"].as_str() == Some(id.as_str());
            match this && refusing.load(std::sync::atomic::Ordering::SeqCst) {
                true => Reply::status(503),
                false => Reply::status(200),
            }
        })
    })
    .await;
    (receiver, refusing)
}

/// The ids a receiver was sent, in arrival order (retries included).
fn received(r: &http::Receiver) -> Vec<String> {
    r.requests()
        .iter()
        .map(|q| q.json()["id"].as_str().unwrap().to_owned())
        .collect()
}
