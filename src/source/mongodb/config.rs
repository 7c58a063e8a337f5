//! `source.mongodb`: the YAML shape and its validation into a [`MongoSpec`].

use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_json::Value;

use crate::config::common::{Diagnostics, Duration, Spanned, expand};

/// `source.mongodb`: a change stream on one collection, with resume tokens
/// and a historical backfill.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// Connection string (`${MONGODB_URI}`); TLS and auth via its options.
    #[serde(default)]
    pub uri: Option<Spanned<String>>,
    /// A file holding the connection string (a mounted Secret), instead of `uri`.
    #[serde(default)]
    pub uri_file: Option<Spanned<String>>,
    /// Database of the watched collection.
    #[serde(default = "default_database")]
    pub database: String,
    /// The watched collection.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// Change types exported: `insert` (default), `update`, `replace`. Updates
    /// and replaces are read with `fullDocument: updateLookup`.
    #[serde(default = "default_operation_types")]
    pub operation_types: Vec<Spanned<String>>,
    /// Aggregation stages appended to the change stream (`$match` …).
    #[serde(default)]
    pub pipeline: Vec<Value>,
    /// Where the resume token is kept.
    #[serde(default)]
    pub resume_tokens: ResumeTokensConfig,
    /// History read on first start (no token) and after a lost token.
    #[serde(default)]
    pub backfill: BackfillConfig,
    /// TLS with certificate files (a mounted Secret): turns TLS on; its
    /// files take the place of the URI's `tlsCAFile`/`tlsCertificateKeyFile`.
    #[serde(default)]
    pub tls: Option<Spanned<MongoTlsConfig>>,
}

/// `tls: {caFile, certFile, keyFile}`, e.g. the `ca.crt`, `tls.crt` and
/// `tls.key` of a cert-manager Secret. All optional; `certFile` and
/// `keyFile` go together.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MongoTlsConfig {
    /// PEM CA certificates that sign the server's certificate (instead of
    /// the built-in web roots).
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// PEM client certificate (x.509 authentication, mutual TLS), with `keyFile`.
    #[serde(default)]
    pub cert_file: Option<Spanned<String>>,
    /// PEM private key of `certFile` (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
}

/// `resumeTokens: {database, collection, clientName}`: one document per
/// client, `{clientName, resumeToken, updatedAt, lastEventTime}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeTokensConfig {
    /// Database of the token collection.
    #[serde(default = "default_database")]
    pub database: String,
    /// The token collection.
    #[serde(default = "default_token_collection")]
    pub collection: String,
    /// This exporter's key in it; two exporters with one name share a position.
    #[serde(default = "default_client_name")]
    pub client_name: String,
}

impl Default for ResumeTokensConfig {
    fn default() -> Self {
        Self {
            database: default_database(),
            collection: default_token_collection(),
            client_name: default_client_name(),
        }
    }
}

/// `backfill: {enabled, maxAge, maxEvents, batchSize, rateLimit, timeField}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillConfig {
    /// Read history on first start. (Recovery from a lost token always backfills.)
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How far back the first backfill reaches.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
    /// At most this many documents on first start: the newest ones, sent oldest first.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Documents per query batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// At most this many documents per second (0: no limit).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// The document field that holds its time (a BSON date).
    #[serde(default = "default_time_field")]
    pub time_field: String,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: default_max_age(),
            max_events: default_max_events(),
            batch_size: default_batch_size(),
            rate_limit: default_rate_limit(),
            time_field: default_time_field(),
        }
    }
}

fn default_database() -> String {
    "nvsentinel".into()
}
fn default_collection() -> String {
    "HealthEvents".into()
}
fn default_token_collection() -> String {
    "ResumeTokens".into()
}
fn default_client_name() -> String {
    "switchyard".into()
}
fn default_operation_types() -> Vec<Spanned<String>> {
    let unknown = serde_saphyr::Location::UNKNOWN;
    vec![Spanned::new("insert".into(), unknown, unknown)]
}
fn default_true() -> bool {
    true
}
fn default_max_age() -> Duration {
    Duration::from_secs(720 * 3600)
}
fn default_max_events() -> u64 {
    1_000_000
}
fn default_batch_size() -> u32 {
    500
}
fn default_rate_limit() -> u32 {
    1000
}
fn default_time_field() -> String {
    "createdAt".into()
}

/// A validated MongoDB source.
#[derive(Clone, PartialEq)]
pub struct MongoSpec {
    /// The connection string. Secret: never logged.
    pub uri: String,
    pub database: String,
    pub collection: String,
    pub operation_types: Vec<String>,
    pub pipeline: Vec<mongodb::bson::Document>,
    pub tokens_database: String,
    pub tokens_collection: String,
    pub client_name: String,
    pub backfill: BackfillSpec,
    pub tls: Option<MongoTlsSpec>,
}

/// Validated `tls`: the CA file (read by the driver when the client is
/// made) and the client certificate with its key, as one PEM.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoTlsSpec {
    pub ca_file: Option<PathBuf>,
    pub identity: Option<Identity>,
}

/// A client certificate chain and its private key, as one PEM (the shape
/// the driver's `tlsCertificateKeyFile` wants). Secret: `Debug` shows
/// neither.
#[derive(Clone, PartialEq)]
pub struct Identity {
    /// Where the certificate came from (for messages).
    pub cert_file: PathBuf,
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_file", &self.cert_file)
            .field("pem", &"***")
            .finish()
    }
}

/// The URI may hold a password: `Debug` leaves it out.
impl std::fmt::Debug for MongoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSpec")
            .field("uri", &"***")
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("operation_types", &self.operation_types)
            .field("pipeline", &self.pipeline)
            .field("tokens_database", &self.tokens_database)
            .field("tokens_collection", &self.tokens_collection)
            .field("client_name", &self.client_name)
            .field("backfill", &self.backfill)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackfillSpec {
    pub enabled: bool,
    pub max_age: std::time::Duration,
    pub max_events: u64,
    pub batch_size: u32,
    pub rate_limit: u32,
    pub time_field: String,
}

const OPERATION_TYPES: [&str; 3] = ["insert", "update", "replace"];

impl MongoSourceConfig {
    /// Validates, reporting every problem at `at` (the `source` position).
    pub fn compile(
        &self,
        at: serde_saphyr::Location,
        diags: &mut Diagnostics,
    ) -> Option<MongoSpec> {
        let uri = match (&self.uri, &self.uri_file) {
            (Some(u), None) => expand(&u.value)
                .map(|v| v.into_owned())
                .map_err(|e| diags.error(Some(u.referenced), format!("source.mongodb.uri: {e}")))
                .ok(),
            (None, Some(f)) => match expand(&f.value).map(|p| std::fs::read_to_string(&*p)) {
                Ok(Ok(text)) => Some(text.trim().to_owned()),
                Ok(Err(e)) => {
                    diags.error(
                        Some(f.referenced),
                        format!(
                            "source.mongodb.uriFile: cannot read {}: {}",
                            f.value,
                            e.kind()
                        ),
                    );
                    None
                }
                Err(e) => {
                    diags.error(Some(f.referenced), format!("source.mongodb.uriFile: {e}"));
                    None
                }
            },
            _ => {
                diags.error(Some(at), "source.mongodb: set exactly one of: uri, uriFile");
                None
            }
        };
        if let Some(u) = &uri
            && !(u.starts_with("mongodb://") || u.starts_with("mongodb+srv://"))
        {
            // Never print the value: it may hold a password.
            diags.error(
                Some(at),
                "source.mongodb.uri: must start with mongodb:// or mongodb+srv://",
            );
        }
        let mut operation_types = Vec::new();
        for op in &self.operation_types {
            if OPERATION_TYPES.contains(&op.value.as_str()) {
                operation_types.push(op.value.clone());
            } else {
                diags.error(
                    Some(op.referenced),
                    format!("source.mongodb.operationTypes: unknown operation type {:?}; use insert, update or replace", op.value),
                );
            }
        }
        if operation_types.is_empty() && !self.operation_types.is_empty() {
            return None;
        }
        let mut pipeline = Vec::new();
        for (i, stage) in self.pipeline.iter().enumerate() {
            match mongodb::bson::to_document(stage) {
                Ok(d) if d.len() == 1 && d.keys().all(|k| k.starts_with('$')) => pipeline.push(d),
                _ => diags.error(
                    Some(at),
                    format!("source.mongodb.pipeline[{i}]: an aggregation stage is a map with one $operator key"),
                ),
            }
        }
        let b = &self.backfill;
        if b.batch_size == 0 {
            diags.error(
                Some(at),
                "source.mongodb.backfill.batchSize: must be at least 1",
            );
        }
        if b.time_field.is_empty() {
            diags.error(
                Some(at),
                "source.mongodb.backfill.timeField: must not be empty",
            );
        }
        let tls = match &self.tls {
            Some(t) => Some(t.value.compile(t.referenced, diags)?),
            None => None,
        };
        Some(MongoSpec {
            uri: uri?,
            database: self.database.clone(),
            collection: self.collection.clone(),
            operation_types,
            pipeline,
            tokens_database: self.resume_tokens.database.clone(),
            tokens_collection: self.resume_tokens.collection.clone(),
            client_name: self.resume_tokens.client_name.clone(),
            backfill: BackfillSpec {
                enabled: b.enabled,
                max_age: b.max_age.0,
                max_events: b.max_events,
                batch_size: b.batch_size.max(1),
                rate_limit: b.rate_limit,
                time_field: b.time_field.clone(),
            },
            tls,
        })
    }
}

const TLS: &str = "source.mongodb.tls";

impl MongoTlsConfig {
    /// Reads and checks the files: the CA file holds certificates, the
    /// certificate file a chain, the key file a private key that belongs to
    /// it. Messages name the key and the file, never what the files hold.
    fn compile(&self, at: serde_saphyr::Location, diags: &mut Diagnostics) -> Option<MongoTlsSpec> {
        let mut ok = true;
        let ca_file = match &self.ca_file {
            Some(f) => {
                let place = format!("{TLS}.caFile");
                match read(f, &place, diags) {
                    Some((path, pem)) => {
                        let certs =
                            CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
                        if !matches!(&certs, Ok(c) if !c.is_empty()) {
                            diags.error(
                                Some(f.referenced),
                                format!("{place}: no PEM certificate in {}", path.display()),
                            );
                            ok = false;
                        }
                        Some(path)
                    }
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let cert = read(c, &format!("{TLS}.certFile"), diags);
                let key = read(k, &format!("{TLS}.keyFile"), diags);
                match (cert, key) {
                    (Some(cert), Some(key)) => {
                        let identity = check_identity(c, &cert, k, &key, diags);
                        ok &= identity.is_some();
                        identity
                    }
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                diags.error(Some(at), format!("{TLS}: certFile and keyFile go together"));
                ok = false;
                None
            }
        };
        ok.then_some(MongoTlsSpec { ca_file, identity })
    }
}

/// The expanded path of `f` and the file's bytes.
fn read(f: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<(PathBuf, Vec<u8>)> {
    let path = match expand(&f.value) {
        Ok(p) => PathBuf::from(p.into_owned()),
        Err(e) => {
            diags.error(Some(f.referenced), format!("{place}: {e}"));
            return None;
        }
    };
    match std::fs::read(&path) {
        Ok(bytes) => Some((path, bytes)),
        Err(e) => {
            diags.error(
                Some(f.referenced),
                format!("{place}: cannot read {}: {}", path.display(), e.kind()),
            );
            None
        }
    }
}

/// The certificate chain and the key as one PEM, once both parse and the
/// key is the certificate's.
fn check_identity(
    c: &Spanned<String>,
    (cert_path, cert): &(PathBuf, Vec<u8>),
    k: &Spanned<String>,
    (key_path, key): &(PathBuf, Vec<u8>),
    diags: &mut Diagnostics,
) -> Option<Identity> {
    let chain = match CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>() {
        Ok(chain) if !chain.is_empty() => chain,
        _ => {
            diags.error(
                Some(c.referenced),
                format!(
                    "{TLS}.certFile: no PEM certificate in {}",
                    cert_path.display()
                ),
            );
            return None;
        }
    };
    // Only the kind of problem: rustls' messages never hold key material,
    // but nothing here repeats the file's content either way.
    let Ok(private) = PrivateKeyDer::from_pem_slice(key) else {
        diags.error(
            Some(k.referenced),
            format!(
                "{TLS}.keyFile: no PEM private key in {}",
                key_path.display()
            ),
        );
        return None;
    };
    let provider = rustls::crypto::ring::default_provider();
    if let Err(e) = rustls::sign::CertifiedKey::from_der(chain, private, &provider) {
        let why = match e {
            rustls::Error::InconsistentKeys(_) => {
                "the key does not belong to the certificate".to_owned()
            }
            other => other.to_string(),
        };
        diags.error(
            Some(k.referenced),
            format!(
                "{TLS}.keyFile: {} with {}: {why}",
                key_path.display(),
                cert_path.display()
            ),
        );
        return None;
    }
    // The driver reads the certificates, then the first key, from one file.
    let mut pem = cert.clone();
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(key);
    Some(Identity {
        cert_file: cert_path.clone(),
        pem,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, validate};
    use crate::source::SourceSpec;

    fn source(yaml_source: &str) -> Result<SourceSpec, String> {
        let yaml = format!("metadata: {{cluster: c}}\nsource:\n  mongodb: {yaml_source}\n");
        validate(&parse(&yaml).map_err(|e| e.to_string())?)
            .map(|(c, _)| c.source)
            .map_err(|e| e.render("f.yaml"))
    }

    #[test]
    fn uri_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("mongo-uri");
        std::fs::write(&secret, "mongodb://user:s3cret@db:27017/?replicaSet=rs0\n").unwrap();
        let Ok(SourceSpec::Mongodb(spec)) = source(&format!("{{uriFile: {}}}", secret.display()))
        else {
            panic!("valid")
        };
        assert_eq!(spec.uri, "mongodb://user:s3cret@db:27017/?replicaSet=rs0");
        assert_eq!(
            (spec.database.as_str(), spec.collection.as_str()),
            ("nvsentinel", "HealthEvents")
        );
        assert_eq!(spec.operation_types, ["insert"]);
        assert_eq!(spec.client_name, "switchyard");
        assert_eq!(
            spec.backfill.max_age,
            std::time::Duration::from_secs(720 * 3600)
        );

        let missing = source("{uriFile: /nonexistent/mongo-uri}").unwrap_err();
        assert_eq!(
            missing,
            "f.yaml:3:22: source.mongodb.uriFile: cannot read /nonexistent/mongo-uri: entity not found\n"
        );
    }

    #[test]
    #[allow(unsafe_code)] // set_var (SAFETY below)
    fn the_uri_never_appears_in_errors() {
        // SAFETY: this test alone reads the variable.
        unsafe {
            std::env::set_var(
                "SWITCHYARD_TEST_BAD_MONGO_URI",
                "postgres://admin:hunter2@db/",
            )
        };
        let err = source("{uri: \"${SWITCHYARD_TEST_BAD_MONGO_URI}\"}").unwrap_err();
        assert!(err.contains("must start with mongodb://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn pipeline_stages_and_update_lookup() {
        let Ok(SourceSpec::Mongodb(spec)) = source(
            "{uri: \"mongodb://h/\", operationTypes: [insert, replace], pipeline: [{$match: {\"fullDocument.healthevent.isfatal\": true}}]}",
        ) else {
            panic!("valid")
        };
        assert_eq!(spec.operation_types, ["insert", "replace"]);
        assert_eq!(spec.pipeline.len(), 1);
        assert!(spec.pipeline[0].contains_key("$match"));
    }

    /// A self-signed certificate and its key, as PEM files in `dir`.
    fn cert_files(dir: &std::path::Path, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    #[test]
    fn tls_files_are_read_checked_and_joined() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = cert_files(dir.path(), "a");
        let Ok(SourceSpec::Mongodb(spec)) = source(&format!(
            "{{uri: \"mongodb://h/\", tls: {{caFile: {cert}, certFile: {cert}, keyFile: {key}}}}}"
        )) else {
            panic!("valid")
        };
        let tls = spec.tls.expect("tls");
        assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new(&cert)));
        let identity = tls.identity.expect("identity");
        let pem = String::from_utf8(identity.pem.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{pem}");
        // Debug (logs, panics) never shows the key.
        let debug = format!("{identity:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn tls_mistakes_name_the_key_and_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = cert_files(dir.path(), "a");
        let (_, other_key) = cert_files(dir.path(), "b");
        let key_text = std::fs::read_to_string(&key).unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem\n").unwrap();
        let garbage = garbage.display();
        // The message, with the column it points at replaced by what is there.
        let err = |tls: String| {
            let line = format!("  mongodb: {{uri: \"mongodb://h/\", tls: {tls}}}");
            let e = source(&format!("{{uri: \"mongodb://h/\", tls: {tls}}}")).unwrap_err();
            let body = key_text.lines().nth(1).unwrap();
            assert!(!e.contains(body), "{e}");
            let rest = e.strip_prefix("f.yaml:3:").expect(&e);
            let (col, msg) = rest.split_once(": ").unwrap();
            let at: String = line
                .chars()
                .skip(col.parse::<usize>().unwrap() - 1)
                .take(8)
                .collect();
            format!("[{at}] {msg}")
        };
        assert_eq!(
            err(format!("{{certFile: {cert}}}")),
            "[{certFil] source.mongodb.tls: certFile and keyFile go together\n"
        );
        assert_eq!(
            err(format!("{{certFile: {cert}, keyFile: {other_key}}}")),
            format!(
                "[{}] source.mongodb.tls.keyFile: {other_key} with {cert}: the key does not belong to the certificate\n",
                &other_key[..8]
            )
        );
        assert_eq!(
            err(format!("{{certFile: {cert}, keyFile: {garbage}}}")),
            format!(
                "[{}] source.mongodb.tls.keyFile: no PEM private key in {garbage}\n",
                &garbage.to_string()[..8]
            )
        );
        assert_eq!(
            err(format!("{{caFile: {garbage}}}")),
            format!(
                "[{}] source.mongodb.tls.caFile: no PEM certificate in {garbage}\n",
                &garbage.to_string()[..8]
            )
        );
        assert_eq!(
            err("{caFile: /nonexistent/ca.crt}".to_owned()),
            "[/nonexis] source.mongodb.tls.caFile: cannot read /nonexistent/ca.crt: entity not found\n"
        );
    }
}
