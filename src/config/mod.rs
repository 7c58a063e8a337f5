//! The YAML configuration: its shape ([`Config`] and friends, plain data that
//! mirrors the file), loading with line/column errors, and [`validate`], which
//! checks the meaning and compiles the runtime pieces.
//!
//! Every struct denies unknown keys; every field is documented here, and these
//! comments are the reference behind the README's configuration section.

pub mod common;
mod ops;
mod recover;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use common::{
    ByteSize, Diagnostic, Diagnostics, Duration, ExpandError, Severity, Spanned, expand,
    expand_with,
};
pub use ops::{
    Compat, LeaderElectionConfig, LeaderSpec, OtlpProtocol, TelemetryConfig, TelemetrySpec,
    TracingConfig, TracingSpec,
};
pub use recover::MAX_ERRORS as MAX_STRUCTURAL_ERRORS;
pub use validate::{
    BatchSpec, BufferSpec, Compiled, QueueSpec, ReceiverKind, ReceiverSpec, SourceSpec, StateSpec,
    validate,
};

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// String map copied into every event's `data.metadata`. The `nvsentinel`
    /// profile requires `cluster`.
    #[serde(default)]
    pub metadata: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// Where events come from: exactly one kind.
    pub source: Spanned<SourceConfig>,
    /// How a source record becomes a CloudEvent.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// WebAssembly transforms applied to every event after mapping and
    /// before routing, in order (filter, modify, split).
    #[serde(default)]
    pub transforms: Vec<crate::transform::TransformConfig>,
    /// The route tree: which events go to which receivers.
    #[serde(default)]
    pub route: RouteConfig,
    /// Named destinations.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Where the source position is persisted.
    #[serde(default)]
    pub state: StateConfig,
    /// Where compiled plugin code is kept between starts (created if
    /// missing). Default: `<state.dir>/plugin-cache`.
    #[serde(default)]
    pub plugin_cache: Option<Spanned<String>>,
    /// How long SIGINT/SIGTERM may take to drain queues before the process exits.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Prometheus metrics and health endpoints over HTTP.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// Several replicas, one exporting at a time (a lease in MongoDB).
    #[serde(default)]
    pub leader_election: Option<LeaderElectionConfig>,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The source: exactly one of its kinds is set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// JSON lines read from a file.
    #[serde(default)]
    pub file: Option<FileSourceConfig>,
    /// JSON lines read from standard input.
    #[serde(default)]
    pub stdin: Option<StdinSourceConfig>,
    /// A MongoDB change stream (NVSentinel's HealthEvents collection).
    #[serde(default)]
    pub mongodb: Option<crate::source::mongodb::MongoSourceConfig>,
    /// A durable JetStream consumer shared by several workers (scale-out).
    #[serde(default)]
    pub nats: Option<crate::source::nats::NatsSourceConfig>,
    /// Kubernetes Events or HealthEventResources, listed then watched.
    #[serde(default)]
    pub kubernetes: Option<crate::source::kubernetes::KubernetesSourceConfig>,
    /// HashiCorp Nomad's event stream (jobs, allocations, deployments, nodes …).
    #[serde(default)]
    pub nomad: Option<crate::source::nomad::NomadSourceConfig>,
    /// CloudEvents pushed over HTTP, journaled before they are accepted.
    #[serde(default)]
    pub http: Option<crate::source::http::config::HttpSourceConfig>,
}

/// `source.file`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read, one record per line.
    pub path: Spanned<String>,
    /// Keep reading lines appended to the file (like `tail -F`), also across
    /// truncation and rotation. When false, the source ends at end of file.
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for new lines.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// The longest line accepted; a longer one is skipped and counted as malformed.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
}

fn default_poll_interval() -> Duration {
    Duration(std::time::Duration::from_millis(250))
}

fn default_max_line() -> ByteSize {
    ByteSize(16 * 1024 * 1024)
}

/// `source.stdin`: JSON lines from standard input. It has no position, so a
/// restart cannot resume; use it for pipes and `route test`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// The longest line accepted; a longer one is skipped and counted as malformed.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
}

/// `mapping`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MappingConfig {
    /// `nvsentinel` (NVSentinel HealthEvents documents), `raw` (any JSON
    /// document becomes `data`), `cloudevents` (each line is a structured
    /// CloudEvent already), `kubernetes-event` (a Kubernetes Event object) or
    /// `nomad` (Nomad events; `data` is the event). Default `cloudevents`
    /// for `source.nats` and `source.http`, `kubernetes-event` for
    /// `source.kubernetes` with `kind: events`, `nomad` for `source.nomad`,
    /// else `nvsentinel`.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Overrides the CloudEvent `type`. A template: `{{metadata.KEY}}`,
    /// `{{id}}`, `{{subject}}` and `{{data.PATH}}` are replaced.
    #[serde(default, rename = "type")]
    pub ty: Option<Spanned<String>>,
    /// Overrides the CloudEvent `source`; a template like `type`.
    #[serde(default)]
    pub source: Option<Spanned<String>>,
    /// Overrides the CloudEvent `subject`; a template like `type`.
    #[serde(default)]
    pub subject: Option<Spanned<String>>,
    /// How the `nvsentinel` profile writes NVSentinel's enums
    /// (`recommendedAction`, `processingStrategy`): `numbers` (default, the
    /// protobuf numbers NVSentinel's own exporter sends) or `names`
    /// (`"COMPONENT_RESET"`). Routes and CEL accept names and numbers in
    /// both modes.
    #[serde(default)]
    pub enums: Option<Spanned<EnumStyle>>,
}

/// `mapping.enums`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EnumStyle {
    /// The enum's number, as NVSentinel's exporter sends it.
    #[default]
    Numbers,
    /// The enum's name.
    Names,
}

/// The mapping profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Profile {
    Nvsentinel,
    Raw,
    Cloudevents,
    /// A Kubernetes Event object (`source.kubernetes` with `kind: events`).
    #[serde(rename = "kubernetes-event", alias = "kubernetesEvent")]
    KubernetesEvent,
    Nomad,
}

/// A node of the route tree.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// If any of these rules matches, the event stops here.
    #[serde(default)]
    pub drop: Vec<RuleConfig>,
    /// Each matching rule that names a receiver sends the event to it; only
    /// if all match (or there are none) are the child routes processed.
    #[serde(default, rename = "match")]
    pub matches: Vec<RuleConfig>,
    /// Child routes, processed in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// A rule: `path: pattern` conditions that must all hold, plus an optional
/// CEL `expr` and an optional `receiver`. A nested map is shorthand for a longer path.
#[derive(Debug, Default)]
pub struct RuleConfig {
    /// The receiver this rule sends matching events to.
    pub receiver: Option<Spanned<String>>,
    /// A CEL expression that must hold as well (ANDed with the
    /// conditions); see `route::expr` for what `event` is.
    pub expr: Option<Spanned<String>>,
    /// The conditions, in file order.
    pub conditions: Vec<(String, Spanned<PatternValue>)>,
}

/// The right-hand side of a condition as written in YAML.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternValue {
    String(String),
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Null,
    Map(Vec<(String, Spanned<PatternValue>)>),
}

mod rule_de;

/// A named receiver: exactly one kind key, plus settings shared by all kinds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiverConfig {
    /// The name that routes refer to. Unique.
    pub name: Spanned<String>,
    /// Write each event as one structured-mode CloudEvent JSON line to stdout.
    #[serde(default)]
    pub stdout: Option<StdoutConfig>,
    /// Append each event as a JSON line to a file, with size-based rotation.
    #[serde(default)]
    pub file: Option<FileSinkConfig>,
    /// POST CloudEvents to an HTTP endpoint (structured, binary or batch mode).
    #[serde(default)]
    pub http: Option<crate::sink::http::config::HttpSinkConfig>,
    /// One request per event with a templated payload (Slack, Teams, …).
    #[serde(default)]
    pub webhook: Option<crate::sink::webhook::config::WebhookSinkConfig>,
    /// Publish to NATS subjects (core NATS, or JetStream with acks).
    #[serde(default)]
    pub nats: Option<crate::sink::nats::config::NatsSinkConfig>,
    /// Publish to an AMQP 0-9-1 broker (RabbitMQ) with publisher confirms.
    #[serde(default)]
    pub amqp: Option<crate::sink::amqp::config::AmqpSinkConfig>,
    /// Produce to Kafka topics (acks from all in-sync replicas).
    #[serde(default)]
    pub kafka: Option<crate::sink::kafka::config::KafkaSinkConfig>,
    /// Publish to MQTT topics (MQTT 5 or 3.1.1, QoS 1 with acks).
    #[serde(default)]
    pub mqtt: Option<crate::sink::mqtt::config::MqttSinkConfig>,
    /// Append to a Redis stream (`XADD`) or publish on a channel.
    #[serde(default)]
    pub redis: Option<crate::sink::redis::config::RedisSinkConfig>,
    /// A receiver written as a WebAssembly component (world `sink`).
    #[serde(default)]
    pub wasm: Option<Spanned<crate::plugin::config::WasmConfig>>,
    /// WebAssembly transforms applied to this receiver's events before
    /// delivery, in order.
    #[serde(default)]
    pub transforms: Vec<crate::transform::TransformConfig>,
    /// The receiver's queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Where its events wait: in memory (the queue) or on disk.
    #[serde(default)]
    pub buffer: Option<Spanned<BufferConfig>>,
    /// How failed deliveries are retried.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Where events go after `retry.maxRetries` failed attempts or a
    /// rejection. Without it, a failing receiver retries for ever and holds
    /// the source position back.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

/// `deadLetter: {file}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON lines: the event, receiver, last error, attempts, first and last
    /// attempt time. Created with its directory.
    pub file: Spanned<String>,
}

/// `stdout: {}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdoutConfig {}

/// `file: {path, maxSize, maxFiles}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file events are appended to (created with its directory if missing).
    pub path: Spanned<String>,
    /// Rotate when the file would grow past this size.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// How many rotated files (`path.1` … `path.N`) are kept; 0 keeps none.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

fn default_max_size() -> ByteSize {
    ByteSize(100 * 1024 * 1024)
}

fn default_max_files() -> u32 {
    5
}

/// `buffer: {type, maxEvents, maxSize, whenFull}`: where a receiver's
/// events wait for it (Vector's buffer model and meanings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (the queue) or `disk`.
    #[serde(rename = "type", default)]
    pub kind: BufferType,
    /// `memory`: events held (default `queue.maxEvents`).
    #[serde(default)]
    pub max_events: Option<usize>,
    /// `disk`: bytes on disk (default 256MiB).
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// What happens to a new event when the buffer is full.
    #[serde(default)]
    pub when_full: WhenFull,
}

/// `buffer.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BufferType {
    #[default]
    Memory,
    /// Events count as finished for the source position once they are
    /// appended (and fsynced) to the receiver's own journal, which it
    /// drains across restarts.
    Disk,
}

/// `buffer.whenFull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WhenFull {
    /// Wait for room (the source waits).
    #[default]
    Block,
    /// Drop the new event for this receiver, counted and logged.
    DropNewest,
}

/// `queue: {maxEvents, maxBatch}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueConfig {
    /// Events buffered for this receiver; when full, the source waits.
    #[serde(default = "default_queue_events")]
    pub max_events: usize,
    /// At most this many queued events are handed to a `stdout` or `file`
    /// receiver at once (HTTP receivers batch by `http.batch`).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_events: default_queue_events(),
            max_batch: default_max_batch(),
        }
    }
}

fn default_queue_events() -> usize {
    10_000
}

fn default_max_batch() -> usize {
    500
}

/// `retry: {maxRetries, initialBackoff, maxBackoff, multiplier, jitter}`.
/// Without a dead letter destination a failing receiver retries for ever
/// (at `maxBackoff` once `maxRetries` is spent) and the source position
/// does not move past its events: nothing is dropped silently.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries before an event goes to the dead letter file.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Factor applied to the wait after each failure.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Random spread of each wait, as a fraction (0.1: ±10%).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            multiplier: default_multiplier(),
            jitter: default_jitter(),
        }
    }
}

fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

fn default_multiplier() -> f64 {
    2.0
}

fn default_max_retries() -> u32 {
    17
}

fn default_jitter() -> f64 {
    0.1
}

/// `state: {dir, flushInterval}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateConfig {
    /// Directory for the persisted source position (created if missing).
    #[serde(default = "default_state_dir")]
    pub dir: Spanned<String>,
    /// How often an advanced position is written (and always at shutdown).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    /// At most this many records read but not yet finished by all their
    /// receivers (the window between the source and the position): when it
    /// is full the source waits, so a receiver stuck on one record bounds
    /// memory instead of growing it with the stream.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: Spanned<usize>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
            flush_interval: default_flush_interval(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

fn default_max_in_flight() -> Spanned<usize> {
    Spanned::new(
        DEFAULT_MAX_IN_FLIGHT,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// `state.maxInFlight`'s default: twice a receiver queue's default size.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 20_000;

fn default_state_dir() -> Spanned<String> {
    Spanned::new(
        "/var/lib/switchyard".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}

/// Reads and parses a config file. Every unknown key and wrong type is
/// reported (up to [`MAX_STRUCTURAL_ERRORS`]); bad YAML and a missing key
/// stop there. [`validate`] then reports every semantic error.
pub fn load(path: &std::path::Path) -> Result<Config, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::one(Diagnostic::error(None, format!("cannot read config: {e}")))
    })?;
    parse(&text)
}

/// Parses config text, reporting every structural error in file order.
pub fn parse(text: &str) -> Result<Config, Diagnostics> {
    recover::parse(text)
}

/// The default config path: `$SWITCHYARD_CONFIG`, else `./switchyard.yaml`.
pub fn default_path() -> PathBuf {
    std::env::var_os("SWITCHYARD_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("switchyard.yaml"))
}
