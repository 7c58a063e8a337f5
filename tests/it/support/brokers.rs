//! Real brokers for receiver tests, each a private process on a free
//! loopback port with its data in a temporary directory, killed when the
//! test drops it: `nats-server` (with JetStream), `redis-server`,
//! `mosquitto`, a RabbitMQ node (`scripts/services` installs them when
//! missing) and `tansu` for Kafka (`scripts/tansu` builds it).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

async fn wait_listening(port: u16, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocks until nothing accepts connections on `port` any more.
fn wait_closed(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "{what} still listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The real start script of the Debian package: `/usr/sbin/rabbitmq-server`
/// only switches to the `rabbitmq` user (or refuses anyone but root).
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// Which broker a [`Server`] runs.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `nats-server -js` (file storage).
    Nats,
    /// `redis-server`, persisting every write (append-only file, fsync
    /// always) so that a kill loses nothing acknowledged.
    Redis,
    /// A RabbitMQ node in the foreground, no plugins. Its start script runs
    /// the Erlang VM as a child, which survives a kill of the script: the
    /// script is started in a process group of its own and the whole group
    /// is killed.
    RabbitMq,
    /// `mosquitto` with persistence (saved at a clean stop) and no cap on
    /// the messages queued for a subscriber.
    Mosquitto,
    /// `tansu`, a Kafka-compatible broker (`scripts/tansu` builds it), in
    /// memory: a restart starts empty.
    Tansu,
}

/// A broker process of this test on a free port, its data in a temporary
/// directory; killed when dropped.
pub struct Server {
    kind: Kind,
    pub port: u16,
    /// RabbitMQ's Erlang distribution port (unused by the others).
    dist_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Mosquitto's TLS listener: certificate and key files.
    tls: Option<(PathBuf, PathBuf)>,
}

impl Server {
    pub async fn nats() -> Self {
        Self::start(Kind::Nats).await
    }

    pub async fn redis() -> Self {
        Self::start(Kind::Redis).await
    }

    /// Guest (guest/guest) may connect, as it does from loopback.
    pub async fn rabbitmq() -> Self {
        Self::start(Kind::RabbitMq).await
    }

    /// Anonymous MQTT on `url()`.
    pub async fn mosquitto() -> Self {
        Self::start(Kind::Mosquitto).await
    }

    /// A Kafka-protocol broker; `url()` is its `host:port`.
    pub async fn kafka() -> Self {
        Self::start(Kind::Tansu).await
    }

    /// MQTT over TLS only, with the server certificate of `pki` (issued for
    /// `localhost`).
    pub async fn mosquitto_tls(pki: &super::tls::Pki) -> Self {
        let mut server = Self::new(Kind::Mosquitto);
        server.tls = Some((pki.server_cert.clone(), pki.server_key.clone()));
        server.launch().await;
        server
    }

    async fn start(kind: Kind) -> Self {
        let mut server = Self::new(kind);
        server.launch().await;
        server
    }

    fn new(kind: Kind) -> Self {
        let port = super::free_port();
        let dist_port = std::iter::repeat_with(super::free_port)
            .find(|p| *p != port)
            .unwrap();
        Self {
            kind,
            port,
            dist_port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls: None,
        }
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
            Kind::Tansu => {
                let root = env!("CARGO_MANIFEST_DIR");
                let out = Command::new(format!("{root}/scripts/tansu"))
                    .arg("path")
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("scripts/tansu runs");
                assert!(out.status.success(), "scripts/tansu path failed");
                let path = String::from_utf8(out.stdout).unwrap();
                let listener = format!("tcp://127.0.0.1:{port}");
                let mut c = Command::new(path.trim());
                c.arg("broker")
                    .args(["--listener-url", &listener])
                    .args(["--advertised-listener-url", &listener])
                    .args(["--storage-engine", "memory://tansu/"])
                    // It reads a `.env` from its working directory.
                    .current_dir(self.dir.path())
                    .env_remove("LISTENER_URL")
                    .env_remove("ADVERTISED_LISTENER_URL")
                    .env_remove("STORAGE_ENGINE");
                c
            }
            Kind::Mosquitto => {
                let dir = self.dir.path();
                // `user root`: started as root, Mosquitto would otherwise
                // switch to the `mosquitto` user, which may not write this
                // test's directory (a non-root user is not switched at all).
                let mut conf = format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\n\
                     persistence true\npersistence_location {dir}/\nmax_queued_messages 0\n\
                     log_dest file {dir}/mosquitto.log\n\
                     user root\n",
                    dir = dir.display()
                );
                if let Some((cert, key)) = &self.tls {
                    conf += &format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
                }
                std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
                let mut c = Command::new(program("mosquitto"));
                c.arg("-c").arg(dir.join("mosquitto.conf"));
                c
            }
            Kind::RabbitMq => {
                program("rabbitmq-server");
                let dir = self.dir.path();
                // Empty: not the machine's /etc/rabbitmq/rabbitmq-env.conf
                // (its node name and port).
                std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
                std::fs::write(dir.join("rabbitmq.conf"), "loopback_users.guest = true\n").unwrap();
                std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
                let mut c = Command::new(RABBITMQ_SERVER);
                c.env(
                    "RABBITMQ_NODENAME",
                    format!("sy-{}-{}@localhost", std::process::id(), self.port),
                )
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", &port)
                .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
                .env(
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                    "-kernel inet_dist_use_interface {127,0,0,1}",
                )
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
                .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
                .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", dir.join("log"))
                // The Erlang cookie, made at the first start.
                .env("HOME", dir)
                .current_dir(dir)
                .process_group(0);
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
        let within = match self.kind {
            // About 10 s on two busy cores; a restart after a kill is no
            // faster.
            Kind::RabbitMq => Duration::from_secs(90),
            Kind::Nats | Kind::Redis | Kind::Mosquitto | Kind::Tansu => Duration::from_secs(30),
        };
        wait_listening(self.port, &format!("{:?}", self.kind), within).await;
    }

    pub fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}/", self.port),
            Kind::RabbitMq => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
            Kind::Mosquitto => format!("mqtt://127.0.0.1:{}", self.port),
            Kind::Tansu => format!("127.0.0.1:{}", self.port),
        }
    }

    /// The broker's own log, if it keeps one (Mosquitto).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// SIGTERM (a clean stop, saving what the broker persists), then waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            wait_closed(self.port, &format!("{:?}", self.kind));
        }
    }

    /// SIGKILL (a crash); the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Kind::RabbitMq = self.kind {
                // The group the script leads: the script and the VM.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            wait_closed(self.port, &format!("{:?}", self.kind));
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
