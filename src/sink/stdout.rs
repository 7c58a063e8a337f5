//! `stdout`: one structured-mode CloudEvent JSON per line.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::{Delivery, Sink, write_json_lines};
use crate::BoxFuture;
use crate::event::Event;

pub struct StdoutSink {
    out: tokio::io::Stdout,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            out: tokio::io::stdout(),
            buf: Vec::new(),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn deliver<'a>(&'a mut self, events: &'a [Arc<Event>]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            write_json_lines(events, &mut self.buf);
            let written = async {
                self.out.write_all(&self.buf).await?;
                self.out.flush().await
            };
            match written.await {
                Ok(()) => Delivery::Delivered,
                Err(e) => Delivery::Retry(format!("cannot write to stdout: {e}")),
            }
        })
    }
}
