//! Receivers (sinks). A sink takes a batch of events and answers with one
//! [`Delivery`]: delivered, retry later, or rejected for good. The pipeline
//! owns queues, batching, retries and acknowledgements; a sink only delivers.

mod file;
mod stdout;

use std::sync::Arc;

use crate::BoxFuture;
use crate::config::{ReceiverKind, ReceiverSpec};
use crate::event::Event;

pub use file::FileSink;
pub use stdout::StdoutSink;

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver has the events.
    Delivered,
    /// A transient failure: try the same events again later.
    Retry(String),
    /// The receiver will never accept these events.
    Reject(String),
}

/// A receiver.
pub trait Sink: Send {
    fn deliver<'a>(&'a mut self, events: &'a [Arc<Event>]) -> BoxFuture<'a, Delivery>;
}

/// Builds the sink for a receiver.
pub fn build(spec: &ReceiverSpec) -> Box<dyn Sink> {
    match &spec.kind {
        ReceiverKind::Stdout => Box::new(StdoutSink::new()),
        ReceiverKind::File {
            path,
            max_size,
            max_files,
        } => Box::new(FileSink::new(path.clone(), *max_size, *max_files)),
    }
}

/// Serialises a batch as JSON lines (structured-mode CloudEvents) into `buf`.
pub fn write_json_lines(events: &[Arc<Event>], buf: &mut Vec<u8>) {
    buf.clear();
    for event in events {
        crate::event::write_json(event, buf);
        buf.push(b'\n');
    }
}
