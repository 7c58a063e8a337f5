//! Hostile plugins, built here from WAT: each is contained — the call fails
//! with the right kind, is counted, the instance is replaced, and the next
//! event goes through. In a running pipeline, the `onError` policy decides
//! what happens to the events they fail on while every other event is
//! delivered.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::pipeline::{Run, dead_letters};
use support::wasm::{self, Misbehaviour};
use switchyard::event::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use switchyard::plugin::{Cache, Failure, Plugin, PluginSpec, PluginStats, World, config::Limits};

fn spec(dir: &tempfile::TempDir, name: &str, bytes: &[u8], timeout: Duration) -> PluginSpec {
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    PluginSpec {
        place: format!("transforms[0].wasm ({name})"),
        name: name.to_owned(),
        path,
        config: BTreeMap::new(),
        allowed_hosts: Vec::new(),
        limits: Limits {
            memory: 8 * 1024 * 1024,
            timeout,
        },
    }
}

fn event(id: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("test")
        .ty("com.example.test")
        .data("application/json", serde_json::json!({"n": 1}))
        .build()
        .unwrap()
}

async fn load(name: &str, bytes: &[u8]) -> (tempfile::TempDir, Plugin) {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&dir, name, bytes, Duration::from_millis(250));
    let plugin = Plugin::load(&spec, &Cache::none(), Some(World::Transform))
        .await
        .unwrap();
    (dir, plugin)
}

/// The plugin fails on `bad-…` with `expected`, then passes `good-…`.
async fn contained(plugin: &Plugin, expected: fn(&Failure) -> bool) {
    let (back, failure) = plugin.transform(event("bad-1")).await.unwrap_err();
    assert!(expected(&failure), "unexpected failure: {failure:?}");
    assert_eq!(back.id(), "bad-1", "the event comes back for the policy");
    let out = plugin.transform(event("good-1")).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].id(), "good-1");
    assert_eq!(out[0].data(), event("good-1").data());
}

fn count(stats: &PluginStats) -> [u64; 6] {
    [
        PluginStats::get(&stats.calls),
        PluginStats::get(&stats.traps),
        PluginStats::get(&stats.timeouts),
        PluginStats::get(&stats.memory_limits),
        PluginStats::get(&stats.malformed),
        PluginStats::get(&stats.instances),
    ]
}

#[tokio::test]
async fn an_infinite_loop_is_interrupted_within_twice_its_timeout() {
    let (_dir, plugin) = load("loop", &wasm::transform(Misbehaviour::Loop, "b")).await;
    let started = Instant::now();
    let (_, failure) = plugin.transform(event("bad-1")).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(failure, Failure::Timeout(Duration::from_millis(250)));
    assert!(
        took < Duration::from_millis(500),
        "interrupted after {took:?}"
    );
    contained(&plugin, |f| matches!(f, Failure::Timeout(_))).await;
    // calls, traps, timeouts, memory, malformed, instances (first + 2 replaced)
    assert_eq!(count(plugin.stats()), [3, 0, 2, 0, 0, 3]);
}

#[tokio::test]
async fn a_memory_bomb_traps_at_its_limit() {
    let (_dir, plugin) = load("bomb", &wasm::transform(Misbehaviour::MemoryBomb, "b")).await;
    contained(&plugin, |f| *f == Failure::MemoryLimit(8 * 1024 * 1024)).await;
    assert_eq!(count(plugin.stats()), [2, 0, 0, 1, 0, 2]);
}

#[tokio::test]
async fn a_trap_is_reported_and_the_instance_replaced() {
    let (_dir, plugin) = load("trap", &wasm::transform(Misbehaviour::Trap, "b")).await;
    contained(
        &plugin,
        |f| matches!(f, Failure::Trap(m) if m.contains("unreachable")),
    )
    .await;
    assert_eq!(count(plugin.stats()), [2, 1, 0, 0, 0, 2]);
}

#[tokio::test]
async fn malformed_output_is_an_error_and_keeps_the_instance() {
    let (_dir, plugin) = load("malformed", &wasm::transform(Misbehaviour::Malformed, "b")).await;
    contained(
        &plugin,
        |f| matches!(f, Failure::Malformed(m) if m.contains("application/json data is not JSON")),
    )
    .await;
    assert_eq!(count(plugin.stats()), [2, 0, 0, 0, 1, 1]);
}

#[tokio::test]
async fn a_failed_call_gives_the_event_back_whole() {
    // The first output reuses the event's parsed data; the second is
    // malformed: the event must come back with its data for onError.
    let (_dir, plugin) = load(
        "same",
        &wasm::transform(Misbehaviour::SameThenMalformed, "b"),
    )
    .await;
    let (back, failure) = plugin.transform(event("bad-1")).await.unwrap_err();
    assert!(matches!(failure, Failure::Malformed(m) if m.starts_with("output 1:")));
    assert_eq!(back.data(), event("bad-1").data());
    assert_eq!(back.datacontenttype(), Some("application/json"));
}

#[tokio::test]
async fn an_error_value_is_the_plugins_message() {
    let (_dir, plugin) = load("error", &wasm::transform(Misbehaviour::Error, "b")).await;
    contained(&plugin, |f| *f == Failure::Error("plugin says no".into())).await;
    assert_eq!(PluginStats::get(&plugin.stats().errors), 1);
    assert_eq!(PluginStats::get(&plugin.stats().instances), 1);
}

#[tokio::test]
async fn a_leaking_instance_is_retired_before_it_fails() {
    // 8 MiB limit, 1 MiB leaked per call: without retiring, the 8th call
    // would trap on an event that did nothing wrong.
    let (_dir, plugin) = load("leak", &wasm::transform(Misbehaviour::Leak, "b")).await;
    for i in 0..30 {
        let out = plugin.transform(event(&format!("bad-{i}"))).await.unwrap();
        assert_eq!(out.len(), 1);
    }
    let stats = plugin.stats();
    assert!(PluginStats::get(&stats.recycled) >= 3, "{stats:?}");
    assert_eq!(PluginStats::get(&stats.memory_limits), 0);
    assert_eq!(PluginStats::get(&stats.calls), 30);
}

#[tokio::test]
async fn filter_and_split() {
    let (_dir, filter) = load("filter", &wasm::transform(Misbehaviour::Filter, "b")).await;
    assert!(filter.transform(event("bad-1")).await.unwrap().is_empty());
    let (_dir, split) = load("split", &wasm::transform(Misbehaviour::Split, "b")).await;
    let out = split.transform(event("bad-1")).await.unwrap();
    assert_eq!(out.len(), 2);
    assert!(
        out.iter()
            .all(|e| e.id() == "bad-1" && e.data() == event("x").data())
    );
}

#[tokio::test]
async fn a_plugin_is_refused_at_load_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(250);
    let cases: [(&str, Vec<u8>, Option<World>, &str); 4] = [
        (
            "backdoor",
            wasm::importing_backdoor(),
            None,
            "needs an import Switchyard does not provide",
        ),
        (
            "wrong-world",
            wasm::transform(Misbehaviour::Trap, "b"),
            Some(World::Sink),
            "implements switchyard:plugin/transform@0.1.0, but is used as a sink",
        ),
        (
            "core-module",
            wat::parse_str("(module)").unwrap(),
            None,
            "not a WebAssembly component",
        ),
        (
            "garbage",
            b"not wasm at all".to_vec(),
            None,
            "not a WebAssembly component",
        ),
    ];
    for (name, bytes, world, reason) in cases {
        let spec = spec(&dir, name, &bytes, timeout);
        let err = Plugin::load(&spec, &Cache::none(), world)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(reason), "{name}: {err}");
        assert!(err.to_string().contains(&format!("{name}.wasm")), "{err}");
    }
    let missing = PluginSpec {
        path: PathBuf::from("/nonexistent/plugin.wasm"),
        ..spec(&dir, "x", b"", timeout)
    };
    let err = Plugin::load(&missing, &Cache::none(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[tokio::test]
async fn compiled_code_is_cached_and_loaded_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let spec = spec(
        &dir,
        "split",
        &wasm::transform(Misbehaviour::Split, "b"),
        Duration::from_secs(1),
    );
    let first = Plugin::load(&spec, &cache, None).await.unwrap();
    assert_eq!(first.loaded(), switchyard::plugin::Loaded::Compiled);
    let second = Plugin::load(&spec, &cache, None).await.unwrap();
    assert_eq!(second.loaded(), switchyard::plugin::Loaded::FromCache);
    assert_eq!(second.transform(event("bad")).await.unwrap().len(), 2);
    // A corrupt cache file is replaced, not fatal.
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"corrupt").unwrap();
    }
    let third = Plugin::load(&spec, &cache, None).await.unwrap();
    assert_eq!(third.loaded(), switchyard::plugin::Loaded::Compiled);
}

/// The pipeline with a global transform that fails on events whose id
/// starts with 0–3: those follow `onError`, every other event is delivered.
async fn pipeline_with(
    what: Misbehaviour,
    on_error: &str,
) -> (Run, std::sync::Arc<switchyard::stats::Stats>) {
    let run = Run::new(
        200,
        &["out"],
        "  - name: out\n    file: {path: @DIR@/out.jsonl}\n",
    );
    let plugin = run.path("hostile.wasm");
    std::fs::write(&plugin, wasm::transform(what, "0123")).unwrap();
    let mut run = run;
    run.yaml = run.yaml.replace(
        "route:",
        &support::yaml(
            "transforms:\n  - wasm: {plugin: $plugin, limits: {timeout: 50ms, memory: 4MiB}}\n    onError: $on_error\n    deadLetter: {file: $run}\nroute:", &[("plugin", &plugin.display()), ("on_error", &on_error), ("run", &run.path("transform-dlq.jsonl").display())],
        ),
    );
    let stats = run.run_to_end().await;
    (run, stats)
}

#[tokio::test]
async fn failing_events_are_dead_lettered_and_the_rest_delivered() {
    for what in [
        Misbehaviour::Trap,
        Misbehaviour::Loop,
        Misbehaviour::MemoryBomb,
        Misbehaviour::Malformed,
    ] {
        let (run, stats) = pipeline_with(what, "deadLetter").await;
        let delivered = support::event_ids(&run.path("out.jsonl"));
        let dead = dead_letters(&run.path("transform-dlq.jsonl"));
        assert!(!dead.is_empty(), "{what:?}: some ids start with 0-3");
        assert_eq!(delivered.len() + dead.len(), 200, "{what:?}: nothing lost");
        assert!(
            delivered
                .iter()
                .all(|id| !id.starts_with(['0', '1', '2', '3']))
        );
        for entry in &dead {
            let id = entry["event"]["id"].as_str().unwrap();
            assert!(id.starts_with(['0', '1', '2', '3']), "{id}");
            assert_eq!(entry["receiver"], "transforms[0]");
            assert!(
                entry["error"].as_str().unwrap().contains("hostile"),
                "{entry}"
            );
        }
        let n = dead.len() as u64;
        use switchyard::stats::Stats as S;
        assert_eq!(S::get(&stats.transform_failures), n);
        assert_eq!(S::get(&stats.dead_lettered), n);
        assert_eq!(S::get(&stats.delivered), 200 - n);
    }
}

#[tokio::test]
async fn on_error_pass_delivers_the_event_unchanged_and_drop_drops_it() {
    let (run, stats) = pipeline_with(Misbehaviour::Trap, "pass").await;
    assert_eq!(support::event_ids(&run.path("out.jsonl")).len(), 200);
    let failures = switchyard::stats::Stats::get(&stats.transform_failures);
    assert!(failures > 0);
    assert!(!run.path("transform-dlq.jsonl").exists());

    let (run, stats) = pipeline_with(Misbehaviour::Trap, "drop").await;
    let delivered = support::event_ids(&run.path("out.jsonl"));
    let dropped = switchyard::stats::Stats::get(&stats.transform_dropped);
    assert_eq!(dropped, failures, "the same events fail");
    assert_eq!(delivered.len() as u64 + dropped, 200);
}

#[tokio::test]
async fn a_receivers_transform_filters_and_splits_only_its_events() {
    // Receiver `a` filters ids starting 0–7 and `b` splits ids starting 0–7;
    // `c` gets everything untouched.
    let run = Run::new(
        200,
        &["a", "b", "c"],
        "  - name: a\n    file: {path: @DIR@/a.jsonl}\n    transforms: [{wasm: {plugin: @DIR@/filter.wasm}, onError: drop}]\n\
         \x20 - name: b\n    file: {path: @DIR@/b.jsonl}\n    transforms: [{wasm: {plugin: @DIR@/split.wasm}, onError: drop}]\n\
         \x20 - name: c\n    file: {path: @DIR@/c.jsonl}\n",
    );
    std::fs::write(
        run.path("filter.wasm"),
        wasm::transform(Misbehaviour::Filter, "01234567"),
    )
    .unwrap();
    std::fs::write(
        run.path("split.wasm"),
        wasm::transform(Misbehaviour::Split, "01234567"),
    )
    .unwrap();
    let stats = run.run_to_end().await;
    let all = support::event_ids(&run.path("c.jsonl"));
    assert_eq!(all.len(), 200);
    let picked = |id: &String| id.starts_with(['0', '1', '2', '3', '4', '5', '6', '7']);
    let n = all.iter().filter(|id| picked(id)).count();
    assert!(n > 0 && n < 200);
    assert_eq!(support::event_ids(&run.path("a.jsonl")).len(), 200 - n);
    assert_eq!(support::event_ids(&run.path("b.jsonl")).len(), 200 + n);
    assert_eq!(switchyard::stats::Stats::get(&stats.filtered), n as u64);
    // Every record finished exactly once: the saved position is the end of
    // the input file.
    let size = std::fs::metadata(run.path("input.jsonl")).unwrap().len();
    let state = std::fs::read_dir(run.path("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".position.json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(state.contains(&format!("\"offset\":{size}")), "{state}");
}

#[tokio::test]
async fn a_trapping_sink_plugin_retries_then_dead_letters_while_others_deliver() {
    let run = Run::new(
        50,
        &["plugin", "file"],
        "  - name: plugin\n    wasm: {plugin: @DIR@/sink.wasm}\n    queue: {maxBatch: 1}\n\
         \x20   retry: {maxRetries: 2, initialBackoff: 10ms, maxBackoff: 20ms}\n\
         \x20   deadLetter: {file: @DIR@/sink-dlq.jsonl}\n\
         \x20 - name: file\n    file: {path: @DIR@/file.jsonl}\n",
    );
    std::fs::write(run.path("sink.wasm"), wasm::sink_trapping_on("0123")).unwrap();
    let stats = run.run_to_end().await;
    assert_eq!(support::event_ids(&run.path("file.jsonl")).len(), 50);
    let dead = dead_letters(&run.path("sink-dlq.jsonl"));
    assert!(!dead.is_empty());
    for entry in &dead {
        assert!(
            entry["event"]["id"]
                .as_str()
                .unwrap()
                .starts_with(['0', '1', '2', '3'])
        );
        assert!(
            entry["error"].as_str().unwrap().contains("trapped"),
            "{entry}"
        );
        assert_eq!(entry["attempts"], 3);
    }
    use switchyard::stats::Stats as S;
    assert_eq!(S::get(&stats.delivered), 50 + 50 - dead.len() as u64);
    // Three attempts each: two retried, the third dead-lettered.
    assert_eq!(S::get(&stats.retries), 2 * dead.len() as u64);
}
