//! reqwest clients from validated TLS settings: the system's trust roots,
//! plus a configured CA, a client certificate, or (logged) no verification.

use std::time::Duration;

use tracing::warn;

use crate::config::common::TlsSpec;

/// Never follows redirects: a redirect could carry the body and headers
/// from https to http, and a 301/302/303 would turn the POST into a GET
/// without the events and still look like a success. A 3xx answer is
/// rejected by the status policy instead.
pub fn build(tls: &TlsSpec, timeout: Duration, what: &str) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(256)
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &tls.ca_pem {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA file: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(identity) = &tls.identity_pem {
        let identity = reqwest::Identity::from_pem(identity.0.as_bytes())
            .map_err(|_| "client certificate: not a PEM certificate and key".to_owned())?;
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        warn!(
            target_kind = what,
            "TLS certificate verification is OFF (insecureSkipVerify); use only for testing"
        );
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| chain(&e.without_url()))
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// A reqwest error, described without its URL (which may carry a secret).
pub fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken response"
    } else {
        "request failed"
    };
    format!("{kind} ({})", chain(&e.without_url()))
}
