//! reqwest clients from validated TLS settings: the system's trust roots,
//! plus a configured CA, a client certificate, or (logged) no verification.

use std::time::Duration;

use tracing::warn;

use super::config::TlsSpec;

/// `follow_redirects: false` for token endpoints (no redirect of a secret).
pub fn build(
    tls: &TlsSpec,
    timeout: Duration,
    follow_redirects: bool,
    what: &str,
) -> Result<reqwest::Client, String> {
    let redirects = if follow_redirects {
        reqwest::redirect::Policy::limited(5)
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut builder = reqwest::Client::builder()
        .redirect(redirects)
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
    builder.build().map_err(|e| e.without_url().to_string())
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
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    format!("{kind} ({detail})")
}
