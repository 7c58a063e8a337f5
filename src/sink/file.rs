//! `file`: JSON lines appended to a file, flushed before a batch counts as
//! delivered, rotated by size: `path` → `path.1` → … → `path.N` (oldest
//! removed).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tracing::info;

use super::{Delivery, Item, ReceiverKind, Sink, write_json_lines};
use crate::BoxFuture;
use crate::config::common::{ByteSize, Diagnostics, Spanned, expanded};

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

impl FileSinkConfig {
    pub(super) fn compile(&self, place: &str, diags: &mut Diagnostics) -> Option<ReceiverKind> {
        if self.max_size.0 == 0 {
            diags.error(
                Some(self.path.referenced),
                format!("{place}.file.maxSize: must be greater than zero"),
            );
        }
        Some(ReceiverKind::File {
            path: PathBuf::from(expanded(&self.path, &format!("{place}.file.path"), diags)?),
            max_size: self.max_size.0,
            max_files: self.max_files,
        })
    }
}

pub struct FileSink {
    state: Mutex<FileState>,
}

/// The open file and its size; one delivery writes at a time.
struct FileState {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: Option<(File, u64)>,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn new(path: PathBuf, max_size: u64, max_files: u32) -> Self {
        Self {
            state: Mutex::new(FileState {
                path,
                max_size,
                max_files,
                file: None,
                buf: Vec::new(),
            }),
        }
    }
}

impl FileState {
    async fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            let size = f.metadata().await?.len();
            self.file = Some((f, size));
        }
        Ok(())
    }

    async fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.max_files == 0 {
            tokio::fs::remove_file(&self.path).await?;
        } else {
            let _ = tokio::fs::remove_file(numbered(&self.path, self.max_files)).await;
            for n in (1..self.max_files).rev() {
                match tokio::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1)).await
                {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            tokio::fs::rename(&self.path, numbered(&self.path, 1)).await?;
        }
        info!(path = %self.path.display(), "rotated file");
        self.open().await
    }

    async fn write(&mut self) -> std::io::Result<()> {
        self.open().await?;
        let size = self.file.as_ref().map_or(0, |(_, s)| *s);
        if size > 0 && size + self.buf.len() as u64 > self.max_size {
            self.rotate().await?;
        }
        let (file, size) = self.file.as_mut().expect("opened above");
        file.write_all(&self.buf).await?;
        file.flush().await?;
        *size += self.buf.len() as u64;
        Ok(())
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl Sink for FileSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            let mut buf = std::mem::take(&mut state.buf);
            write_json_lines(items, &mut buf);
            state.buf = buf;
            match state.write().await {
                Ok(()) => Delivery::Delivered,
                Err(e) => {
                    // Reopen on the next attempt: the file may have been removed.
                    state.file = None;
                    Delivery::retry(format!("cannot write {}: {e}", state.path.display()))
                }
            }
        })
    }

    fn wants_event(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    use std::sync::Arc;

    fn events(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let e = EventBuilderV10::new()
                    .id(format!("e{i}"))
                    .ty("t")
                    .source("s")
                    .data(
                        "application/json",
                        serde_json::json!({"pad": "x".repeat(100)}),
                    )
                    .build()
                    .unwrap();
                Item::new(Arc::new(crate::event::Encoded::new(e, false)))
            })
            .collect()
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let batch = events(4);
        let mut one = Vec::new();
        super::super::write_json_lines(&batch, &mut one);
        // Room for one batch per file.
        let sink = FileSink::new(path.clone(), one.len() as u64 + 10, 2);
        for _ in 0..5 {
            assert_eq!(sink.deliver(&batch).await, Delivery::Delivered);
        }
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            let l = lines(&p);
            assert_eq!(l.len(), 4, "{} holds whole batches", p.display());
            assert!(
                l.iter()
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            );
        }
        assert!(
            !numbered(&path, 3).exists(),
            "only maxFiles rotated files are kept"
        );
    }

    #[tokio::test]
    async fn appends_to_an_existing_file_and_retries_when_unwritable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let sink = FileSink::new(path.clone(), 1 << 20, 1);
        assert_eq!(sink.deliver(&events(2)).await, Delivery::Delivered);
        assert_eq!(lines(&path).len(), 3);

        let blocked = dir.path().join("blocked.jsonl");
        std::fs::create_dir(&blocked).unwrap();
        let sink = FileSink::new(blocked.clone(), 1 << 20, 1);
        match sink.deliver(&events(1)).await {
            Delivery::Retry { reason, .. } => assert!(reason.contains("blocked.jsonl"), "{reason}"),
            other => panic!("expected a retry, got {other:?}"),
        }
        std::fs::remove_dir(&blocked).unwrap();
        assert_eq!(sink.deliver(&events(1)).await, Delivery::Delivered);
    }
}
