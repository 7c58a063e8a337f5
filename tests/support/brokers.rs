//! Real brokers for receiver tests, each a private process on a free
//! loopback port with its data in a temporary directory, killed when the
//! test drops it: `nats-server` (with JetStream) and `redis-server`. `scripts/services`
//! installs the binaries when missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A program from the system, installed by `scripts/services` if missing.
fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(format!("{root}/scripts/services"))
        .args(["install", name])
        .status()
        .expect("scripts/services runs");
    assert!(status.success(), "scripts/services install {name} failed");
    program(name)
}

async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which broker a [`Server`] runs.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `nats-server -js` (file storage).
    Nats,
    /// `redis-server`, persisting every write (append-only file, fsync
    /// always) so that a kill loses nothing acknowledged.
    Redis,
}

/// A broker process of this test on a free port, its data in a temporary
/// directory; killed when dropped.
pub struct Server {
    kind: Kind,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    pub async fn nats() -> Self {
        Self::start(Kind::Nats).await
    }

    pub async fn redis() -> Self {
        Self::start(Kind::Redis).await
    }

    async fn start(kind: Kind) -> Self {
        let mut server = Self {
            kind,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.kind {
            Kind::Nats => {
                let mut c = Command::new(program("nats-server"));
                c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
                    .arg(self.dir.path());
                c
            }
            Kind::Redis => {
                let mut c = Command::new(program("redis-server"));
                c.args(["--bind", "127.0.0.1", "--port", &port])
                    .args([
                        "--save",
                        "",
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                    ])
                    .arg("--dir")
                    .arg(self.dir.path());
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} starts: {e}", self.kind));
        self.child = Some(child);
        wait_listening(self.port, &format!("{:?}", self.kind)).await;
    }

    pub fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// SIGKILL (a crash); the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
