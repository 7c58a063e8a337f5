//! Feeds journaled events to the pipeline: each line a record whose
//! position is the journal offset just after it, read only up to what is
//! synced; each record's completion frees its place in the backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::journal::lines::Chunk;
use crate::journal::{Lines, Shared};
use crate::source::{Done, Payload, Position, Record, SourceError};

/// Events accepted (journaled, or about to be) and not yet finished.
#[derive(Debug)]
pub struct Backlog {
    queued: AtomicU64,
    max: u64,
}

impl Backlog {
    pub fn new(queued: u64, max: u64) -> Self {
        Self {
            queued: AtomicU64::new(queued),
            max,
        }
    }

    /// Takes room for `n` events, unless that goes past the limit (a
    /// request larger than the limit is taken when nothing is queued).
    pub fn reserve(&self, n: u64) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q == 0 || q + n <= self.max).then_some(q + n)
            })
            .is_ok()
    }

    pub fn release(&self, n: u64) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(n))
            });
    }

    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }
}

/// Reads from `offset` until shutdown or until the writer is gone and
/// everything synced is read.
pub async fn read(
    journal: Arc<Shared>,
    offset: u64,
    out: mpsc::Sender<Record>,
    backlog: Arc<Backlog>,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let mut lines = Lines::new(journal.clone(), offset);
    loop {
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            chunk = lines.next() => chunk.map_err(|source| SourceError::Io {
                what: "cannot read journal in",
                path: journal.dir.display().to_string(),
                source,
            })?,
        };
        let records = match chunk {
            Chunk::End => return Ok(()),
            Chunk::Broken { from, to } => {
                // Cannot happen: synced data ends with a whole line.
                let reason = format!("journal bytes {from}..{to} hold no whole line");
                vec![(Payload::Invalid(reason), to)]
            }
            Chunk::Lines(found) => found
                .into_iter()
                .map(|(line, end)| (Payload::Line(line), end))
                .collect(),
        };
        for (payload, end) in records {
            if !send(&out, &backlog, &journal, payload, end, &shutdown).await {
                return Ok(());
            }
        }
    }
}

/// Hands one record over; false at shutdown or when the pipeline is gone.
async fn send(
    out: &mpsc::Sender<Record>,
    backlog: &Arc<Backlog>,
    journal: &Shared,
    payload: Payload,
    offset: u64,
    shutdown: &CancellationToken,
) -> bool {
    let freed = backlog.clone();
    let record = Record {
        payload,
        position: Some(Position::Offset {
            stream: journal.id,
            offset,
        }),
        done: Some(Done(Box::new(move || freed.release(1)))),
    };
    tokio::select! {
        _ = shutdown.cancelled() => false,
        sent = out.send(record) => sent.is_ok(),
    }
}
