//! `switchyard deadletter replay`: dead-lettered events sent to their
//! receiver again, with its batch size and retry policy.

use crate::deadletter::Entry;
use crate::event::Encoded;
use crate::sink::{Delivery, Item, ReceiverSpec, Sink};

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replay {
    pub delivered: usize,
    /// Entries that failed again, with the new error.
    pub failed: Vec<(Entry, String)>,
}

/// Sends dead-lettered events to a receiver again, in its batch size, with
/// its retry policy (up to `maxRetries`).
pub async fn replay(spec: &ReceiverSpec, sink: &dyn Sink, entries: Vec<Entry>) -> Replay {
    let mut report = Replay::default();
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<Entry> = entries
            .by_ref()
            .take(spec.batch.max_events.max(1))
            .collect();
        let items: Vec<Item> = chunk
            .iter()
            .map(|e| Item::new(std::sync::Arc::new(Encoded::new(e.event.clone(), true))))
            .collect();
        let mut backoff = super::retry::Backoff::new(&spec.retry);
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            match sink.deliver(&items).await.overall() {
                Delivery::Delivered => break Ok(()),
                Delivery::Reject(reason) => break Err(format!("rejected: {reason}")),
                Delivery::Retry { reason, .. } if attempts > spec.retry.max_retries => {
                    break Err(reason);
                }
                Delivery::Retry { after, .. } => tokio::time::sleep(backoff.next(after)).await,
                Delivery::Each(_) => unreachable!("overall() folds per-event outcomes"),
            }
        };
        match outcome {
            Ok(()) => report.delivered += chunk.len(),
            Err(reason) => report
                .failed
                .extend(chunk.into_iter().map(|e| (e, reason.clone()))),
        }
    }
    report
}
