//! The `switchyard` binary as a child process: its log captured line by
//! line, SIGTERM or SIGKILL, and the telemetry address it printed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// `switchyard run -c config` with `env` added to the environment.
    pub fn run(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("run")
            .arg("-c")
            .arg(config)
            .envs(env.iter().copied())
            // `SWITCHYARD_TEST_LOG=debug cargo test …` to see more of it.
            .env(
                "RUST_LOG",
                std::env::var("SWITCHYARD_TEST_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self { child, log }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` `times` times (panics after
    /// `timeout`, showing the log).
    pub async fn wait_for_n(&self, needle: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.log().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} (×{times}) in the log after {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for(&self, needle: &str, timeout: Duration) {
        self.wait_for_n(needle, 1, timeout).await;
    }

    /// The address the telemetry server listens on (from its log line).
    pub async fn telemetry_addr(&self) -> String {
        self.wait_for("serving /metrics", Duration::from_secs(30))
            .await;
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .unwrap();
        let at = line.find("listen=").unwrap() + "listen=".len();
        line[at..].split_whitespace().next().unwrap().to_owned()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `-HUP`).
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Set in a child made by [`rerun_with_env`].
const RERUN: &str = "SWITCHYARD_TEST_RERUN";

/// Runs the test `name` (its full path, `config::files::x`) of this test
/// binary in a child process with `env` set, and returns what it printed;
/// panics when it fails. For tests that need an environment of their own:
/// changing this process's would race the other tests' threads.
pub fn rerun_with_env(name: &str, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .env(RERUN, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{name} failed in its child process:\n{text}"
    );
    text
}

/// Whether this process is a child made by [`rerun_with_env`].
pub fn is_rerun() -> bool {
    std::env::var_os(RERUN).is_some()
}
