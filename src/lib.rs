//! Switchyard: an event exporter. It reads events where they are born (first
//! of all NVSentinel's health events), routes them through a YAML route tree,
//! turns them into CloudEvents 1.0 and delivers them to many receivers
//! without losing any.
//!
//! # Layout
//!
//! In the order an event flows, after the vocabulary beneath it all. Each
//! family owns its config (a `config.rs`, or the registry of its kinds in
//! its `mod.rs`); `scripts/check-layering` keeps the layers of
//! `docs/ARCHITECTURE.md` ("Layers") honest.
//!
//! - [`config::common`]: the vocabulary every config is written in:
//!   diagnostics with line and column, durations, sizes, `${…}` expansion,
//!   secrets, TLS settings, checks of single fields.
//! - [`event`]: the CloudEvent model (the official SDK) and its wire form
//!   (`event::Encoded`: an event's JSON written once, the event on demand),
//!   field paths (and `event::DataPaths`: only the data they reach, read
//!   from an event's JSON), NVSentinel's enums (numbers and names,
//!   `event::enums`), W3C trace context (the distributed tracing extension).
//! - [`stats`]: the counters every stage increments (read by telemetry).
//! - [`net`]: what several components share at run time: HTTP clients
//!   from TLS settings, the NATS connection.
//! - [`source`]: where records are read (`file`, `stdin`, `http`, `mongodb`,
//!   `nats`, `kubernetes`, `nomad`; the registry of kinds in `source/mod.rs`),
//!   with positions ([`state`]: where they are persisted, and the in-flight
//!   window).
//! - [`mapping`]: source record → CloudEvent (`nvsentinel`, `raw`,
//!   `cloudevents`, `kubernetes-event`, `nomad`).
//! - [`transform`]: transform steps (WASM plugins) and their `onError` policy.
//! - [`route`]: the route tree: its config, compiled form, patterns and CEL
//!   expressions (`route::expr`).
//! - [`pipeline`]: the running whole: source → mapping → transforms → route
//!   (`router.rs`: batches mapped on every core, taken back in order) →
//!   per-receiver queues (bounded in events and bytes) or disk buffers
//!   (`topology.rs`, `buffer.rs` on [`journal`]: group-committed segment
//!   files of JSON lines, also `source.http`'s) → the receiver tasks
//!   (`receiver.rs`: batching, concurrency, retries), ordered
//!   acknowledgements and checkpoints (`ack.rs`), live reconfiguration,
//!   graceful shutdown.
//! - [`sink`]: the receivers (`stdout`, `file`, `http`, `webhook`, `kafka`,
//!   `nats`, `amqp`, `redis`, `mqtt`, `wasm`; the registry of kinds in
//!   `sink/mod.rs`, the settings every receiver shares in `sink/config.rs`)
//!   and the delivery result; [`deadletter`]: where what they refuse goes.
//! - [`plugin`]: WebAssembly plugins on wasmtime: engine, code cache,
//!   loading, instance pools, limits, the host side of `wit/switchyard.wit`.
//!
//! Around the flow:
//!
//! - [`config`]: the whole file (the composition): loading, every unknown
//!   key at once, and validation of what crosses components into one
//!   [`config::Compiled`].
//! - [`reload`]: watches the config file (and SIGHUP) and hands validated
//!   configs to the pipeline.
//! - [`telemetry`]: Prometheus metrics (also under NVSentinel's names,
//!   `telemetry::nvsentinel`), `/healthz`, `/readyz`; OpenTelemetry spans per
//!   event (`telemetry::traces`) and their OTLP exporter (`telemetry::otlp`).
//! - [`leader`]: leader election with a lease document in MongoDB.
//! - [`app`]: what each command does (`app/run.rs`: the exporter's runtime
//!   with telemetry, leader election, reload and signals); [`cli`]: the
//!   `switchyard` command line's arguments.
//! - `fuzz`: the fuzz targets' bodies (`fuzz/`, `scripts/fuzz`).

pub mod app;
pub mod cli;
pub mod config;
pub mod deadletter;
pub mod event;
#[doc(hidden)]
pub mod fuzz;
pub mod journal;
pub mod leader;
pub mod mapping;
pub mod net;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod route;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod telemetry;
pub mod transform;

/// A boxed future, the return type of the component traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
