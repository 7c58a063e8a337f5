//! Semantic validation: checks a parsed [`Config`] once, collects every error
//! (each naming its place and line) and compiles the runtime pieces. Runtime
//! code never fails because of a config mistake.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{
    Config, Diagnostics, Duration, Profile, QueueConfig, ReceiverConfig, RetryConfig, SourceConfig,
    Spanned, expand,
};
use crate::mapping::{Mapper, Overrides, Template};
use crate::plugin::{PluginSpec, World};
use crate::route::{self, RouteTree};
use crate::transform::TransformSpec;

/// A validated configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub source: SourceSpec,
    pub mapper: Mapper,
    /// Global transforms (after mapping, before routing).
    pub transforms: Vec<TransformSpec>,
    pub routes: RouteTree,
    pub receivers: Vec<ReceiverSpec>,
    pub state: StateSpec,
    /// Where compiled plugin code is cached.
    pub plugin_cache: PathBuf,
    pub shutdown_timeout: std::time::Duration,
    /// The metrics and health server, if configured.
    pub telemetry: Option<super::TelemetrySpec>,
    /// OpenTelemetry traces, if enabled.
    pub tracing: Option<super::TracingSpec>,
    /// Leader election, if enabled.
    pub leader: Option<super::LeaderSpec>,
}

/// A source with every value resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    File {
        path: PathBuf,
        follow: bool,
        poll_interval: std::time::Duration,
        max_line_bytes: usize,
    },
    Stdin {
        max_line_bytes: usize,
    },
    Mongodb(Box<crate::source::mongodb::MongoSpec>),
    Nats(Box<crate::source::nats::NatsSourceSpec>),
    Kubernetes(Box<crate::source::kubernetes::KubernetesSpec>),
    Nomad(Box<crate::source::nomad::NomadSpec>),
    Http(Box<crate::source::http::config::HttpSourceSpec>),
}

/// A receiver with every value resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSpec {
    pub name: String,
    pub kind: ReceiverKind,
    pub queue: QueueSpec,
    pub buffer: BufferSpec,
    pub retry: RetryConfig,
    /// How queued events are grouped into deliveries.
    pub batch: BatchSpec,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    pub dead_letter: Option<PathBuf>,
    /// Transforms applied before delivery.
    pub transforms: Vec<TransformSpec>,
}

/// Events per delivery: at most `max_events` and `max_bytes` (of
/// structured JSON, when the sink encodes), waiting at most `max_wait` for a
/// batch to fill once its first event is there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSpec {
    pub max_events: usize,
    pub max_bytes: Option<u64>,
    pub max_wait: std::time::Duration,
}

/// The receiver kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Stdout,
    Http(Box<crate::sink::http::config::HttpSpec>),
    Webhook(Box<crate::sink::webhook::config::WebhookSpec>),
    File {
        path: PathBuf,
        max_size: u64,
        max_files: u32,
    },
    Wasm(Box<PluginSpec>),
    Nats(Box<crate::sink::nats::config::NatsSpec>),
    Redis(Box<crate::sink::redis::config::RedisSpec>),
    Mqtt(Box<crate::sink::mqtt::config::MqttSpec>),
    Kafka(Box<crate::sink::kafka::config::KafkaSpec>),
    Amqp(Box<crate::sink::amqp::config::AmqpSpec>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueSpec {
    pub max_events: usize,
    pub max_batch: usize,
}

/// `receivers[].buffer`: a memory buffer is the queue (`queue.max_events`);
/// a disk buffer is a journal of at most `disk` bytes in
/// `<state.dir>/buffers/<receiver>/`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BufferSpec {
    pub disk: Option<u64>,
    pub when_full: super::WhenFull,
}

/// A disk buffer's default `maxSize`.
pub const DEFAULT_DISK_BUFFER_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct StateSpec {
    pub dir: PathBuf,
    pub flush_interval: std::time::Duration,
    /// The window between the source and the position (`state.maxInFlight`).
    pub max_in_flight: usize,
}

/// Validates and compiles. On success the diagnostics hold only warnings.
pub fn validate(config: &Config) -> Result<(Compiled, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();

    let mut metadata = Map::new();
    for (key, value) in config.metadata.iter().flat_map(|m| m.value.iter()) {
        if let Some(v) = expanded(value, &format!("metadata.{key}"), &mut diags) {
            metadata.insert(key.clone(), Value::String(v));
        }
    }
    let mapper = mapper(config, metadata.clone(), &mut diags);
    let source = source(&config.source, &mut diags);
    let transforms: Vec<_> = config
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| t.compile(&format!("transforms[{i}]"), None, &mut diags))
        .collect();

    let mut receivers = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, r) in config.receivers.iter().enumerate() {
        let place = format!("receivers[{i}]");
        if r.name.value.is_empty() {
            diags.error(
                Some(r.name.referenced),
                format!("{place}.name: must not be empty"),
            );
        } else if let Some(&first) = by_name.get(r.name.value.as_str()) {
            let first_line = config.receivers[first].name.referenced.line();
            diags.error(
                Some(r.name.referenced),
                format!("{place}.name: duplicate receiver name {:?} (first defined at line {first_line})", r.name.value),
            );
        } else {
            by_name.insert(&r.name.value, receivers.len());
        }
        // A broken receiver leaves `None`, keeping ids aligned with `by_name`.
        receivers.push(receiver(r, &place, &metadata, &mut diags));
    }

    let mut used = vec![false; receivers.len()];
    let view = match mapper.as_ref().map(Mapper::profile) {
        Some(Profile::Nvsentinel) => route::expr::View::Nvsentinel,
        _ => route::expr::View::CloudEvent,
    };
    let routes = route::compile(&config.route, &by_name, &mut used, view, &mut diags);
    for (i, r) in config.receivers.iter().enumerate() {
        if by_name.get(r.name.value.as_str()) == Some(&i) && !used[i] {
            diags.warning(
                Some(r.name.referenced),
                format!(
                    "receivers[{i}]: receiver {:?} is not used by any route",
                    r.name.value
                ),
            );
        }
    }

    let state_dir = expanded(&config.state.dir, "state.dir", &mut diags);
    if config.state.max_in_flight.value == 0 {
        diags.error(
            Some(config.state.max_in_flight.referenced),
            "state.maxInFlight: must be at least 1 (the records read but not yet delivered)",
        );
    }
    let plugin_cache = match &config.plugin_cache {
        Some(dir) => expanded(dir, "pluginCache", &mut diags).map(PathBuf::from),
        None => state_dir
            .as_ref()
            .map(|d| PathBuf::from(d).join("plugin-cache")),
    };
    nonzero(
        config.state.flush_interval,
        "state.flushInterval",
        &mut diags,
    );

    let telemetry = super::ops::telemetry(config.telemetry.as_ref(), &mut diags);
    let tracing = super::ops::tracing(config.telemetry.as_ref(), &mut diags);
    let leader = super::ops::leader(
        config.leader_election.as_ref(),
        matches!(source, Some(SourceSpec::Mongodb(_))),
        &mut diags,
    );

    diags.0.sort_by_key(|d| d.position);
    if diags.has_errors() {
        return Err(diags);
    }
    let compiled = Compiled {
        source: source.expect("no errors means a source"),
        mapper: mapper.expect("no errors means a mapper"),
        transforms: transforms
            .into_iter()
            .map(|t| t.expect("no errors means every transform built"))
            .collect(),
        routes,
        receivers: receivers
            .into_iter()
            .map(|r| r.expect("no errors means every receiver built"))
            .collect(),
        state: StateSpec {
            dir: PathBuf::from(state_dir.expect("no errors means a state dir")),
            flush_interval: config.state.flush_interval.0,
            max_in_flight: config.state.max_in_flight.value,
        },
        plugin_cache: plugin_cache.expect("no errors means a plugin cache dir"),
        shutdown_timeout: config.shutdown_timeout.0,
        telemetry,
        tracing,
        leader,
    };
    Ok((compiled, diags))
}

/// Expands `${…}` in a value, reporting failures at the value.
fn expanded(value: &Spanned<String>, place: &str, diags: &mut Diagnostics) -> Option<String> {
    match expand(&value.value) {
        Ok(v) => Some(v.into_owned()),
        Err(e) => {
            diags.error(Some(value.referenced), format!("{place}: {e}"));
            None
        }
    }
}

fn nonzero(d: Duration, place: &str, diags: &mut Diagnostics) {
    if d.0.is_zero() {
        diags.error(None, format!("{place}: must be greater than zero"));
    }
}

fn mapper(
    config: &Config,
    metadata: Map<String, Value>,
    diags: &mut Diagnostics,
) -> Option<Mapper> {
    let m = &config.mapping;
    let profile = m
        .profile
        .unwrap_or_else(|| default_profile(&config.source.value));
    let written = config
        .metadata
        .as_ref()
        .and_then(|m| m.value.get("cluster"));
    let expanded = metadata.get("cluster").and_then(Value::as_str);
    // A cluster whose `${…}` failed to expand was reported already.
    let expansion_failed = written.is_some() && expanded.is_none();
    if profile == Profile::Nvsentinel && expanded.is_none_or(str::is_empty) && !expansion_failed {
        let at = written
            .map(|c| c.referenced)
            .or(config.metadata.as_ref().map(|m| m.referenced));
        diags.error(
            at,
            "metadata.cluster: required by the nvsentinel mapping profile (it names the event source)",
        );
    }
    if profile == Profile::Raw {
        for (value, key) in [(&m.ty, "type"), (&m.source, "source")] {
            if value.is_none() {
                diags.error(
                    None,
                    format!("mapping.{key}: required by the raw mapping profile"),
                );
            }
        }
    }
    let mut template = |value: &Option<Spanned<String>>, key: &str| {
        let value = value.as_ref()?;
        match Template::compile(&value.value, &metadata) {
            Ok(t) => Some(t),
            Err(e) => {
                diags.error(Some(value.referenced), format!("mapping.{key}: {e}"));
                None
            }
        }
    };
    let overrides = Overrides {
        ty: template(&m.ty, "type"),
        source: template(&m.source, "source"),
        subject: template(&m.subject, "subject"),
    };
    let enums = m.enums.as_ref().map(|e| {
        if profile != Profile::Nvsentinel {
            diags.warning(
                Some(e.referenced),
                "mapping.enums: only the nvsentinel profile writes NVSentinel's enums; ignored",
            );
        }
        e.value
    });
    Some(Mapper::new(profile, metadata, overrides).with_enums(enums.unwrap_or_default()))
}

/// The mapping profile a source's records need when none is set.
fn default_profile(source: &SourceConfig) -> Profile {
    match source {
        // A JetStream stream carries CloudEvents (what the `nats` receiver
        // writes); `source.http` receives them.
        SourceConfig { nats: Some(_), .. } | SourceConfig { http: Some(_), .. } => {
            Profile::Cloudevents
        }
        SourceConfig {
            kubernetes: Some(k),
            ..
        } if k.kind.value == "events" => Profile::KubernetesEvent,
        SourceConfig { nomad: Some(_), .. } => Profile::Nomad,
        _ => Profile::Nvsentinel,
    }
}

fn source(config: &Spanned<SourceConfig>, diags: &mut Diagnostics) -> Option<SourceSpec> {
    let kinds = [
        config.value.file.is_some(),
        config.value.stdin.is_some(),
        config.value.mongodb.is_some(),
        config.value.nats.is_some(),
        config.value.kubernetes.is_some(),
        config.value.nomad.is_some(),
        config.value.http.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        diags.error(
            Some(config.referenced),
            "source: set exactly one of: file, stdin, mongodb, nats, kubernetes, nomad, http",
        );
        return None;
    }
    match &config.value {
        SourceConfig { file: Some(f), .. } => {
            nonzero(f.poll_interval, "source.file.pollInterval", diags);
            Some(SourceSpec::File {
                path: PathBuf::from(expanded(&f.path, "source.file.path", diags)?),
                follow: f.follow,
                poll_interval: f.poll_interval.0,
                max_line_bytes: usize::try_from(f.max_line_bytes.0).unwrap_or(usize::MAX),
            })
        }
        SourceConfig { stdin: Some(s), .. } => Some(SourceSpec::Stdin {
            max_line_bytes: usize::try_from(s.max_line_bytes.0).unwrap_or(usize::MAX),
        }),
        SourceConfig {
            mongodb: Some(m), ..
        } => m
            .compile(config.referenced, diags)
            .map(|m| SourceSpec::Mongodb(Box::new(m))),
        SourceConfig { nats: Some(n), .. } => {
            n.compile(diags).map(|n| SourceSpec::Nats(Box::new(n)))
        }
        SourceConfig {
            kubernetes: Some(k),
            ..
        } => k
            .compile(diags)
            .map(|k| SourceSpec::Kubernetes(Box::new(k))),
        SourceConfig { nomad: Some(n), .. } => n
            .compile(config.referenced, diags)
            .map(|n| SourceSpec::Nomad(Box::new(n))),
        SourceConfig { http: Some(h), .. } => h
            .compile(config.referenced, diags)
            .map(|h| SourceSpec::Http(Box::new(h))),
        SourceConfig { .. } => None,
    }
}

/// `buffer`: a memory buffer's `maxEvents` sizes the queue; a disk buffer
/// gets a directory named after the receiver.
fn buffer(
    r: &ReceiverConfig,
    place: &str,
    queue: &mut QueueSpec,
    diags: &mut Diagnostics,
) -> BufferSpec {
    let Some(b) = &r.buffer else {
        return BufferSpec::default();
    };
    let at = Some(b.referenced);
    let b = &b.value;
    match b.kind {
        super::BufferType::Memory => {
            if b.max_size.is_some() {
                diags.error(
                    at,
                    format!("{place}.buffer.maxSize: only for type: disk (a memory buffer holds maxEvents events)"),
                );
            }
            match b.max_events {
                Some(0) => diags.error(at, format!("{place}.buffer.maxEvents: must be at least 1")),
                Some(n) => queue.max_events = n,
                None => {}
            }
            BufferSpec {
                disk: None,
                when_full: b.when_full,
            }
        }
        super::BufferType::Disk => {
            if b.max_events.is_some() {
                diags.error(
                    at,
                    format!("{place}.buffer.maxEvents: only for type: memory (a disk buffer holds maxSize bytes)"),
                );
            }
            let size = b.max_size.map_or(DEFAULT_DISK_BUFFER_BYTES, |s| s.0);
            if size < 64 * 1024 {
                diags.error(
                    at,
                    format!("{place}.buffer.maxSize: must be at least 64KiB"),
                );
            }
            let name = &r.name.value;
            let usable = !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
            if !usable {
                diags.error(
                    at,
                    format!("{place}.buffer: a disk buffer lives in <state.dir>/buffers/<name>, so the name {name:?} may use only letters, digits, '.', '_' and '-'"),
                );
            }
            BufferSpec {
                disk: Some(size),
                when_full: b.when_full,
            }
        }
    }
}

fn queue(q: &QueueConfig, place: &str, diags: &mut Diagnostics) -> QueueSpec {
    for (v, key) in [(q.max_events, "maxEvents"), (q.max_batch, "maxBatch")] {
        if v == 0 {
            diags.error(None, format!("{place}.queue.{key}: must be at least 1"));
        }
    }
    QueueSpec {
        max_events: q.max_events.max(1),
        max_batch: q.max_batch.max(1),
    }
}

fn receiver(
    r: &ReceiverConfig,
    place: &str,
    metadata: &Map<String, Value>,
    diags: &mut Diagnostics,
) -> Option<ReceiverSpec> {
    let at = Some(r.name.referenced);
    let kinds = [
        r.stdout.is_some(),
        r.file.is_some(),
        r.http.is_some(),
        r.webhook.is_some(),
        r.wasm.is_some(),
        r.nats.is_some(),
        r.redis.is_some(),
        r.amqp.is_some(),
        r.mqtt.is_some(),
        r.kafka.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        1 => {}
        0 => {
            diags.error(
                at,
                format!(
                    "{place}: receiver {:?} has no kind; set one of: stdout, file, http, webhook, nats, redis, amqp, mqtt, kafka, wasm",
                    r.name.value
                ),
            );
            return None;
        }
        _ => {
            diags.error(
                at,
                format!(
                    "{place}: receiver {:?} sets several kinds; set exactly one of: stdout, file, http, webhook, nats, redis, amqp, mqtt, kafka, wasm",
                    r.name.value
                ),
            );
            return None;
        }
    }
    if r.retry.multiplier < 1.0 || !r.retry.multiplier.is_finite() {
        diags.error(
            at,
            format!("{place}.retry.multiplier: must be at least 1.0"),
        );
    }
    if !(0.0..=1.0).contains(&r.retry.jitter) {
        diags.error(at, format!("{place}.retry.jitter: must be between 0 and 1"));
    }
    if r.retry.max_backoff.0 < r.retry.initial_backoff.0 {
        diags.error(
            at,
            format!("{place}.retry.maxBackoff: must not be less than initialBackoff"),
        );
    }
    let dead_letter = match &r.dead_letter {
        Some(d) => Some(PathBuf::from(expanded(
            &d.file,
            &format!("{place}.deadLetter.file"),
            diags,
        )?)),
        None => None,
    };
    nonzero(
        r.retry.initial_backoff,
        &format!("{place}.retry.initialBackoff"),
        diags,
    );
    let mut batch = None;
    let mut concurrency = 1;
    let kind = if let Some(f) = &r.file {
        if f.max_size.0 == 0 {
            diags.error(
                Some(f.path.referenced),
                format!("{place}.file.maxSize: must be greater than zero"),
            );
        }
        ReceiverKind::File {
            path: PathBuf::from(expanded(&f.path, &format!("{place}.file.path"), diags)?),
            max_size: f.max_size.0,
            max_files: f.max_files,
        }
    } else if let Some(h) = &r.http {
        let (spec, b, c) = h.compile(place, diags)?;
        batch = Some(b);
        concurrency = c;
        ReceiverKind::Http(Box::new(spec))
    } else if let Some(w) = &r.webhook {
        let (spec, c) = w.compile(place, metadata, diags)?;
        batch = Some(BatchSpec {
            max_events: 1,
            max_bytes: None,
            max_wait: std::time::Duration::ZERO,
        });
        concurrency = c;
        ReceiverKind::Webhook(Box::new(spec))
    } else if let Some(n) = &r.nats {
        let spec = n.compile(place, metadata, diags)?;
        // Acks are awaited per batch: a few batches in flight keep the
        // broker busy while one waits.
        concurrency = 4;
        ReceiverKind::Nats(Box::new(spec))
    } else if let Some(a) = &r.amqp {
        let spec = a.compile(place, metadata, diags)?;
        concurrency = 4;
        ReceiverKind::Amqp(Box::new(spec))
    } else if let Some(k) = &r.kafka {
        let spec = k.compile(place, metadata, diags)?;
        // One produce request per partition at a time per delivery; a few
        // deliveries in flight keep the partitions busy.
        concurrency = 4;
        ReceiverKind::Kafka(Box::new(spec))
    } else if let Some(m) = &r.mqtt {
        let spec = m.compile(place, metadata, diags)?;
        concurrency = 4;
        ReceiverKind::Mqtt(Box::new(spec))
    } else if let Some(x) = &r.redis {
        let spec = x.compile(place, metadata, diags)?;
        concurrency = 4;
        ReceiverKind::Redis(Box::new(spec))
    } else if let Some(w) = &r.wasm {
        let spec = w.value.compile(
            &format!("{place}.wasm"),
            crate::plugin::config::DEFAULT_SINK_TIMEOUT,
            diags,
        )?;
        batch = Some(BatchSpec {
            max_events: r.queue.max_batch.max(1),
            max_bytes: None,
            max_wait: std::time::Duration::ZERO,
        });
        ReceiverKind::Wasm(Box::new(spec))
    } else {
        ReceiverKind::Stdout
    };
    let mut queue = queue(&r.queue, place, diags);
    let buffer = buffer(r, place, &mut queue, diags);
    let transforms = r
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.compile(
                &format!("{place}.transforms[{i}]"),
                dead_letter.as_ref(),
                diags,
            )
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ReceiverSpec {
        name: r.name.value.clone(),
        kind,
        batch: batch.unwrap_or(BatchSpec {
            max_events: queue.max_batch,
            max_bytes: None,
            max_wait: std::time::Duration::ZERO,
        }),
        concurrency,
        queue,
        buffer,
        retry: r.retry.clone(),
        dead_letter,
        transforms,
    })
}

impl Compiled {
    /// Every plugin of the config with the world it must implement.
    pub fn plugins(&self) -> Vec<(&PluginSpec, World)> {
        let mut all: Vec<_> = crate::transform::plugin_specs(&self.transforms).collect();
        for r in &self.receivers {
            all.extend(crate::transform::plugin_specs(&r.transforms));
            if let ReceiverKind::Wasm(p) = &r.kind {
                all.push((p, World::Sink));
            }
        }
        all
    }

    /// The cache of compiled plugin code (`pluginCache`).
    pub fn plugin_cache(&self) -> crate::plugin::Cache {
        crate::plugin::Cache::new(self.plugin_cache.clone())
    }
}
