//! Feeds journaled events to the pipeline: each line a record whose
//! position is the journal offset just after it, read only up to what is
//! synced; each record's completion frees its place in the backlog.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::journal::Shared;
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

const CHUNK: usize = 1024 * 1024;

/// Reads from `offset` until shutdown or until the writer is gone and
/// everything synced is read.
pub async fn read(
    journal: Arc<Shared>,
    mut offset: u64,
    out: mpsc::Sender<Record>,
    backlog: Arc<Backlog>,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let io = |what, source| SourceError::Io {
        what,
        path: journal.dir.display().to_string(),
        source,
    };
    let mut durable = journal.durable.subscribe();
    let mut open: Option<(u64, Arc<File>)> = None;
    let mut chunk = CHUNK;
    loop {
        let end = *durable.borrow_and_update();
        if offset >= end {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = durable.changed() => if changed.is_err() { return Ok(()) },
            }
            continue;
        }
        let Some((base, next)) = journal.locate(offset) else {
            return Err(io(
                "journal offset before its oldest segment in",
                std::io::Error::other(format!("offset {offset}")),
            ));
        };
        let limit = end.min(next.unwrap_or(u64::MAX));
        let file = match &open {
            Some((b, f)) if *b == base => f.clone(),
            _ => {
                let f = Arc::new(
                    journal
                        .open_segment(base)
                        .map_err(|e| io("cannot open journal segment in", e))?,
                );
                open = Some((base, f.clone()));
                f
            }
        };
        let len = ((limit - offset) as usize).min(chunk);
        let at = offset - base;
        let buf = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, at).map(|()| buf)
        })
        .await
        .expect("journal read does not panic")
        .map_err(|e| io("cannot read journal in", e))?;

        let mut records = Vec::new();
        let mut start = 0;
        for (i, _) in buf.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            let line = buf[start..i].to_vec();
            start = i + 1;
            records.push((line, offset + start as u64));
        }
        if records.is_empty() {
            if len as u64 == limit - offset {
                // Cannot happen: synced data ends with a whole line.
                let reason = format!("journal bytes {offset}..{limit} hold no whole line");
                send(
                    &out,
                    &backlog,
                    &journal,
                    Payload::Invalid(reason),
                    limit,
                    &shutdown,
                )
                .await;
                offset = limit;
            } else {
                chunk *= 2; // a line longer than the chunk
            }
            continue;
        }
        chunk = CHUNK;
        for (line, end) in records {
            if !send(
                &out,
                &backlog,
                &journal,
                Payload::Line(line),
                end,
                &shutdown,
            )
            .await
            {
                return Ok(());
            }
            offset = end;
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
