//! `stdout`: one structured-mode CloudEvent JSON per line.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Delivery, Item, Sink, write_json_lines};
use crate::BoxFuture;

/// `stdout: {}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdoutConfig {}

pub struct StdoutSink {
    /// Stdout and the line buffer; one delivery writes at a time.
    out: Mutex<(tokio::io::Stdout, Vec<u8>)>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            out: Mutex::new((tokio::io::stdout(), Vec::new())),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            let mut guard = self.out.lock().await;
            let (out, buf) = &mut *guard;
            write_json_lines(items, buf);
            let written = async {
                out.write_all(buf).await?;
                out.flush().await
            };
            match written.await {
                Ok(()) => Delivery::Delivered,
                Err(e) => Delivery::retry(format!("cannot write to stdout: {e}")),
            }
        })
    }

    fn wants_event(&self) -> bool {
        false
    }
}
