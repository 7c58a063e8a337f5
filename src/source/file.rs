//! `source.file`: JSON lines from a file. The position is the byte offset
//! after the last finished line, with the file's inode (`stream`) so that a replaced
//! file is read from its start. With `follow`, lines appended later are read
//! too, across truncation (`>`) and rotation (rename + create).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::fs::File;
use tokio::io::{AsyncSeekExt, BufReader};
use tracing::{info, warn};

use super::lines::{Line, read_line};
use super::{Payload, Position, Record, Source, SourceContext, SourceError};
use crate::BoxFuture;

pub struct FileSource {
    pub path: PathBuf,
    pub follow: bool,
    pub poll_interval: Duration,
    pub max_line: usize,
}

impl Source for FileSource {
    fn position_key(&self) -> Option<String> {
        let sanitized: String = self
            .path
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(format!("file-{}", sanitized.trim_start_matches('_')))
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move { self.read(ctx).await })
    }
}

/// A position read back from the state store.
fn saved_position(start: &Option<Value>) -> Option<(u64, u64)> {
    let v = start.as_ref()?;
    Some((v.get("stream")?.as_u64()?, v.get("offset")?.as_u64()?))
}

impl FileSource {
    fn io(&self, what: &'static str, source: std::io::Error) -> SourceError {
        SourceError::Io {
            what,
            path: self.path.display().to_string(),
            source,
        }
    }

    async fn open(&self, ctx: &SourceContext) -> Result<Option<File>, SourceError> {
        loop {
            match File::open(&self.path).await {
                Ok(f) => return Ok(Some(f)),
                Err(e) if self.follow && e.kind() == std::io::ErrorKind::NotFound => {
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Err(e) => return Err(self.io("cannot open", e)),
            }
        }
    }

    async fn read(self, ctx: SourceContext) -> Result<(), SourceError> {
        let Some(file) = self.open(&ctx).await? else {
            return Ok(());
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| self.io("cannot stat", e))?;
        let mut inode = meta.ino();
        let mut offset = match saved_position(&ctx.start) {
            Some((saved_inode, off)) if saved_inode == inode && off <= meta.len() => off,
            Some(_) => {
                warn!(path = %self.path.display(), "file was replaced or truncated since the saved position; reading it from the start");
                0
            }
            None => 0,
        };
        if offset > 0 {
            info!(path = %self.path.display(), offset, "resuming file from saved position");
        }
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| self.io("cannot seek", e))?;
        let mut buf = Vec::new();

        while !ctx.shutdown.is_cancelled() {
            let line = read_line(&mut reader, &mut buf, self.max_line)
                .await
                .map_err(|e| self.io("cannot read", e))?;
            let payload = match line {
                Line::Complete { consumed } => {
                    offset += consumed as u64;
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    Payload::Line(std::mem::take(&mut buf))
                }
                Line::TooLong { consumed, .. } => {
                    offset += consumed as u64;
                    Payload::Invalid(format!(
                        "line at byte {} is longer than {} bytes",
                        offset - consumed as u64,
                        self.max_line
                    ))
                }
                Line::Eof { consumed } if consumed > 0 && !self.follow => {
                    offset += consumed as u64;
                    Payload::Line(std::mem::take(&mut buf))
                }
                Line::Eof { .. } if !self.follow => return Ok(()),
                Line::Eof { .. } => {
                    // Wait for more; a partial last line is read again whole.
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                    match tokio::fs::metadata(&self.path).await {
                        Ok(m) if m.ino() != inode => {
                            info!(path = %self.path.display(), "file was rotated; reading the new file");
                            let Some(f) = self.open(&ctx).await? else {
                                return Ok(());
                            };
                            inode = f
                                .metadata()
                                .await
                                .map_err(|e| self.io("cannot stat", e))?
                                .ino();
                            reader = BufReader::with_capacity(256 * 1024, f);
                            offset = 0;
                        }
                        Ok(m) if m.len() < offset => {
                            warn!(path = %self.path.display(), "file was truncated; reading it from the start");
                            offset = 0;
                        }
                        _ => {}
                    }
                    reader
                        .seek(std::io::SeekFrom::Start(offset))
                        .await
                        .map_err(|e| self.io("cannot seek", e))?;
                    continue;
                }
            };
            let record = Record {
                payload,
                position: Some(Position::Offset {
                    stream: inode,
                    offset,
                }),
            };
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                sent = ctx.out.send(record) => if sent.is_err() { return Ok(()) },
            }
        }
        Ok(())
    }
}
