//! The `http` receiver over real TLS: HTTPS servers on 127.0.0.1:0 with a
//! test CA made at test time (see `support::tls`). Server verification with
//! `caFile` and with the system roots only, host name checks,
//! `insecureSkipVerify`, client certificates for servers that require them,
//! and an OAuth2 token endpoint over (mutual) TLS.

use crate::support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use switchyard::config::{parse, validate};
use switchyard::stats::Stats;

use support::http;
use support::pipeline::{Run, dead_letters};
use support::tls::{self, ClientAuth, Pki};

/// An `http` receiver entry: `tls` and `oauth2` are YAML flow maps (or empty
/// for none); one retry, then the dead letter file `@DIR@/NAME.dlq.jsonl`.
fn receiver_yaml(name: &str, endpoint: &str, tls: &str, oauth2: &str) -> String {
    let mut http = format!("      endpoint: \"{endpoint}\"\n      timeout: 5s\n");
    if !tls.is_empty() {
        http += &format!("      tls: {tls}\n");
    }
    if !oauth2.is_empty() {
        http += &format!("      oauth2: {oauth2}\n");
    }
    support::yaml(
        "  - name: $name\n    http:\n$http    retry: {maxRetries: 1, initialBackoff: 10ms}\n    deadLetter: {file: \"@DIR@/$name.dlq.jsonl\"}\n",
        &[("name", &name), ("http", &http)],
    )
}

/// `"PATH"`, for a YAML flow map.
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// Every request is one structured CloudEvent; the distinct ids.
fn event_ids(requests: &[http::Recorded]) -> HashSet<String> {
    requests
        .iter()
        .map(|r| {
            assert_eq!(
                r.header("content-type"),
                Some("application/cloudevents+json; charset=utf-8")
            );
            let event = r.json();
            assert_eq!(event["specversion"], "1.0");
            event["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `n` events dead-lettered for `receiver`, each after two attempts; their
/// errors.
fn assert_dead_lettered(run: &Run, receiver: &str, n: usize) -> Vec<String> {
    let entries = dead_letters(&run.path(&format!("{receiver}.dlq.jsonl")));
    assert_eq!(entries.len(), n, "{receiver}: {entries:?}");
    entries
        .iter()
        .map(|e| {
            assert_eq!(e["receiver"], receiver);
            assert_eq!(e["attempts"], 2, "maxRetries: 1 → two attempts: {e}");
            e["error"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_trusts_the_test_ca_and_events_arrive_over_https() {
    let receiver = tls::receiver(http::always(202), ClientAuth::None).await;
    let ca = quoted(&receiver.pki.ca);
    // By IP address (an IP SAN) and by DNS name (a DNS SAN).
    let run = Run::new(
        10,
        &["by_ip", "by_name"],
        &(receiver_yaml(
            "by_ip",
            &receiver.url(),
            &support::yaml("{caFile: $ca}", &[("ca", &ca)]),
            "",
        ) + &receiver_yaml(
            "by_name",
            &receiver.url_for_host("localhost"),
            &support::yaml("{caFile: $ca}", &[("ca", &ca)]),
            "",
        )),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 20);
    assert_eq!(Stats::get(&stats.dead_lettered), 0);
    assert_eq!(Stats::get(&stats.retries), 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 20);
    assert_eq!(
        event_ids(&requests).len(),
        10,
        "each event once per receiver"
    );
    assert!(receiver.server.handshakes() >= 2);
    assert_eq!(receiver.server.handshake_failures(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_file_the_server_certificate_is_not_trusted() {
    let receiver = tls::receiver(http::always(202), ClientAuth::None).await;
    // The system roots only; also with a CA file that is not the server's.
    let other = Pki::new();
    let run = Run::new(
        3,
        &["system_roots", "other_ca"],
        &(receiver_yaml("system_roots", &receiver.url(), "", "")
            + &receiver_yaml(
                "other_ca",
                &receiver.url(),
                &support::yaml("{caFile: $quoted}", &[("quoted", &quoted(&other.ca))]),
                "",
            )),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    assert_eq!(Stats::get(&stats.dead_lettered), 6);
    for name in ["system_roots", "other_ca"] {
        for error in assert_dead_lettered(&run, name, 3) {
            assert!(
                error.to_lowercase().contains("certificate") && error.contains("UnknownIssuer"),
                "{name}: {error}"
            );
        }
    }
    assert!(receiver.requests().is_empty(), "nothing sent in clear");
    // The client reached the server and broke off the handshake.
    assert!(!receiver.server.handshake_failures().is_empty());
    assert_eq!(receiver.server.handshakes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_must_name_the_host() {
    // Trusted, but for 127.0.0.1 only: `localhost` is another name.
    let receiver = tls::receiver_with(
        Pki::for_server_names(&["127.0.0.1"]),
        http::always(202),
        ClientAuth::None,
    )
    .await;
    let run = Run::new(
        2,
        &["wrong_name"],
        &receiver_yaml(
            "wrong_name",
            &receiver.url_for_host("localhost"),
            &support::yaml(
                "{caFile: $quoted}",
                &[("quoted", &quoted(&receiver.pki.ca))],
            ),
            "",
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    for error in assert_dead_lettered(&run, "wrong_name", 2) {
        assert!(
            error.contains("certificate not valid for name \"localhost\""),
            "{error}"
        );
    }
    assert!(receiver.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_any_server_certificate() {
    // Neither trusted (no caFile) nor for this host.
    let receiver = tls::receiver_with(
        Pki::for_server_names(&["not-this-host.example"]),
        http::always(200),
        ClientAuth::None,
    )
    .await;
    let run = Run::new(
        5,
        &["insecure"],
        &receiver_yaml(
            "insecure",
            &receiver.url(),
            "{insecureSkipVerify: true}",
            "",
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 5);
    assert_eq!(Stats::get(&stats.dead_lettered), 0);
    assert_eq!(event_ids(&receiver.requests()).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_to_a_server_that_requires_one() {
    let receiver = tls::receiver(http::always(202), ClientAuth::Required).await;
    let pki = &receiver.pki;
    let run = Run::new(
        5,
        &["mtls"],
        &receiver_yaml(
            "mtls",
            &receiver.url(),
            &support::yaml(
                "{caFile: $quoted, certFile: $quoted2, keyFile: $quoted3}",
                &[
                    ("quoted", &quoted(&pki.ca)),
                    ("quoted2", &quoted(&pki.client_cert)),
                    ("quoted3", &quoted(&pki.client_key)),
                ],
            ),
            "",
        ),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 5);
    assert_eq!(Stats::get(&stats.dead_lettered), 0);
    assert_eq!(event_ids(&receiver.requests()).len(), 5);
    assert_eq!(receiver.server.handshake_failures(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_a_client_certificate_refuses_without_a_valid_one() {
    let receiver = tls::receiver(http::always(202), ClientAuth::Required).await;
    let ca = quoted(&receiver.pki.ca);
    // No client certificate; a client certificate of another CA.
    let foreign = Pki::new();
    let run = Run::new(
        3,
        &["no_cert", "foreign_cert"],
        &(receiver_yaml(
            "no_cert",
            &receiver.url(),
            &support::yaml("{caFile: $ca}", &[("ca", &ca)]),
            "",
        ) + &receiver_yaml(
            "foreign_cert",
            &receiver.url(),
            &support::yaml(
                "{caFile: $ca, certFile: $quoted, keyFile: $quoted2}",
                &[
                    ("ca", &ca),
                    ("quoted", &quoted(&foreign.client_cert)),
                    ("quoted2", &quoted(&foreign.client_key)),
                ],
            ),
            "",
        )),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 0);
    assert_eq!(Stats::get(&stats.dead_lettered), 6);
    // TLS 1.3: the client has finished its side of the handshake when the
    // server refuses, so it sees the server's alert (CertificateRequired,
    // UnknownCA) or, if it was writing the request, a broken connection:
    // either way no HTTP answer. The server's side says why.
    for name in ["no_cert", "foreign_cert"] {
        for error in assert_dead_lettered(&run, name, 3) {
            assert!(
                error.contains("error sending request") && !error.contains("HTTP "),
                "{name}: {error}"
            );
        }
    }
    assert!(
        receiver.requests().is_empty(),
        "the server recorded nothing"
    );
    let failures = receiver.server.handshake_failures();
    assert!(
        failures.iter().any(|f| f.contains("no certificates")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("UnknownIssuer")),
        "{failures:?}"
    );
    assert_eq!(receiver.server.handshakes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_token_endpoint_over_mutual_tls_with_its_own_tls_settings() {
    let receiver = tls::receiver(http::always(202), ClientAuth::None).await;
    let pki = &receiver.pki;
    // The token endpoint wants a client certificate (RFC 8705 style).
    let (token_app, token_requests, _) = http::token_router(3600, std::time::Duration::ZERO, 0);
    let token_server = tls::serve(pki, token_app, ClientAuth::Required).await;
    let token_url = format!("https://127.0.0.1:{}/token", token_server.addr.port());
    let ca = quoted(&pki.ca);
    let receiver_tls = support::yaml("{caFile: $ca}", &[("ca", &ca)]);
    let oauth2 = |tls: &str| {
        support::yaml(
            "{tokenUrl: \"$token_url\", clientId: $http, clientSecret: $http2$tls}",
            &[
                ("token_url", &token_url),
                ("http", &http::CLIENT_ID),
                ("http2", &http::CLIENT_SECRET),
                ("tls", &tls),
            ],
        )
    };
    let run = Run::new(
        4,
        &["with_token_tls", "receiver_tls_only"],
        &(receiver_yaml(
            "with_token_tls",
            &receiver.url(),
            &receiver_tls,
            &oauth2(&support::yaml(
                ", tls: {caFile: $ca, certFile: $quoted, keyFile: $quoted2}",
                &[
                    ("ca", &ca),
                    ("quoted", &quoted(&pki.client_cert)),
                    ("quoted2", &quoted(&pki.client_key)),
                ],
            )),
        ) + &receiver_yaml(
            "receiver_tls_only",
            &receiver.url(),
            &receiver_tls,
            &oauth2(""),
        )),
    );
    let stats = run.run_to_end().await;
    assert_eq!(Stats::get(&stats.delivered), 4);
    let requests = receiver.requests();
    assert_eq!(event_ids(&requests).len(), 4);
    for r in &requests {
        assert_eq!(r.header("authorization"), Some("Bearer tok-0"));
    }
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "one token over TLS"
    );
    // `oauth2.tls` is the token endpoint's alone: the receiver's caFile does
    // not make the token endpoint trusted.
    for error in assert_dead_lettered(&run, "receiver_tls_only", 4) {
        assert!(error.starts_with("token endpoint"), "{error}");
        assert!(error.contains("UnknownIssuer"), "{error}");
    }
    assert_eq!(token_server.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_that_does_not_match_the_certificate_stops_the_start() {
    let receiver = tls::receiver(http::always(202), ClientAuth::Required).await;
    let pki = &receiver.pki;
    let run = Run::new(
        2,
        &["mismatched"],
        &receiver_yaml(
            "mismatched",
            &receiver.url(),
            &support::yaml(
                "{caFile: $quoted, certFile: $quoted2, keyFile: $quoted3}",
                &[
                    ("quoted", &quoted(&pki.ca)),
                    ("quoted2", &quoted(&pki.client_cert)),
                    ("quoted3", &quoted(&pki.server_key)),
                ],
            ),
            "",
        ),
    );
    // Refused by validation, with the place and the reason; never sent.
    let error = validate(&parse(&run.yaml).unwrap())
        .expect_err("a mismatched key does not validate")
        .to_string();
    assert!(
        error.contains("receivers[0].http.tls.certFile/keyFile: unusable client certificate")
            && error.contains("KeyMismatch"),
        "{error}"
    );
    assert!(receiver.requests().is_empty());
    assert_eq!(receiver.server.handshakes(), 0);
    assert!(receiver.server.handshake_failures().is_empty());
}
