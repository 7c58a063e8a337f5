//! Heap allocations per event on the hot path of the peer scenario
//! (`scripts/bench-peer`): mapping a NVSentinel document to its CloudEvent,
//! routing it through the scenario's two-route tree, and encoding its
//! structured JSON as a receiver does — and the same through the path the
//! pipeline takes when nothing needs the DOM (`Mapper::encode`, the routes'
//! data paths read back from the JSON). A counting global allocator wraps the
//! system's; each stage is counted over the 1,000 samples, several passes,
//! and reported per event.
//!
//!     cargo bench --bench allocations

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard::config::{parse, validate};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only added to.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as the caller promised us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller promised us.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as the caller promised us.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONFIG: &str = r#"
metadata: {cluster: perf}
source: {file: {path: /dev/null}}
mapping: {profile: nvsentinel}
route:
  routes:
    - match: [{receiver: out}]
    - match:
        - receiver: out-fatal-gpu
          data.healthEvent.isFatal: true
          data.healthEvent.componentClass: GPU
receivers:
  - {name: out, http: {endpoint: "http://127.0.0.1:9/", mode: batch}}
  - {name: out-fatal-gpu, http: {endpoint: "http://127.0.0.1:9/", mode: batch}}
"#;

const PASSES: usize = 5;

/// Allocations and bytes per event of `stage`, run `PASSES` times over `n` events.
fn count(n: usize, mut stage: impl FnMut()) -> (f64, f64) {
    let (a0, b0) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..PASSES {
        stage();
    }
    let events = (n * PASSES) as f64;
    (
        (ALLOCATIONS.load(Ordering::Relaxed) - a0) as f64 / events,
        (BYTES.load(Ordering::Relaxed) - b0) as f64 / events,
    )
}

fn main() {
    let (compiled, _) = validate(&parse(CONFIG).unwrap()).unwrap();
    let lines: Vec<&str> = include_str!("../examples/health-events.jsonl")
        .lines()
        .collect();
    let n = lines.len();
    let events: Vec<_> = lines
        .iter()
        .map(|l| compiled.mapper.map(l.as_bytes()).unwrap())
        .collect();

    let map = count(n, || {
        for line in &lines {
            drop(std::hint::black_box(compiled.mapper.map(line.as_bytes())));
        }
    });
    let mut targets = Vec::with_capacity(4);
    let route = count(n, || {
        for event in &events {
            compiled
                .routes
                .route(std::hint::black_box(event), &mut targets);
        }
    });
    let encode = count(n, || {
        for event in &events {
            // As a receiver task does for each event it queues.
            let mut buf = Vec::with_capacity(1024);
            switchyard::event::write_json(event, &mut buf);
            drop(std::hint::black_box(buf));
        }
    });
    // The pipeline's path when nothing needs the DOM: straight to JSON,
    // the routes' data paths read back, routed, the JSON kept at its size.
    let paths = compiled.routes.data_paths().expect("routes on paths alone");
    let mut scratch = Vec::new();
    let direct = count(n, || {
        for line in &lines {
            scratch.clear();
            let mut event = compiled
                .mapper
                .encode(line.as_bytes(), &mut scratch)
                .unwrap();
            event.set_data_unchecked(paths.data_of(&scratch).unwrap());
            compiled.routes.route(&event, &mut targets);
            let kept =
                switchyard::event::Encoded::from_json(bytes::Bytes::copy_from_slice(&scratch));
            drop(std::hint::black_box((event, kept)));
        }
    });
    println!("heap allocations per event ({n} NVSentinel samples, {PASSES} passes):");
    println!("  through the DOM:");
    for (name, (allocations, bytes)) in [("map", map), ("route", route), ("encode", encode)] {
        println!("    {name:<7} {allocations:>6.1} allocations, {bytes:>8.0} bytes");
    }
    let total = map.0 + route.0 + encode.0;
    println!("    total   {total:>6.1} allocations");
    let (allocations, bytes) = direct;
    println!(
        "  straight to JSON (map, route, keep): {allocations:>6.1} allocations, {bytes:>8.0} bytes"
    );
}
