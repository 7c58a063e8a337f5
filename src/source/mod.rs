//! Sources: where records come from. A source sends [`Record`]s, each with
//! the position just after it; the pipeline persists a position only when
//! every record before it is finished.

mod file;
pub mod http;
pub mod kubernetes;
mod lines;
pub mod mongodb;
pub mod nats;
pub mod nomad;
mod stdin;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::BoxFuture;
use crate::config::common::{Diagnostics, Spanned};
use crate::mapping::Profile;
use crate::state::StateSpec;
use crate::state::{FileStore, PositionStore, StateError};
use crate::stats::SourceStats;

pub use file::FileSource;
pub use stdin::StdinSource;

// The registry of source kinds. Adding one: its folder (config.rs with its
// YAML shape and `compile`, the `Source` itself), then here a field of
// `SourceConfig`, a variant of `SourceSpec`, an arm of `compile` and one
// of `build` (docs/ARCHITECTURE.md, "Adding a source").

/// The source: exactly one of its kinds is set.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// JSON lines read from a file.
    #[serde(default)]
    pub file: Option<file::FileSourceConfig>,
    /// JSON lines read from standard input.
    #[serde(default)]
    pub stdin: Option<stdin::StdinSourceConfig>,
    /// A MongoDB change stream (NVSentinel's HealthEvents collection).
    #[serde(default)]
    pub mongodb: Option<mongodb::MongoSourceConfig>,
    /// A durable JetStream consumer shared by several workers (scale-out).
    #[serde(default)]
    pub nats: Option<nats::NatsSourceConfig>,
    /// Kubernetes Events or HealthEventResources, listed then watched.
    #[serde(default)]
    pub kubernetes: Option<kubernetes::KubernetesSourceConfig>,
    /// HashiCorp Nomad's event stream (jobs, allocations, deployments, nodes …).
    #[serde(default)]
    pub nomad: Option<nomad::NomadSourceConfig>,
    /// CloudEvents pushed over HTTP, journaled before they are accepted.
    #[serde(default)]
    pub http: Option<http::config::HttpSourceConfig>,
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
    Mongodb(Box<mongodb::MongoSpec>),
    Nats(Box<nats::NatsSourceSpec>),
    Kubernetes(Box<kubernetes::KubernetesSpec>),
    Nomad(Box<nomad::NomadSpec>),
    Http(Box<http::config::HttpSourceSpec>),
}

impl SourceConfig {
    /// Validates `source` (exactly one kind) into its spec.
    pub fn compile(config: &Spanned<Self>, diags: &mut Diagnostics) -> Option<SourceSpec> {
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
            SourceConfig { file: Some(f), .. } => f.compile(diags),
            SourceConfig { stdin: Some(s), .. } => Some(s.compile()),
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

    /// The mapping profile this source's records need when none is set.
    pub fn default_profile(&self) -> Profile {
        match self {
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
}

/// One record read by a source.
#[derive(Debug)]
pub struct Record {
    pub payload: Payload,
    /// The position just after this record, if the source has positions.
    pub position: Option<Position>,
    /// Called once every receiver finished with this record (delivered,
    /// rejected or dead-lettered), whatever happened to the records before
    /// it: how a source that acknowledges each message (a JetStream
    /// consumer) acknowledges it.
    pub done: Option<Done>,
}

/// A record's completion hook ([`Record::done`]).
pub struct Done(pub Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Done")
    }
}

/// Where a source is, just after a record. Opaque to the pipeline; turned
/// into JSON only when persisted (once a second, not once a record).
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// A byte offset into a stream that `stream` identifies (for a file, its
    /// inode, so a replaced file is not read from a stale offset).
    Offset { stream: u64, offset: u64 },
    /// Any JSON, e.g. a change-stream resume token.
    Json(Value),
}

impl Position {
    /// The persisted form.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Offset { stream, offset } => {
                serde_json::json!({"stream": stream, "offset": offset})
            }
            Self::Json(v) => v.clone(),
        }
    }
}

/// The content of a record.
#[derive(Debug)]
pub enum Payload {
    /// One line (without its line ending).
    Line(Vec<u8>),
    /// A record that could not be read whole (e.g. longer than the limit);
    /// it is counted as malformed and its position is passed.
    Invalid(String),
    /// No record, only a position: everything before it has been handed
    /// over (the end of a backfill, a quiet change stream's token).
    Checkpoint,
}

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Setup { what: &'static str, reason: String },
}

/// What a running source is given.
pub struct SourceContext {
    pub out: mpsc::Sender<Record>,
    pub shutdown: CancellationToken,
    /// The last persisted position, if any.
    pub start: Option<Value>,
    pub stats: Arc<SourceStats>,
}

/// A source of records.
pub trait Source: Send {
    /// Where its position is kept, or `None` if it has no position.
    fn position_store(
        &self,
        state: &StateSpec,
    ) -> Result<Option<Arc<dyn PositionStore>>, StateError>;
    /// Reads until the input ends, the receiver side closes, or shutdown.
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>>;
}

/// Builds the configured source.
pub fn build(spec: &SourceSpec) -> Box<dyn Source> {
    match spec {
        SourceSpec::File {
            path,
            follow,
            poll_interval,
            max_line_bytes,
        } => Box::new(FileSource {
            path: path.clone(),
            follow: *follow,
            poll_interval: *poll_interval,
            max_line: *max_line_bytes,
        }),
        SourceSpec::Stdin { max_line_bytes } => Box::new(StdinSource {
            max_line: *max_line_bytes,
        }),
        SourceSpec::Mongodb(spec) => Box::new(mongodb::MongoSource::new((**spec).clone())),
        SourceSpec::Nats(spec) => Box::new(nats::NatsSource {
            spec: (**spec).clone(),
        }),
        SourceSpec::Kubernetes(spec) => {
            Box::new(kubernetes::KubernetesSource::new((**spec).clone()))
        }
        SourceSpec::Nomad(spec) => Box::new(nomad::NomadSource {
            spec: (**spec).clone(),
        }),
        SourceSpec::Http(spec) => Box::new(http::HttpSource::new((**spec).clone())),
    }
}

/// A position file in the state directory, keyed by the source's identity.
pub(crate) fn file_store(
    state: &StateSpec,
    key: &str,
) -> Result<Option<Arc<dyn PositionStore>>, StateError> {
    Ok(Some(Arc::new(FileStore::open(&state.dir, key)?)))
}

/// `text` made safe for a position file's name: ASCII letters, digits, `.`
/// and `-` kept, anything else `_`.
pub(crate) fn file_key(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
