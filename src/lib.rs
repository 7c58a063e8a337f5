//! Switchyard: an event exporter. It reads events where they are born (first
//! of all NVSentinel's health events), routes them through a YAML route tree,
//! turns them into CloudEvents 1.0 and delivers them to many receivers
//! without losing any.
//!
//! # Layout
//!
//! - [`config`]: the YAML shape, `${…}` expansion, diagnostics with line and
//!   column (every unknown key of a file at once, `config::recover`), and
//!   validation that compiles the runtime pieces.
//! - [`event`]: the CloudEvent model (the official SDK) and its wire form,
//!   field paths, NVSentinel's enums (numbers and names, `event::enums`), W3C
//!   trace context (the distributed tracing extension).
//! - [`mapping`]: source record → CloudEvent (`nvsentinel`, `raw`, `cloudevents`,
//!   `kubernetes-event`, `nomad`).
//! - [`route`]: the compiled route tree, its patterns and its CEL
//!   expressions (`route::expr`).
//! - [`source`]: where records come from (`file`, `stdin`, `http`, `mongodb`,
//!   `nats`, `kubernetes`, `nomad`), with positions.
//! - [`sink`]: receivers (`stdout`, `file`, `http`, `webhook`, `kafka`,
//!   `nats`, `amqp`, `redis`, `mqtt`, `wasm`) and the delivery result.
//! - [`plugin`]: WebAssembly plugins on wasmtime: engine, code cache,
//!   instance pools, limits, the host side of `wit/switchyard.wit`.
//! - [`transform`]: transform steps (WASM plugins) and their `onError` policy.
//! - [`pipeline`]: source → mapping → route → per-receiver queues, ordered
//!   acknowledgements and checkpoints, live reconfiguration, graceful
//!   shutdown.
//! - [`reload`]: watches the config file (and SIGHUP) and hands validated
//!   configs to the pipeline.
//! - [`telemetry`]: Prometheus metrics (also under NVSentinel's names,
//!   `telemetry::nvsentinel`), `/healthz`, `/readyz`; OpenTelemetry spans per
//!   event (`telemetry::traces`) and their OTLP exporter (`telemetry::otlp`).
//! - [`leader`]: leader election with a lease document in MongoDB.
//! - [`state`]: where source positions are persisted.
//! - [`journal`]: group-committed segment files of JSON lines, read in order
//!   and reclaimed as they finish (`source.http`'s journal, disk buffers).
//! - [`cli`]: the `switchyard` command line.

pub mod cli;
pub mod config;
pub mod event;
pub mod journal;
pub mod leader;
pub mod mapping;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod route;
pub mod sink;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod transform;

/// A boxed future, the return type of the component traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
