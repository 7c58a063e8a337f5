//! Helpers shared by the integration tests.

pub mod brokers;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod mongo;
pub mod nomad;
pub mod pipeline;
pub mod process;
pub mod python;
pub mod tls;

/// The `id` of each JSON line in `text` (CloudEvents, or `route test` rows).
pub fn ids_in(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v["id"].as_str().expect("an id").to_owned()
        })
        .collect()
}

/// The ids in a JSON-lines file (none if it does not exist yet). A file
/// receiver may be appending as the test reads: a last line without its
/// newline is not whole yet, and is left for the next read.
pub fn event_ids(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    ids_in(whole)
}
pub mod wasm;
pub mod yaml;

pub use yaml::yaml;

/// A free TCP port on 127.0.0.1 (for a server started after this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after
/// `timeout`.
pub async fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for tests without a runtime (the thread sleeps).
pub fn wait_until_blocking(
    what: &str,
    timeout: std::time::Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The JSON lines of a file (none if it does not exist yet).
pub fn json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until `path` holds `n` JSON lines (a receiver's output) and
/// returns them; panics after `timeout` with the process's log.
pub async fn wait_json_lines(
    path: &std::path::Path,
    n: usize,
    process: &process::Process,
    timeout: std::time::Duration,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let got = json_lines(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} events in {} after {timeout:?}; log:\n{}",
            got.len(),
            path.display(),
            process.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
