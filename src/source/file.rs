//! `source.file`: JSON lines from a file. The position is the byte offset
//! after the last finished line, with the file's inode (`stream`) so that a replaced
//! file is read from its start. With `follow`, lines appended later are read
//! too, across truncation (`>`) and rotation (rename + create).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::fs::File;
use tokio::io::{AsyncSeekExt, BufReader};
use tracing::{info, warn};

use super::lines::{Line, read_line};
use super::{Payload, Position, Record, Source, SourceContext, SourceError, SourceSpec};
use crate::BoxFuture;
use crate::config::common::{self, ByteSize, Diagnostics, Spanned, expanded, nonzero};

/// `source.file`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read, one record per line.
    pub path: Spanned<String>,
    /// Keep reading lines appended to the file (like `tail -F`), also across
    /// truncation and rotation. When false, the source ends at end of file.
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for new lines.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: common::Duration,
    /// The longest line accepted; a longer one is skipped and counted as malformed.
    #[serde(default = "super::lines::default_max_line")]
    pub max_line_bytes: ByteSize,
}

fn default_poll_interval() -> common::Duration {
    common::Duration(Duration::from_millis(250))
}

impl FileSourceConfig {
    pub(super) fn compile(&self, diags: &mut Diagnostics) -> Option<SourceSpec> {
        nonzero(self.poll_interval, "source.file.pollInterval", diags);
        Some(SourceSpec::File {
            path: PathBuf::from(expanded(&self.path, "source.file.path", diags)?),
            follow: self.follow,
            poll_interval: self.poll_interval.0,
            max_line_bytes: usize::try_from(self.max_line_bytes.0).unwrap_or(usize::MAX),
        })
    }
}

pub struct FileSource {
    pub path: PathBuf,
    pub follow: bool,
    pub poll_interval: Duration,
    pub max_line: usize,
}

impl Source for FileSource {
    fn position_store(
        &self,
        state: &crate::state::StateSpec,
    ) -> Result<Option<std::sync::Arc<dyn crate::state::PositionStore>>, crate::state::StateError>
    {
        let sanitized = super::file_key(&self.path.to_string_lossy());
        super::file_store(
            state,
            &format!("file-{}", sanitized.trim_start_matches('_')),
        )
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
        ctx.stats
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
                done: None,
            };
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                sent = ctx.out.send(record) => if sent.is_err() { return Ok(()) },
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    fn append(path: &std::path::Path, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    }

    async fn next(rx: &mut mpsc::Receiver<Record>) -> (String, Option<Position>) {
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a record in time")
            .expect("source running");
        match r.payload {
            Payload::Line(l) => (String::from_utf8(l).unwrap(), r.position),
            Payload::Invalid(reason) => (format!("invalid: {reason}"), r.position),
            Payload::Checkpoint => ("checkpoint".to_owned(), r.position),
        }
    }

    fn source(path: &std::path::Path, follow: bool) -> Box<FileSource> {
        Box::new(FileSource {
            path: path.to_owned(),
            follow,
            poll_interval: Duration::from_millis(10),
            max_line: 32,
        })
    }

    #[tokio::test]
    async fn follows_appends_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        append(&path, &["a1", "", "a2"]);
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source(&path, true).run(SourceContext {
            out: tx,
            shutdown: shutdown.clone(),
            start: None,
            stats: Default::default(),
        }));

        assert_eq!(next(&mut rx).await.0, "a1");
        let (line, position) = next(&mut rx).await;
        assert_eq!(line, "a2", "blank lines are skipped");
        let Some(Position::Offset { offset, .. }) = position else {
            panic!("file positions are offsets")
        };
        assert_eq!(offset, 7, "the offset is just past the line");

        // A partial line is not read until its newline arrives.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"a3-part")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err());
        append(&path, &["-rest"]);
        assert_eq!(next(&mut rx).await.0, "a3-part-rest");

        // Truncated in place: read from the start.
        std::fs::write(&path, "").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&path, &["b1"]);
        assert_eq!(next(&mut rx).await.0, "b1");

        // Rotated: renamed away, a new file created.
        std::fs::rename(&path, dir.path().join("in.jsonl.1")).unwrap();
        append(&path, &["c1"]);
        assert_eq!(next(&mut rx).await.0, "c1");

        // Too long: reported, not split.
        append(&path, &["x".repeat(40).as_str(), "c2"]);
        assert_eq!(
            next(&mut rx).await.0,
            "invalid: line at byte 3 is longer than 32 bytes"
        );
        assert_eq!(next(&mut rx).await.0, "c2");

        shutdown.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn resumes_from_a_saved_offset_unless_the_file_was_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        append(&path, &["one", "two", "three"]);
        let inode = std::fs::metadata(&path).unwrap().ino();
        let run = |start: Option<Value>| {
            let (tx, mut rx) = mpsc::channel(16);
            let src = source(&path, false);
            async move {
                src.run(SourceContext {
                    out: tx,
                    shutdown: CancellationToken::new(),
                    start,
                    stats: Default::default(),
                })
                .await
                .unwrap();
                let mut got = Vec::new();
                while let Some(r) = rx.recv().await {
                    if let Payload::Line(l) = r.payload {
                        got.push(String::from_utf8(l).unwrap());
                    }
                }
                got
            }
        };
        let saved = Position::Offset {
            stream: inode,
            offset: 4,
        }
        .to_json();
        assert_eq!(run(Some(saved)).await, ["two", "three"]);
        let other_file = Position::Offset {
            stream: inode + 1,
            offset: 4,
        }
        .to_json();
        assert_eq!(run(Some(other_file)).await, ["one", "two", "three"]);
        let beyond_end = Position::Offset {
            stream: inode,
            offset: 999,
        }
        .to_json();
        assert_eq!(run(Some(beyond_end)).await, ["one", "two", "three"]);

        let missing = source(&dir.path().join("nope.jsonl"), false);
        let (tx, _rx) = mpsc::channel(1);
        let err = missing
            .run(SourceContext {
                out: tx,
                shutdown: CancellationToken::new(),
                start: None,
                stats: Default::default(),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot open "), "{err}");
    }
}
