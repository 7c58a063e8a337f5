//! Switchyard: an event exporter. It reads events where they are born (first
//! of all NVSentinel's health events), routes them through a YAML route tree,
//! turns them into CloudEvents 1.0 and delivers them to many receivers
//! without losing any.
//!
//! # Layout
//!
//! In the order an event flows, after the vocabulary beneath it all:
//!
//! - [`event`]: the CloudEvent model (the official SDK) and its wire form,
//!   field paths, NVSentinel's enums (numbers and names, `event::enums`), W3C
//!   trace context (the distributed tracing extension).
//! - [`config`]: the YAML shape, its vocabulary (`config::common`:
//!   diagnostics with line and column, durations, sizes, `${…}` expansion,
//!   secrets, TLS settings), every unknown key of a file at once
//!   (`config::recover`), and validation that compiles the runtime pieces.
//! - [`net`]: what several components share at run time: HTTP clients
//!   from TLS settings, the NATS connection.
//! - [`source`]: where records are read (`file`, `stdin`, `http`, `mongodb`,
//!   `nats`, `kubernetes`, `nomad`), with positions ([`state`]: where they
//!   are persisted).
//! - [`mapping`]: source record → CloudEvent (`nvsentinel`, `raw`,
//!   `cloudevents`, `kubernetes-event`, `nomad`).
//! - [`transform`]: transform steps (WASM plugins) and their `onError` policy.
//! - [`route`]: the compiled route tree, its patterns and its CEL
//!   expressions (`route::expr`).
//! - [`pipeline`]: source → mapping → transforms → route → per-receiver
//!   queues or disk buffers (on [`journal`]: group-committed segment files of
//!   JSON lines, also `source.http`'s), ordered acknowledgements and
//!   checkpoints, live reconfiguration, graceful shutdown.
//! - [`sink`]: receivers (`stdout`, `file`, `http`, `webhook`, `kafka`,
//!   `nats`, `amqp`, `redis`, `mqtt`, `wasm`) and the delivery result.
//! - [`plugin`]: WebAssembly plugins on wasmtime: engine, code cache,
//!   instance pools, limits, the host side of `wit/switchyard.wit`.
//!
//! Around the flow:
//!
//! - [`reload`]: watches the config file (and SIGHUP) and hands validated
//!   configs to the pipeline.
//! - [`telemetry`]: Prometheus metrics (also under NVSentinel's names,
//!   `telemetry::nvsentinel`), `/healthz`, `/readyz`; OpenTelemetry spans per
//!   event (`telemetry::traces`) and their OTLP exporter (`telemetry::otlp`).
//! - [`leader`]: leader election with a lease document in MongoDB.
//! - [`cli`]: the `switchyard` command line.
//! - `fuzz`: the fuzz targets' bodies (`fuzz/`, `scripts/fuzz`).

pub mod cli;
pub mod config;
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
pub mod telemetry;
pub mod transform;

/// A boxed future, the return type of the component traits.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
