//! Disk buffers (`buffer.type: disk`): a receiver's own journal between the
//! router and the receiver task, so that a slow or stuck receiver holds back
//! neither the source position nor the other receivers.
//!
//! ```text
//! router ─ queue ─▶ writer ──append+fsync──▶ journal ──▶ reader ─ queue ─▶ receiver task
//!                     │                      <state.dir>/buffers/<name>/      │
//!                     └ finishes the record in the                            └ finishes in the
//!                       pipeline's tracker                                      buffer's tracker
//! ```
//!
//! - The **writer** takes events from the receiver's queue, appends them as
//!   structured CloudEvent JSON lines (group-committed: one fsync per batch
//!   taken) and only then finishes them in the pipeline's tracker: for the
//!   source position the event is done once it is on disk.
//! - The **reader** feeds the receiver task from the journal in order. It has
//!   its own [`Tracker`], whose positions are journal offsets: the receiver
//!   task finishes events in it exactly as it does in the pipeline's tracker
//!   for a memory buffer (any order, retries and dead letters as usual).
//! - The **saver** persists the buffer's committed offset every
//!   `state.flushInterval` and at shutdown (`buffer.position.json`) and
//!   deletes the segments wholly before it. A restart reads from that
//!   offset: what the receiver had not finished is sent again, nothing else.
//! - **Bounds.** The journal holds at most `maxSize` bytes (in segments of a
//!   sixteenth of it): when an append would pass it, `whenFull: block`
//!   waits for the receiver to finish events (the router, then the source
//!   wait), `dropNewest` drops the new events for this receiver, counted and
//!   logged. The reader keeps at most the receiver's `queue.maxEvents`
//!   events in memory.
//! - **Crashes.** A torn last line (written, never synced, never finished in
//!   the pipeline's tracker) is cut off when the journal opens: the source
//!   sends that event again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::{Queued, Tracker};
use crate::event::{Encoded, Event};
use crate::journal::{self, Lines, lines::Chunk};
use crate::sink::WhenFull;
use crate::source::{Done, Position};
use crate::state::{FileStore, PositionStore};
use crate::stats::ReceiverStats;

/// What every disk buffer of a pipeline shares.
#[derive(Clone)]
pub struct BufferContext {
    /// `<state.dir>/buffers`.
    pub dir: PathBuf,
    pub flush_interval: Duration,
    /// Shutdown: the reader stops feeding the receiver (what is left stays
    /// on disk for the next start).
    pub shutdown: CancellationToken,
    /// Fired after the pipeline has drained: savers save once more and end.
    pub stop: CancellationToken,
    /// The savers, awaited before the pipeline returns.
    pub savers: TaskTracker,
    /// The buffers started in this process: one journal has one writer, so
    /// a receiver removed by a reload keeps its buffer until a restart.
    pub in_use: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl BufferContext {
    pub fn new(state_dir: &Path, flush_interval: Duration, shutdown: CancellationToken) -> Self {
        Self {
            dir: state_dir.join("buffers"),
            flush_interval,
            shutdown,
            stop: CancellationToken::new(),
            savers: TaskTracker::new(),
            in_use: Arc::default(),
        }
    }
}

/// A running disk buffer's ends, for the topology.
pub struct DiskBuffer {
    /// The reader's tracker: the receiver task finishes events in it.
    pub tracker: Arc<Tracker>,
    /// Hands the writer a reloaded receiver's new queue (read once the
    /// current one is closed and drained).
    pub next_input: mpsc::UnboundedSender<mpsc::Receiver<Queued>>,
    /// Hands the reader a new queue towards the receiver task (used at once;
    /// the task moves to it once the old one is drained).
    pub next_output: mpsc::UnboundedSender<mpsc::Sender<Queued>>,
}

/// A disk buffer opened (its journal's torn tail cut off, its position
/// read), not yet running.
pub struct Opened {
    writer: journal::Writer,
    store: FileStore,
    start: u64,
}

/// Opens `<ctx.dir>/<name>`: reads the journal's directory and last segment
/// (blocking, brief: at start and on a reload that adds the receiver).
pub fn open(ctx: &BufferContext, name: &str, max_size: u64) -> Result<Opened, String> {
    if ctx.in_use.lock().expect("buffers lock").contains(name) {
        return Err("its disk buffer is still held by the receiver of that name that a reload removed; adding it back needs a restart".into());
    }
    let dir = ctx.dir.join(name);
    let failed = |e: &dyn std::fmt::Display| format!("disk buffer {}: {e}", dir.display());
    let segment_bytes = (max_size / 16).clamp(16 * 1024, 64 * 1024 * 1024);
    let writer = journal::open(&dir, segment_bytes).map_err(|e| failed(&e))?;
    let shared = writer.shared().clone();
    let store = FileStore::open(&dir, "buffer").map_err(|e| failed(&e))?;
    let saved = match std::fs::read(store.path()) {
        Ok(bytes) => Some(
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| failed(&format!("{} is corrupt: {e}", store.path().display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed(&e)),
    };
    let start = match saved.as_ref().and_then(saved_offset) {
        Some((id, offset)) if id == shared.id && shared.is_line_start(offset) => offset,
        Some((id, offset)) if id == shared.id => {
            warn!(
                receiver = name,
                offset,
                first = shared.first(),
                end = *shared.durable.borrow(),
                "disk buffer: the saved position is not where a line starts in its journal (damaged); reading it from its start"
            );
            shared.first()
        }
        Some(_) => {
            warn!(
                receiver = name,
                "disk buffer: the saved position is not this journal's; reading it from its start"
            );
            shared.first()
        }
        None => shared.first(),
    };
    Ok(Opened {
        writer,
        store,
        start,
    })
}

impl Opened {
    /// Where the reader starts.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Where the next append goes.
    pub fn end(&self) -> u64 {
        self.writer.end()
    }
}

/// Starts an opened buffer's writer, reader and saver. `input` is the queue
/// the router fills; `output` the receiver task's.
#[allow(clippy::too_many_arguments)]
pub fn start(
    ctx: &BufferContext,
    opened: Opened,
    name: &str,
    max_size: u64,
    when_full: WhenFull,
    window: usize,
    pipeline: Arc<Tracker>,
    counters: Arc<ReceiverStats>,
    input: mpsc::Receiver<Queued>,
    output: mpsc::Sender<Queued>,
    tasks: &TaskTracker,
) -> DiskBuffer {
    let Opened {
        writer,
        store,
        start,
    } = opened;
    ctx.in_use
        .lock()
        .expect("buffers lock")
        .insert(name.to_owned());
    let shared = writer.shared().clone();
    let end = writer.end();
    counters
        .buffer_bytes
        .store(end - shared.first(), Ordering::Relaxed);

    let local = Arc::new(Tracker::new(window));
    let (next_input, inputs) = mpsc::unbounded_channel();
    let (next_output, outputs) = mpsc::unbounded_channel();
    let written = CancellationToken::new();
    let name: Arc<str> = name.into();
    tasks.spawn(
        Writer {
            name: name.clone(),
            journal: writer,
            max_size,
            when_full,
            pipeline,
            counters: counters.clone(),
            inputs,
        }
        .run(input, written.clone()),
    );
    tasks.spawn(read(
        name.clone(),
        shared.clone(),
        start,
        local.clone(),
        counters.clone(),
        output,
        outputs,
        written,
        ctx.shutdown.clone(),
    ));
    ctx.savers.spawn(save(
        name,
        shared,
        store,
        local.clone(),
        counters,
        ctx.flush_interval,
        ctx.stop.clone(),
    ));
    DiskBuffer {
        tracker: local,
        next_input,
        next_output,
    }
}

fn saved_offset(v: &serde_json::Value) -> Option<(u64, u64)> {
    Some((v.get("stream")?.as_u64()?, v.get("offset")?.as_u64()?))
}

/// The writer's state.
struct Writer {
    name: Arc<str>,
    journal: journal::Writer,
    max_size: u64,
    when_full: WhenFull,
    pipeline: Arc<Tracker>,
    counters: Arc<ReceiverStats>,
    inputs: mpsc::UnboundedReceiver<mpsc::Receiver<Queued>>,
}

impl Writer {
    async fn run(mut self, mut input: mpsc::Receiver<Queued>, written: CancellationToken) {
        let mut batch = Vec::with_capacity(512);
        let mut dropped = 0u64;
        loop {
            if input.recv_many(&mut batch, 512).await == 0 {
                // Closed and drained: a reload's newer queue, or the end.
                match self.inputs.try_recv() {
                    Ok(next) => {
                        input = next;
                        continue;
                    }
                    Err(_) => break,
                }
            }
            self.counters
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            let mut bytes = Vec::with_capacity(batch.len() * 1024);
            let mut ends = Vec::with_capacity(batch.len());
            for q in &batch {
                bytes.extend_from_slice(q.event.json());
                bytes.push(b'\n');
                ends.push(bytes.len());
            }
            let seqs: Vec<u64> = batch.iter().map(|q| q.seq).collect();
            batch.clear();
            // As much as fits at a time: what the receiver has not
            // finished stays on disk, so room comes as it finishes.
            let mut from = 0;
            while from < seqs.len() {
                let start = if from == 0 { 0 } else { ends[from - 1] };
                let room = self.max_size.saturating_sub(self.used()) as usize;
                let mut fit = ends[from..]
                    .iter()
                    .take_while(|e| **e - start <= room)
                    .count();
                if fit == 0 && self.counters.buffer_events.load(Ordering::Relaxed) == 0 {
                    fit = 1; // an event larger than the buffer goes alone
                }
                if fit == 0 {
                    match self.when_full {
                        WhenFull::Block => {
                            self.wait_for_room().await;
                            continue;
                        }
                        WhenFull::DropNewest => {
                            let n = (seqs.len() - from) as u64;
                            if dropped == 0 || (dropped + n) / 10_000 > dropped / 10_000 {
                                warn!(receiver = %self.name, dropped = dropped + n, max_size = self.max_size, "disk buffer full (whenFull: dropNewest): new events dropped for this receiver");
                            }
                            dropped += n;
                            self.counters.buffer_dropped.fetch_add(n, Ordering::Relaxed);
                            // Dropped: done for the source position.
                            self.pipeline.finish(&seqs[from..]);
                            break;
                        }
                    }
                }
                let end = ends[from + fit - 1];
                (self, bytes) = self.append(bytes, start..end, fit as u64).await;
                // On disk: done for the source position.
                self.pipeline.finish(&seqs[from..from + fit]);
                from += fit;
            }
        }
        drop(self.journal);
        written.cancel();
    }

    /// Bytes the receiver has not finished, and those of finished events
    /// whose segment is not reclaimed yet.
    fn used(&self) -> u64 {
        self.journal.end() - self.journal.shared().first()
    }

    async fn wait_for_room(&self) {
        // The saver reclaims segments every flush interval; finishing
        // events alone frees nothing on disk.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Appends and syncs, retrying (never dropping) when the disk fails.
    async fn append(
        mut self,
        mut bytes: Vec<u8>,
        range: std::ops::Range<usize>,
        events: u64,
    ) -> (Self, Vec<u8>) {
        let mut wait = Duration::from_millis(100);
        loop {
            let part = range.clone();
            let (writer, kept, result) = tokio::task::spawn_blocking(move || {
                let result = self.journal.write_synced([&bytes[part]]);
                (self, bytes, result)
            })
            .await
            .expect("buffer writer does not panic");
            self = writer;
            bytes = kept;
            match result {
                Ok(()) => {
                    self.counters
                        .buffer_events
                        .fetch_add(events, Ordering::Relaxed);
                    self.counters
                        .buffer_bytes
                        .store(self.used(), Ordering::Relaxed);
                    return (self, bytes);
                }
                Err(e) => {
                    error!(receiver = %self.name, error = %e, retry_in = ?wait, "disk buffer: cannot append; the events wait in memory");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Feeds the receiver task from the journal, in order, until the writer is
/// gone and everything is read, or shutdown.
#[allow(clippy::too_many_arguments)]
async fn read(
    name: Arc<str>,
    journal: Arc<journal::Shared>,
    start: u64,
    local: Arc<Tracker>,
    counters: Arc<ReceiverStats>,
    mut output: mpsc::Sender<Queued>,
    mut outputs: mpsc::UnboundedReceiver<mpsc::Sender<Queued>>,
    written: CancellationToken,
    shutdown: CancellationToken,
) {
    // What it held at start (read off the start path: up to maxSize bytes),
    // counted before any of it is sent, so the gauge never goes below zero.
    let end = *journal.durable.borrow();
    let counting = journal.clone();
    match tokio::task::spawn_blocking(move || counting.count_lines(start, end))
        .await
        .expect("counting does not panic")
    {
        Ok(0) => {}
        Ok(pending) => {
            info!(receiver = %name, events = pending, "disk buffer: sending what the receiver had not finished");
            counters.buffer_events.fetch_add(pending, Ordering::Relaxed);
        }
        Err(e) => warn!(receiver = %name, error = %e, "disk buffer: cannot count what it holds"),
    }
    let mut lines = Lines::new(journal.clone(), start);
    let mut writer_gone = false;
    loop {
        if writer_gone && lines.offset() >= *journal.durable.borrow() {
            return;
        }
        let chunk = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = written.cancelled(), if !writer_gone => {
                writer_gone = true;
                continue;
            }
            chunk = lines.next() => chunk,
        };
        let found = match chunk {
            Ok(Chunk::Lines(found)) => found,
            Ok(Chunk::End) => return,
            Ok(Chunk::Broken { from, to }) => {
                error!(receiver = %name, from, to, "disk buffer: bytes without a whole line skipped");
                continue;
            }
            Err(e) => {
                error!(receiver = %name, error = %e, "disk buffer: cannot read; the receiver gets nothing more until a restart");
                return;
            }
        };
        for (line, end) in found {
            let position = Some(Position::Offset {
                stream: journal.id,
                offset: end,
            });
            let event: Event = match serde_json::from_slice(&line) {
                Ok(event) => event,
                Err(e) => {
                    // Cannot happen: the writer wrote it from an event.
                    error!(receiver = %name, offset = end, error = %e, "disk buffer: an unreadable event skipped");
                    local.begin(0, position, None);
                    counters.buffer_events.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = local.room() => {}
            }
            let left = counters.clone();
            let done = Done(Box::new(move || {
                left.buffer_events.fetch_sub(1, Ordering::Relaxed);
            }));
            let seq = local.begin(1, position, Some(done));
            // A reload's newer queue: the receiver task reads it once it has
            // drained this one.
            while let Ok(next) = outputs.try_recv() {
                output = next;
            }
            counters.queued.fetch_add(1, Ordering::Relaxed);
            let queued = Queued {
                event: Arc::new(Encoded::with_json(event, line.into())),
                seq,
                span: None,
                room: None,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = output.send(queued) => if sent.is_err() {
                    counters.queued.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// Persists the buffer's committed offset and reclaims finished segments,
/// every `interval` and once more when stopped.
async fn save(
    name: Arc<str>,
    journal: Arc<journal::Shared>,
    store: FileStore,
    local: Arc<Tracker>,
    counters: Arc<ReceiverStats>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut saved_version = 0;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.cancelled() => true,
        };
        let oldest = local
            .oldest_unfinished()
            .map_or(0, |t| t.elapsed().as_millis() as u64);
        counters.buffer_oldest_ms.store(oldest, Ordering::Relaxed);
        let (position, version) = local.committed();
        if let Some(Position::Offset { offset, .. }) = position.filter(|_| version != saved_version)
        {
            let value = serde_json::json!({"stream": journal.id, "offset": offset});
            match store.save(&value).await {
                Ok(()) => {
                    saved_version = version;
                    journal.release_before(offset);
                    let end = *journal.durable.borrow();
                    counters
                        .buffer_bytes
                        .store(end - journal.first(), Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(receiver = %name, error = %e, "disk buffer: cannot persist its position; will retry")
                }
            }
        }
        if stopping {
            return;
        }
    }
}
