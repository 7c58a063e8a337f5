//! The journal: events as JSON lines in segment files in one directory, each
//! named by the journal offset of its first byte. Offsets are global (they
//! grow across segments), so a position is one number. Appends are
//! group-committed: every append waiting while an fsync runs is written and
//! synced by the next one, and only then acknowledged. [`Lines`] reads what
//! is synced, in order, following the end as it grows; finished segments
//! are deleted with [`Shared::release_before`].
//!
//! A crash can leave a torn last line (written, never synced, never
//! acknowledged); opening the journal cuts it off.
//!
//! Two users: `source.http` (`<state.dir>/http-journal/`: accepted requests,
//! answered once synced) and the receivers' disk buffers
//! (`<state.dir>/buffers/<receiver>/`: events the source position has moved
//! past, kept until the receiver finishes them).

pub mod lines;

pub use lines::Lines;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

/// What the writer, the reader and the cleaner share.
pub struct Shared {
    pub dir: PathBuf,
    /// Identifies this journal in positions (a position from another one
    /// is not used).
    pub id: u64,
    /// The first offsets of the segments, oldest first.
    segments: Mutex<BTreeSet<u64>>,
    /// The end of what is synced: the reader reads up to here.
    pub durable: watch::Sender<u64>,
}

/// Appends to the newest segment (owned by the appender task).
pub struct Writer {
    shared: Arc<Shared>,
    file: File,
    base: u64,
    len: u64,
    segment_bytes: u64,
    broken: bool,
}

/// One request's events, answered once synced.
pub struct Append {
    pub bytes: Vec<u8>,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// The file of the segment whose first offset is `base`.
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.jsonl"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens (or creates) the journal in `dir`.
pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Writer> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    let id = journal_id(dir)?;
    let mut segments = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name
            .strip_suffix(".jsonl")
            .and_then(|b| b.parse::<u64>().ok())
        {
            segments.insert(base);
        }
    }
    let base = match segments.last() {
        Some(b) => *b,
        None => {
            File::create(segment_path(dir, 0))?;
            sync_dir(dir)?;
            segments.insert(0);
            0
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(segment_path(dir, base))?;
    let len = complete_length(&mut file)?;
    if len < file.metadata()?.len() {
        warn!(
            segment = base,
            kept = len,
            "journal: cutting off a torn last line (never acknowledged)"
        );
        file.set_len(len)?;
        file.sync_all()?;
    }
    let shared = Arc::new(Shared {
        dir: dir.to_owned(),
        id,
        segments: Mutex::new(segments),
        durable: watch::Sender::new(base + len),
    });
    Ok(Writer {
        shared,
        file,
        base,
        len,
        segment_bytes,
        broken: false,
    })
}

/// The journal's identity, created with it.
fn journal_id(dir: &Path) -> io::Result<u64> {
    let path = dir.join("journal-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("{} is corrupt", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // Unique enough: a different journal in the same directory is
            // created at a different nanosecond.
            let id = (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 48);
            let tmp = path.with_extension("tmp");
            let mut f = File::create(&tmp)?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(dir)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// The length of the file up to and including its last newline.
fn complete_length(file: &mut File) -> io::Result<u64> {
    let mut end = file.metadata()?.len();
    let mut chunk = vec![0; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl Shared {
    /// The oldest offset still in the journal.
    pub fn first(&self) -> u64 {
        *self.segments().first().expect("a journal has a segment")
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.segments.lock().expect("segments lock")
    }

    /// The segment holding `offset` (its first offset), and where the
    /// next one starts.
    pub fn locate(&self, offset: u64) -> Option<(u64, Option<u64>)> {
        let segments = self.segments();
        let base = *segments.range(..=offset).next_back()?;
        let next = segments.range(offset + 1..).next().copied();
        Some((base, next))
    }

    pub fn open_segment(&self, base: u64) -> io::Result<File> {
        File::open(segment_path(&self.dir, base))
    }

    /// Deletes the segments wholly before `offset` (never the newest).
    pub fn release_before(&self, offset: u64) {
        let mut segments = self.segments();
        while segments.len() > 1 {
            let mut it = segments.iter();
            let (first, second) = (*it.next().unwrap(), *it.next().unwrap());
            if second > offset {
                break;
            }
            match std::fs::remove_file(segment_path(&self.dir, first)) {
                Ok(()) => info!(segment = first, "journal: deleted a finished segment"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(segment = first, error = %e, "journal: cannot delete a finished segment");
                    break;
                }
            }
            segments.remove(&first);
        }
    }

    /// Whether a line starts at `offset`: the journal's first offset, or
    /// just after a newline within what is synced (a position saved by
    /// this journal always is; a damaged one may not be).
    pub fn is_line_start(&self, offset: u64) -> bool {
        if offset == self.first() {
            return true;
        }
        if offset < self.first() || offset > *self.durable.borrow() {
            return false;
        }
        let Some((base, _)) = self.locate(offset - 1) else {
            return false;
        };
        let mut byte = [0];
        self.open_segment(base)
            .and_then(|f| f.read_exact_at(&mut byte, offset - 1 - base))
            .is_ok_and(|()| byte[0] == b'\n')
    }

    /// Counts the events (lines) between two offsets.
    pub fn count_lines(&self, mut from: u64, to: u64) -> io::Result<u64> {
        let mut count = 0;
        let mut buf = vec![0; 1024 * 1024];
        while from < to {
            let Some((base, next)) = self.locate(from) else {
                break;
            };
            let limit = to.min(next.unwrap_or(u64::MAX));
            let file = self.open_segment(base)?;
            while from < limit {
                let n = ((limit - from) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], from - base)?;
                count += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                from += n as u64;
            }
        }
        Ok(count)
    }
}

impl Writer {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Where the next append starts (everything before it is synced).
    pub fn end(&self) -> u64 {
        self.base + self.len
    }

    /// Writes `parts` as one group and syncs it; on failure nothing of it
    /// counts (the partial write is cut off). Readers see it once synced.
    /// Blocking: call from a blocking thread.
    pub fn write_synced<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), String> {
        if self.broken {
            return Err("the journal is unusable since an earlier sync failure".into());
        }
        let mut total = 0u64;
        let written = parts.into_iter().try_for_each(|p| {
            total += p.len() as u64;
            self.file.write_all(p)
        });
        if let Err(e) = written {
            // Cut the partial group off so the next one starts clean.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(format!("journal write: {e}"));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the file's state is unknown: stop.
            self.broken = true;
            return Err(format!("journal sync: {e}"));
        }
        self.len += total;
        self.shared.durable.send_replace(self.base + self.len);
        if self.len >= self.segment_bytes
            && let Err(e) = self.roll()
        {
            warn!(error = %e, "journal: cannot start a new segment; the current one grows");
        }
        Ok(())
    }

    /// Starts a new segment at the current end.
    fn roll(&mut self) -> io::Result<()> {
        let base = self.base + self.len;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(segment_path(&self.shared.dir, base))?;
        sync_dir(&self.shared.dir)?;
        self.shared.segments().insert(base);
        self.file = file;
        self.base = base;
        self.len = 0;
        Ok(())
    }

    /// Appends requests until every sender is gone: all that are waiting
    /// go into one write and one sync.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Append>) {
        let mut group = Vec::with_capacity(256);
        while requests.recv_many(&mut group, 1024).await > 0 {
            let batch = std::mem::take(&mut group);
            let (writer, batch, result) = tokio::task::spawn_blocking(move || {
                let result = self.write_synced(batch.iter().map(|a| a.bytes.as_slice()));
                (self, batch, result)
            })
            .await
            .expect("journal writer does not panic");
            self = writer;
            if let Err(e) = &result {
                error!(error = %e, requests_refused = batch.len(), "journal: cannot store accepted requests; they are answered 503");
            }
            for append in batch {
                let _ = append.done.send(result.clone());
            }
        }
    }
}
