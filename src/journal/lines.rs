//! Reading a journal in order: whole lines up to the synced end, each with
//! the offset just after it (the position once it is finished).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::watch;

use super::Shared;

const CHUNK: usize = 1024 * 1024;

/// A cursor over a journal's lines.
pub struct Lines {
    journal: Arc<Shared>,
    offset: u64,
    durable: watch::Receiver<u64>,
    open: Option<(u64, Arc<File>)>,
    chunk: usize,
}

/// What [`Lines::next`] found.
pub enum Chunk {
    /// Lines (without their newline), each with the offset after it.
    Lines(Vec<(Vec<u8>, u64)>),
    /// Synced bytes up to this offset that hold no whole line (cannot happen
    /// with the journal's writer; reported rather than skipped silently).
    Broken { from: u64, to: u64 },
    /// The writer is gone and everything it synced has been read.
    End,
}

impl Lines {
    /// Reads from `offset` on.
    pub fn new(journal: Arc<Shared>, offset: u64) -> Self {
        let durable = journal.durable.subscribe();
        Self {
            journal,
            offset,
            durable,
            open: None,
            chunk: CHUNK,
        }
    }

    /// Where the next line starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next lines, waiting until some are synced. Cancel-safe: a chunk
    /// is read in one blocking step and the offset moves only when it is
    /// returned.
    pub async fn next(&mut self) -> io::Result<Chunk> {
        loop {
            let end = *self.durable.borrow_and_update();
            if self.offset >= end {
                if self.durable.changed().await.is_err() {
                    // The writer is gone: its last value is final.
                    if self.offset >= *self.durable.borrow() {
                        return Ok(Chunk::End);
                    }
                }
                continue;
            }
            let offset = self.offset;
            let Some((base, next)) = self.journal.locate(offset) else {
                return Err(io::Error::other(format!(
                    "journal offset {offset} is before its oldest segment"
                )));
            };
            let limit = end.min(next.unwrap_or(u64::MAX));
            let file = match &self.open {
                Some((b, f)) if *b == base => f.clone(),
                _ => {
                    let f = Arc::new(self.journal.open_segment(base)?);
                    self.open = Some((base, f.clone()));
                    f
                }
            };
            let len = ((limit - offset) as usize).min(self.chunk);
            let at = offset - base;
            let buf = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; len];
                file.read_exact_at(&mut buf, at).map(|()| buf)
            })
            .await
            .expect("journal read does not panic")?;

            let mut lines = Vec::new();
            let mut start = 0;
            for (i, _) in buf.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                lines.push((buf[start..i].to_vec(), offset + i as u64 + 1));
                start = i + 1;
            }
            if lines.is_empty() {
                if len as u64 == limit - offset {
                    self.offset = limit;
                    return Ok(Chunk::Broken {
                        from: offset,
                        to: limit,
                    });
                }
                self.chunk *= 2; // a line longer than the chunk
                continue;
            }
            self.chunk = CHUNK;
            self.offset = lines.last().expect("not empty").1;
            return Ok(Chunk::Lines(lines));
        }
    }
}
