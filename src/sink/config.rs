//! The settings every receiver has beside its kind — its queue or buffer,
//! retries, dead letter file — and their resolved forms, which the
//! pipeline's receiver task runs. The kinds themselves are registered in
//! [`super`] (`sink/mod.rs`).

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{ReceiverConfig, ReceiverKind};
use crate::config::common::{ByteSize, Diagnostics, Duration, expanded, nonzero};
use crate::transform::TransformSpec;

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
    /// `disk`: bytes on disk (default 256MiB); `memory`: bytes of the
    /// events' JSON held (default 2MiB), whichever of it and `maxEvents`
    /// comes first.
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueSpec {
    pub max_events: usize,
    /// A memory buffer's `maxSize`: bytes of event JSON queued at once
    /// (`None` in front of a disk buffer, which has its own).
    pub max_bytes: Option<u64>,
    pub max_batch: usize,
}

/// `receivers[].buffer`: a memory buffer is the queue (`queue.max_events`);
/// a disk buffer is a journal of at most `disk` bytes in
/// `<state.dir>/buffers/<receiver>/`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BufferSpec {
    pub disk: Option<u64>,
    pub when_full: WhenFull,
}

/// A disk buffer's default `maxSize`.
pub const DEFAULT_DISK_BUFFER_BYTES: u64 = 256 * 1024 * 1024;

/// A memory buffer's default `maxSize`: what bounds memory whatever the
/// events' size. About 1,900 NVSentinel events (10,000 of 200 bytes):
/// several batches ahead of a receiver, whose batches in flight are out of
/// the queue.
pub const DEFAULT_MEMORY_BUFFER_BYTES: u64 = 2 * 1024 * 1024;

/// `buffer`: a memory buffer's `maxEvents` sizes the queue; a disk buffer
/// gets a directory named after the receiver.
fn buffer(
    r: &ReceiverConfig,
    place: &str,
    queue: &mut QueueSpec,
    diags: &mut Diagnostics,
) -> BufferSpec {
    let Some(b) = &r.buffer else {
        queue.max_bytes = Some(DEFAULT_MEMORY_BUFFER_BYTES);
        return BufferSpec::default();
    };
    let at = Some(b.referenced);
    let b = &b.value;
    match b.kind {
        BufferType::Memory => {
            let size = b.max_size.map_or(DEFAULT_MEMORY_BUFFER_BYTES, |s| s.0);
            if size < 64 * 1024 || size > u64::from(u32::MAX) {
                diags.error(
                    at,
                    format!(
                        "{place}.buffer.maxSize: must be between 64KiB and 4GiB for a memory buffer"
                    ),
                );
            }
            queue.max_bytes = Some(size.clamp(64 * 1024, u64::from(u32::MAX)));
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
        BufferType::Disk => {
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
        max_bytes: None,
        max_batch: q.max_batch.max(1),
    }
}

impl ReceiverConfig {
    /// Validates `receivers[i]` (`place`) into its spec: the kind (see
    /// [`super::KindSpec`]), then the settings every receiver shares.
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<ReceiverSpec> {
        let r = self;
        let at = Some(r.name.referenced);
        let kinds = r.kinds();
        let set = kinds.iter().filter(|(_, set)| *set).count();
        if set != 1 {
            let names = kinds.map(|(name, _)| name).join(", ");
            let problem = if set == 0 {
                format!("has no kind; set one of: {names}")
            } else {
                format!("sets several kinds; set exactly one of: {names}")
            };
            diags.error(
                at,
                format!("{place}: receiver {:?} {problem}", r.name.value),
            );
            return None;
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
        let super::KindSpec {
            kind,
            batch,
            concurrency,
        } = r.compile_kind(place, metadata, diags)?;
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
}
