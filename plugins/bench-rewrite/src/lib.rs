//! `bench-rewrite`: a transform for benchmarks that rewrites each event's
//! JSON data ([`rewrite::rewrite`], specified in README.md). The host bench
//! (`benches/plugin.rs`, `rewrite_native`) does the same natively.

wit_bindgen::generate!({
    path: "../../wit",
    world: "transform",
});

pub mod raw;
pub mod rewrite;

type Rewrite = fn(&[u8]) -> Option<Vec<u8>>;

/// Config `mode: raw` rewrites member by member ([`raw::rewrite`]); the
/// default builds a DOM ([`rewrite::rewrite`]). Read once per instance.
fn rewrite_fn() -> Rewrite {
    static MODE: std::sync::OnceLock<Rewrite> = std::sync::OnceLock::new();
    *MODE.get_or_init(
        || match switchyard::plugin::host::config("mode").as_deref() {
            Some("raw") => raw::rewrite,
            _ => rewrite::rewrite,
        },
    )
}

struct BenchRewrite;

impl Guest for BenchRewrite {
    fn transform(mut event: CloudEvent) -> Result<Vec<CloudEvent>, String> {
        if let Some(out) = event.data.as_deref().and_then(rewrite_fn()) {
            event.data = Some(out);
        }
        Ok(vec![event])
    }
}

export!(BenchRewrite);
