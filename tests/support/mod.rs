//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different part

pub mod brokers;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod mongo;
pub mod nomad;
pub mod pipeline;
pub mod process;
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

/// The ids in a JSON-lines file (none if it does not exist yet).
pub fn event_ids(path: &std::path::Path) -> Vec<String> {
    ids_in(&std::fs::read_to_string(path).unwrap_or_default())
}
pub mod wasm;
