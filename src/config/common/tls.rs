//! TLS settings as written (`tls: {caFile, certFile, keyFile,
//! insecureSkipVerify}`) and validated (PEM bytes that parse).

use serde::Deserialize;

use super::{Diagnostics, Secret, Spanned, read_file};

/// `tls: {caFile, certFile, keyFile, insecureSkipVerify}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA certificates trusted in addition to the system's roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// PEM client certificate (mutual TLS), with `keyFile`.
    #[serde(default)]
    pub cert_file: Option<Spanned<String>>,
    /// PEM private key of `certFile`.
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    /// Accept any server certificate. Logged as a warning at start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Validated TLS settings: PEM bytes, checked to parse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSpec {
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<Secret>,
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    pub fn compile(
        &self,
        place: &str,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<TlsSpec> {
        let mut ok = true;
        let ca_pem = match &self.ca_file {
            Some(f) => {
                let pem = read_file(f, &format!("{place}.caFile"), diags);
                if let Some(p) = &pem
                    && reqwest::Certificate::from_pem_bundle(p).map_or(true, |c| c.is_empty())
                {
                    diags.error(
                        Some(f.referenced),
                        format!("{place}.caFile: no PEM certificate in {}", f.value),
                    );
                    ok = false;
                }
                ok &= pem.is_some();
                pem
            }
            None => None,
        };
        let identity_pem = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let cert = read_file(c, &format!("{place}.certFile"), diags);
                let key = read_file(k, &format!("{place}.keyFile"), diags);
                match (cert, key) {
                    (Some(mut cert), Some(key)) => {
                        cert.push(b'\n');
                        cert.extend_from_slice(&key);
                        match reqwest::Identity::from_pem(&cert) {
                            Err(_) => {
                                diags.error(Some(c.referenced), format!("{place}.certFile/keyFile: not a PEM certificate and private key"));
                                ok = false;
                            }
                            // rustls checks that the key belongs to the certificate when a client is built.
                            Ok(identity) => {
                                if let Err(e) = reqwest::Client::builder()
                                    .use_rustls_tls()
                                    .identity(identity)
                                    .build()
                                {
                                    let mut reason = e.to_string();
                                    let mut source = std::error::Error::source(&e);
                                    while let Some(s) = source {
                                        reason = format!("{reason}: {s}");
                                        source = s.source();
                                    }
                                    diags.error(Some(c.referenced), format!("{place}.certFile/keyFile: unusable client certificate ({reason})"));
                                    ok = false;
                                }
                            }
                        }
                        Some(Secret(String::from_utf8_lossy(&cert).into_owned()))
                    }
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            (None, None) => None,
            _ => {
                diags.error(
                    Some(at),
                    format!("{place}: certFile and keyFile go together"),
                );
                ok = false;
                None
            }
        };
        ok.then_some(TlsSpec {
            ca_pem,
            identity_pem,
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }
}

/// TLS settings on an `http://` endpoint do nothing: say so.
pub fn warn_plain_tls(
    tls: &TlsConfig,
    endpoint: Option<&str>,
    place: &str,
    at: serde_saphyr::Location,
    diags: &mut Diagnostics,
) {
    let has_tls = tls.ca_file.is_some() || tls.cert_file.is_some() || tls.insecure_skip_verify;
    if has_tls && endpoint.is_some_and(|e| e.starts_with("http://")) {
        diags.warning(
            Some(at),
            format!("{place}.tls: the endpoint is http://, so these TLS settings are not used"),
        );
    }
}
