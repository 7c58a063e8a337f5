//! The real pipeline in-process over a file of sample documents: the
//! harness of the receiver tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard::config::{parse, validate};
use switchyard::pipeline;
use switchyard::stats::Stats;
use tokio_util::sync::CancellationToken;

pub const SAMPLES: &str = include_str!("../../../examples/health-events.jsonl");

/// A file source of the first `n` sample documents, routed to every
/// receiver named in `route_to`, with the receivers in `receivers_yaml`
/// (where `@DIR@` stands for the run's temporary directory).
pub struct Run {
    pub dir: tempfile::TempDir,
    pub yaml: String,
}

impl Run {
    pub fn new(n: usize, route_to: &[&str], receivers_yaml: &str) -> Self {
        let lines: Vec<&str> = SAMPLES.lines().take(n).collect();
        Self::with_documents(&lines, route_to, receivers_yaml)
    }

    pub fn with_documents(documents: &[&str], route_to: &[&str], receivers_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.jsonl");
        std::fs::write(&input, documents.join("\n") + "\n").unwrap();
        let rules: Vec<String> = route_to
            .iter()
            .map(|r| super::yaml("{receiver: $r}", &[("r", &r)]))
            .collect();
        let yaml = super::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input}}\n\
             state: {dir: $state}\n\
             pluginCache: $cache\n\
             shutdownTimeout: 2s\n\
             route: {match: [$rules]}\n\
             receivers:\n$receivers",
            &[
                ("input", &input.display()),
                ("state", &dir.path().join("state").display()),
                ("cache", &plugin_cache().display()),
                ("rules", &rules.join(", ")),
                (
                    "receivers",
                    &receivers_yaml.replace("@DIR@", &dir.path().display().to_string()),
                ),
            ],
        );
        Self { dir, yaml }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs until the file is exported (or `shutdown` fires).
    pub async fn run(&self, shutdown: CancellationToken) -> Arc<Stats> {
        let (compiled, _) =
            validate(&parse(&self.yaml).unwrap()).unwrap_or_else(|e| panic!("{e}\n{}", self.yaml));
        pipeline::run(compiled, shutdown).await.unwrap()
    }

    pub async fn run_to_end(&self) -> Arc<Stats> {
        tokio::time::timeout(Duration::from_secs(60), self.run(CancellationToken::new()))
            .await
            .expect("finishes")
    }
}

/// `n` sample documents — the samples again and again — with distinct
/// `_id`s, so distinct event ids.
pub fn distinct_documents(n: usize) -> Vec<String> {
    let samples: Vec<&str> = SAMPLES.lines().collect();
    (0..n)
        .map(|i| {
            let mut d: serde_json::Value =
                serde_json::from_str(samples[i % samples.len()]).unwrap();
            d["_id"]["$oid"] = format!("{i:024x}").into();
            d.to_string()
        })
        .collect()
}

/// The lines of a dead letter file (none if it does not exist).
pub fn dead_letters(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One cache of compiled plugin code for every test: a Python or JavaScript
/// component is compiled once per checkout, not once per test.
pub fn plugin_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/plugin-cache")
}
