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

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::BoxFuture;
use crate::config::{SourceSpec, StateSpec};
use crate::state::{FileStore, PositionStore, StateError};

pub use file::FileSource;
pub use stdin::StdinSource;

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

/// Counters a source keeps (read by `telemetry` at scrape time).
#[derive(Debug)]
pub struct SourceStats {
    /// Documents read by a backfill.
    pub backfilled: AtomicU64,
    /// Positions found lost: resume tokens gone from the oplog (each one
    /// recovered by backfill), resourceVersions answered 410 Gone (each
    /// recovered by a relist).
    pub tokens_lost: AtomicU64,
    /// Reconnects after transient errors.
    pub reconnects: AtomicU64,
    /// Times the source resumed past events it could no longer read (a
    /// Nomad index fallen out of the broker's buffer): events may be lost.
    pub gaps: AtomicU64,
    /// Whether the source is reading now (file open, change stream open).
    pub connected: std::sync::atomic::AtomicBool,
    /// Whether a backfill is running now.
    pub backfilling: std::sync::atomic::AtomicBool,
    /// Seconds each backfill that ran to its end took (one observation per
    /// backfill; NVSentinel's buckets, 1s … 1h).
    pub backfill_duration: Histogram,
}

/// Upper bounds (seconds) of [`SourceStats::backfill_duration`].
pub const BACKFILL_BUCKETS: [f64; 9] = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];

impl Default for SourceStats {
    fn default() -> Self {
        Self {
            backfilled: AtomicU64::new(0),
            tokens_lost: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            connected: Default::default(),
            backfilling: Default::default(),
            backfill_duration: Histogram::new(BACKFILL_BUCKETS),
        }
    }
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
