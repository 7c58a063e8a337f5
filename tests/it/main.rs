//! Switchyard's integration tests, one binary with a module per area:
//! `config` (config files, translations, goldens, the chart), `cli` (the
//! binary as users run it), `sources`, `sinks`, `plugins` and `ops`
//! (reload, telemetry, tracing, leader election, scale-out). Helpers are in
//! `support`, once. Run one area or test with a filter:
//! `cargo test --test it sinks::http::`.

mod cli;
mod config;
mod ops;
mod plugins;
mod sinks;
mod sources;
mod support;
