//! Dead letters: events a receiver rejected or could not take within its
//! retries, appended as JSON lines — the event (structured CloudEvent), the
//! receiver, the last error, the attempts, the first and last attempt time.
//! `switchyard deadletter replay` sends them again.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::config::common::Spanned;
use crate::event::Event;

/// `deadLetter: {file}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON lines: the event, receiver, last error, attempts, first and last
    /// attempt time. Created with its directory.
    pub file: Spanned<String>,
}

/// One line of a dead letter file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub event: Event,
    pub receiver: String,
    pub error: String,
    pub attempts: u32,
    pub first_attempt: String,
    pub last_attempt: String,
}

/// An append-only dead letter file.
pub struct DeadLetters {
    path: PathBuf,
    file: Mutex<Option<tokio::fs::File>>,
}

impl DeadLetters {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends entries for `events` and flushes them.
    pub async fn write(
        &self,
        receiver: &str,
        events: &[&Event],
        error: &str,
        attempts: u32,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> std::io::Result<()> {
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut buf = Vec::new();
        for event in events {
            let entry = serde_json::json!({
                "event": event,
                "receiver": receiver,
                "error": error,
                "attempts": attempts,
                "firstAttempt": stamp(first),
                "lastAttempt": stamp(last),
            });
            serde_json::to_writer(&mut buf, &entry).expect("JSON value serialises");
            buf.push(b'\n');
        }
        let mut file = self.file.lock().await;
        if file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await?;
            }
            *file = Some(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .await?,
            );
        }
        let f = file.as_mut().expect("opened above");
        let written = async {
            f.write_all(&buf).await?;
            f.flush().await
        };
        if let Err(e) = written.await {
            *file = None; // reopen next time
            return Err(e);
        }
        Ok(())
    }
}

/// Reads a dead letter file.
pub fn read(path: &Path) -> std::io::Result<Vec<Result<Entry, String>>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect())
}
