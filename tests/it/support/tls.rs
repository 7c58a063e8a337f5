//! HTTPS servers on 127.0.0.1:0 for receiver TLS tests: a test CA made with
//! rcgen at test time, a server certificate signed by it (for 127.0.0.1 and
//! `localhost` unless told otherwise) and a client certificate signed by it,
//! all written as PEM files into a temporary directory; and axum apps (the
//! recording receiver of [`super::http`], or a token endpoint) served over
//! rustls, optionally requiring a client certificate signed by the CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use super::http::{Recorded, Responder};

/// A test CA, a server and a client certificate signed by it, as PEM files
/// in a temporary directory (removed on drop).
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (extended key usage clientAuth) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
}

impl Pki {
    /// A server certificate for 127.0.0.1 and `localhost`.
    pub fn new() -> Self {
        Self::for_server_names(&["127.0.0.1", "localhost"])
    }

    /// A server certificate for `names` only (IP addresses or DNS names).
    pub fn for_server_names(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();

        // A name of its own: certificates of another test CA must not
        // even look as if this one issued them.
        static CAS: AtomicUsize = AtomicUsize::new(0);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!(
                "Switchyard test CA {}-{}",
                std::process::id(),
                CAS.fetch_add(1, Ordering::SeqCst)
            ),
        );
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert, key)
        };
        let (server, server_key) = leaf(
            names.iter().map(|n| (*n).to_owned()).collect(),
            "switchyard test server",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(
            vec!["switchyard-client".to_owned()],
            "switchyard test client",
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
            server_key_der: server_key.serialize_der(),
            dir,
        }
    }

    /// The rustls configuration of a server presenting the server
    /// certificate; with `require_client_cert`, the handshake fails unless
    /// the client presents a certificate signed by the CA.
    fn server_config(&self, require_client_cert: bool) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut config = builder
            .with_single_cert(vec![self.server_der.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// Whether the server asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// A client certificate signed by the test CA, or no connection.
    Required,
}

/// A running HTTPS server.
pub struct TlsServer {
    pub addr: SocketAddr,
    /// Why each failed TLS handshake failed (rustls' error, as text).
    handshake_failures: Arc<Mutex<Vec<String>>>,
    /// Handshakes that succeeded.
    handshakes: Arc<AtomicUsize>,
}

impl TlsServer {
    pub fn handshake_failures(&self) -> Vec<String> {
        self.handshake_failures.lock().unwrap().clone()
    }

    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

/// Serves `app` over TLS with `pki`'s server certificate on 127.0.0.1:0.
pub async fn serve(pki: &Pki, app: axum::Router, client_auth: ClientAuth) -> TlsServer {
    let acceptor = TlsAcceptor::from(Arc::new(
        pki.server_config(client_auth == ClientAuth::Required),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshake_failures = Arc::new(Mutex::new(Vec::new()));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (failures, succeeded) = (handshake_failures.clone(), handshakes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            let (failures, succeeded) = (failures.clone(), succeeded.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        failures.lock().unwrap().push(e.to_string());
                        return;
                    }
                };
                succeeded.fetch_add(1, Ordering::SeqCst);
                // The client may close the connection at any time.
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    TlsServer {
        addr,
        handshake_failures,
        handshakes,
    }
}

/// A recording receiver (see [`super::http::router`]) over HTTPS, with its
/// own test CA and certificates.
pub struct TlsReceiver {
    pub pki: Pki,
    pub server: TlsServer,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl TlsReceiver {
    /// `https://127.0.0.1:PORT/events`.
    pub fn url(&self) -> String {
        self.url_for_host("127.0.0.1")
    }

    /// `https://HOST:PORT/events` (the server listens on 127.0.0.1).
    pub fn url_for_host(&self, host: &str) -> String {
        format!("https://{host}:{}/events", self.server.addr.port())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Starts an HTTPS receiver answering with `responder`.
pub async fn receiver(responder: Responder, client_auth: ClientAuth) -> TlsReceiver {
    receiver_with(Pki::new(), responder, client_auth).await
}

/// Starts an HTTPS receiver with the certificates of `pki`.
pub async fn receiver_with(pki: Pki, responder: Responder, client_auth: ClientAuth) -> TlsReceiver {
    let (app, requests) = super::http::router(responder);
    let server = serve(&pki, app, client_auth).await;
    TlsReceiver {
        pki,
        server,
        requests,
    }
}
