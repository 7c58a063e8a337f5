//! `file`: JSON lines appended to a file, flushed before a batch counts as
//! delivered, rotated by size: `path` → `path.1` → … → `path.N` (oldest
//! removed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::{Delivery, Sink, write_json_lines};
use crate::BoxFuture;
use crate::event::Event;

pub struct FileSink {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: Option<(File, u64)>,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn new(path: PathBuf, max_size: u64, max_files: u32) -> Self {
        Self {
            path,
            max_size,
            max_files,
            file: None,
            buf: Vec::new(),
        }
    }

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
    fn deliver<'a>(&'a mut self, events: &'a [Arc<Event>]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            write_json_lines(events, &mut self.buf);
            match self.write().await {
                Ok(()) => Delivery::Delivered,
                Err(e) => {
                    // Reopen on the next attempt: the file may have been removed.
                    self.file = None;
                    Delivery::Retry(format!("cannot write {}: {e}", self.path.display()))
                }
            }
        })
    }
}
