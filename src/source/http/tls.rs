//! HTTPS: the listener's rustls configuration (the handshake runs per
//! connection, within `headerReadTimeout`: see [`conn`](super::conn)).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::ListenerTls;

/// A rustls server configuration; the error never quotes the key.
pub fn server_config(tls: &ListenerTls) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in certFile".into());
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.0.as_bytes())
        .map_err(|_| "no usable PEM private key in keyFile".to_owned())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the key does not fit the certificate ({e})"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The acceptor for the listener's connections.
pub fn acceptor(tls: &ListenerTls) -> Result<TlsAcceptor, String> {
    server_config(tls).map(|c| TlsAcceptor::from(Arc::new(c)))
}
