//! WASM plugin costs, side by side with the same transform in native Rust:
//! per-event time of a no-op and of a JSON-rewriting transform, load time
//! from the code cache, and memory per idle instance.
//!
//! `cargo bench --bench plugin` after `scripts/build-plugins`; prints one
//! line per measurement. Plugins missing from `plugins/dist` are skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::config::{parse, validate};
use switchyard::event::{Data, Event};
use switchyard::plugin::config::Limits;
use switchyard::plugin::{Cache, Plugin, PluginSpec, World};

// The allocator of the `switchyard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLES: &str = include_str!("../examples/health-events.jsonl");
const ROUNDS: usize = 5;
/// Passes over the 1,000 samples per round.
const PASSES: usize = 20;

fn events() -> Vec<Event> {
    let (compiled, _) = validate(
        &parse("metadata: {cluster: bench}\nsource: {stdin: {}}\nreceivers: [{name: out, stdout: {}}]\nroute: {match: [{receiver: out}]}\n")
            .unwrap(),
    )
    .unwrap();
    SAMPLES
        .lines()
        .map(|l| compiled.mapper.map(l.as_bytes()).unwrap())
        .collect()
}

/// The native twin of `plugins/bench-rewrite`: `healthEvent` → `health`,
/// `exporter: "switchyard"` added, `health.nodeName` lower-cased.
fn rewrite_native(mut event: Event) -> Vec<Event> {
    if let Some(Data::Json(Value::Object(map))) = event.data() {
        let mut map = map.clone();
        if let Some(mut health) = map.shift_remove("healthEvent") {
            if let Some(Value::String(node)) = health.get_mut("nodeName") {
                *node = node.to_lowercase();
            }
            map.insert("health".into(), health);
        }
        map.insert("exporter".into(), Value::String("switchyard".into()));
        event.set_data_unchecked(Value::Object(map));
    }
    vec![event]
}

fn noop_native(event: Event) -> Vec<Event> {
    vec![event]
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median µs per event of `f` over every sample (`PASSES` times a round),
/// `ROUNDS` rounds.
async fn per_event<F, Fut>(events: &[Event], mut f: F) -> f64
where
    F: FnMut(Event) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut out = 0;
        for _ in 0..PASSES {
            for e in events {
                out += f(e.clone()).await;
            }
        }
        assert!(out > 0);
        rounds.push(started.elapsed().as_secs_f64() * 1e6 / (PASSES * events.len()) as f64);
    }
    median(rounds)
}

fn spec(path: &Path, name: &str) -> PluginSpec {
    let mut spec = PluginSpec::bare(path.to_owned(), Duration::from_secs(1));
    if name == "bench-rewrite-raw" {
        spec.config.insert("mode".into(), "raw".into());
    }
    if name == "redact" {
        spec.config
            .insert("remove".into(), "data.healthEvent.metadata".into());
        spec.config.insert("hash".into(), "subject".into());
    }
    spec.limits = Limits {
        memory: 256 * 1024 * 1024,
        timeout: Duration::from_secs(1),
    };
    spec
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` builds this; only `cargo bench` runs it.
    }
    // `cargo bench --bench plugin -- NAME…` measures only those plugins.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let events = events();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(cache_dir.path());
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/dist");

    let clone_only = per_event(&events, async |e| {
        drop(e);
        1
    })
    .await;
    let noop = per_event(&events, async |e| noop_native(e).len()).await;
    let rewrite = per_event(&events, async |e| rewrite_native(e).len()).await;
    // The host's share of a plugin call: the event to the WIT record and
    // back (data reused, as for a plugin returning it unchanged).
    let convert = per_event(&events, async |mut e| {
        let ce = switchyard::plugin::to_wit(&e);
        let data = e.set_data_unchecked(Data::Binary(Vec::new()));
        usize::from(switchyard::plugin::from_wit(ce, data).is_ok())
    })
    .await;
    println!("native  clone only           {clone_only:8.3} µs/event");
    println!("host    convert there+back   {convert:8.3} µs/event");
    println!("native  no-op                {noop:8.3} µs/event");
    println!("native  rewrite              {rewrite:8.3} µs/event");

    for (name, native) in [
        ("bench-noop", noop),
        ("bench-rewrite", rewrite),
        ("bench-rewrite-raw", rewrite),
        ("redact", f64::NAN),
        ("slack-blocks", f64::NAN),
        ("teams-card", f64::NAN),
    ] {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        // `bench-rewrite-raw` is bench-rewrite with `mode: raw`.
        let path = dist.join(format!("{}.wasm", name.trim_end_matches("-raw")));
        if !path.exists() {
            println!(
                "{name}: {} missing (run scripts/build-plugins); skipped",
                path.display()
            );
            continue;
        }
        let spec = spec(&path, name);
        let started = Instant::now();
        let plugin = Plugin::load(&spec, &cache, Some(World::Transform))
            .await
            .unwrap();
        let compile = started.elapsed();
        let mut loads = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let p = Plugin::load(&spec, &cache, Some(World::Transform))
                .await
                .unwrap();
            loads.push(started.elapsed().as_secs_f64() * 1e3);
            drop(p);
        }
        let before = rss_bytes();
        plugin.prefill(8).await.unwrap();
        let per_instance = (rss_bytes().saturating_sub(before)) / 7;
        let wasm = per_event(&events, async |e| plugin.transform(e).await.unwrap().len()).await;
        let overhead = wasm - native;
        println!(
            "wasm    {name:<20} {wasm:8.3} µs/event{}  compile {compile:.2?}  load from cache {:.2} ms  idle instance {} KiB",
            if native.is_nan() {
                String::new()
            } else {
                format!(" (overhead vs native {overhead:.3} µs)")
            },
            median(loads),
            per_instance / 1024,
        );
    }
}
