#![allow(dead_code)] // each test binary (and the bench) uses a different part

//! Real MongoDB for tests: a throwaway single-node replica set per test
//! binary (or per test that restarts it), on a free loopback port, from the
//! `mongod` that `scripts/mongo` installs. Set `SWITCHYARD_TEST_MONGODB_URI`
//! to use an existing deployment instead.
//!
//! A `mongod` started here dies with the test process: a small shell
//! watchdog kills it when its parent is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use tokio::sync::OnceCell;

/// The environment variable naming an existing deployment to test against.
pub const URI_ENV: &str = "SWITCHYARD_TEST_MONGODB_URI";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `mongod` binary, installed by `scripts/mongo` on first use.
pub fn mongod() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new(root().join("scripts/mongo"))
            .arg("path")
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/mongo runs");
        assert!(out.status.success(), "scripts/mongo path failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A replica set this test process owns.
pub struct ReplicaSet {
    pub port: u16,
    dir: tempfile::TempDir,
    watchdog: Option<Child>,
    tls: Option<Tls>,
}

/// PEM files for a mongod that requires TLS and a client certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The server's certificate and key in one file (`--tlsCertificateKeyFile`).
    pub server_cert_key: PathBuf,
    /// The CA that signs server and client certificates (`--tlsCAFile`).
    pub ca: PathBuf,
    /// A client certificate and key in one file, for the test's own admin client.
    pub client_cert_key: PathBuf,
}

impl ReplicaSet {
    /// Starts mongod on a free port and initiates `rs0`.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts mongod with `--tlsMode requireTLS`: only clients presenting a
    /// certificate signed by `tls.ca` connect.
    pub async fn start_tls(tls: Tls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<Tls>) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut rs = Self {
            port,
            dir,
            watchdog: None,
            tls,
        };
        rs.launch().await;
        let admin = rs.direct_client().await;
        let init = admin
            .database("admin")
            .run_command(doc! {"replSetInitiate": {"_id": "rs0", "members": [{"_id": 0, "host": format!("127.0.0.1:{port}")}]}})
            .await;
        if let Err(e) = init {
            assert!(
                e.to_string().contains("already initialized"),
                "replSetInitiate: {e}"
            );
        }
        rs.wait_primary().await;
        rs
    }

    /// mongod's log (why it refused a connection, for instance).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mongod.log")).unwrap_or_default()
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?replicaSet=rs0", self.port)
    }

    async fn launch(&mut self) {
        let mongod = mongod();
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("mongod.log");
        let pidfile = self.dir.path().join("mongod.pid");
        let _ = std::fs::remove_file(&pidfile);
        // The watchdog starts mongod and waits while both it and the test
        // process live. When the test process is gone, it kills mongod and
        // removes the data (a shared replica set is never dropped).
        let script = r#"dir="$1"; m="$2"; shift 2; "$m" "$@" & pid=$!
            while kill -0 "$PPID" 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.2; done
            if ! kill -0 "$PPID" 2>/dev/null; then kill -9 $pid 2>/dev/null; wait $pid; rm -rf "$dir"; fi"#;
        let child = Command::new("sh")
            .args(["-c", script, "watchdog"])
            .arg(self.dir.path())
            .arg(&mongod)
            .args(["--replSet", "rs0", "--bind_ip", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dbpath")
            .arg(&data)
            .arg("--logpath")
            .arg(&log)
            .arg("--pidfilepath")
            .arg(&pidfile)
            .args(["--oplogSize", "128", "--wiredTigerCacheSizeGB", "0.25"])
            .args(self.tls.iter().flat_map(|t| {
                [
                    "--tlsMode".into(),
                    "requireTLS".into(),
                    "--tlsCertificateKeyFile".into(),
                    t.server_cert_key.clone().into_os_string(),
                    "--tlsCAFile".into(),
                    t.ca.clone().into_os_string(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog starts");
        self.watchdog = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mongod did not listen; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pid of the running mongod.
    pub fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("mongod.pid"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Kills mongod with SIGKILL (a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
    }

    /// Starts mongod again on the same port and data, and waits for primary.
    pub async fn restart(&mut self) {
        self.launch().await;
        self.wait_primary().await;
    }

    /// A client of this one node (with the test's client certificate
    /// under TLS).
    async fn direct_client(&self) -> mongodb::Client {
        let mut uri = format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port);
        if let Some(t) = &self.tls {
            uri.push_str(&format!(
                "&tls=true&tlsCAFile={}&tlsCertificateKeyFile={}",
                t.ca.display(),
                t.client_cert_key.display()
            ));
        }
        mongodb::Client::with_uri_str(uri).await.unwrap()
    }

    async fn wait_primary(&self) {
        let client = self.direct_client().await;
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let hello = client
                .database("admin")
                .run_command(doc! {"hello": 1})
                .await;
            if hello.is_ok_and(|h| h.get_bool("isWritablePrimary").unwrap_or(false)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mongod on port {port} did not become primary; see {}",
                self.dir.path().join("mongod.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ReplicaSet {
    fn drop(&mut self) {
        self.kill();
    }
}

/// As `support::free_port`: this file is also compiled alone, by
/// `benches/mongo_stream.rs`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The deployment shared by the tests of one binary: `SWITCHYARD_TEST_MONGODB_URI`,
/// else a replica set started on first use that lives as long as the process.
pub async fn shared_uri() -> String {
    static SHARED: OnceCell<String> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            if let Ok(uri) = std::env::var(URI_ENV) {
                return uri;
            }
            let rs = ReplicaSet::start().await;
            let uri = rs.uri();
            // Lives until the process exits; the watchdog reaps mongod then.
            std::mem::forget(rs);
            uri
        })
        .await
        .clone()
}

/// A database name no other test uses.
pub fn unique_db(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "sy_{}_{}_{}",
        test,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `n` sample NVSentinel documents with fresh `_id`s and `createdAt` = `at`.
pub fn fresh_documents(n: usize, at: chrono::DateTime<chrono::Utc>) -> Vec<Document> {
    let samples = sample_documents("examples/health-events.jsonl");
    (0..n)
        .map(|i| {
            let mut d = samples[i % samples.len()].clone();
            d.insert("_id", mongodb::bson::oid::ObjectId::new());
            d.insert(
                "createdAt",
                mongodb::bson::DateTime::from_millis(at.timestamp_millis()),
            );
            d
        })
        .collect()
}

/// The CloudEvent id the `nvsentinel` profile gives a document.
pub fn event_id(d: &Document) -> String {
    switchyard::mapping::derive_id(
        "nvsentinel",
        d.get_object_id("_id").unwrap().to_hex().as_bytes(),
    )
}

/// Parses the sample documents (MongoDB Extended JSON lines).
pub fn sample_documents(path: &str) -> Vec<Document> {
    std::fs::read_to_string(root().join(path))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            match mongodb::bson::Bson::try_from(v).unwrap() {
                mongodb::bson::Bson::Document(d) => d,
                other => panic!("not a document: {other}"),
            }
        })
        .collect()
}
