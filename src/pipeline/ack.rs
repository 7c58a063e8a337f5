//! Ordered acknowledgements. Every record gets a sequence number and the
//! number of receivers it went to; receivers finish records in any order,
//! and the committed position advances only over the longest prefix of
//! records that are all finished. A record may also carry its own
//! completion hook, called as soon as that record is finished (sources that
//! acknowledge each message rather than a position).
//!
//! The records between the source and the position are bounded: with
//! `window` records unfinished, [`Tracker::room`] waits until the oldest
//! ones finish, so a receiver that never finishes one record stops the
//! source after `window` more instead of growing memory with the stream.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use crate::source::{Done, Position};

/// Tracks unfinished records and the position they hold back.
#[derive(Debug)]
pub struct Tracker {
    inner: Mutex<Inner>,
    /// At most this many records unfinished at once.
    window: usize,
    /// `inner.pending.len()`, readable without the lock.
    len: AtomicUsize,
    /// Wakes [`Tracker::room`] when the window has room again.
    freed: Notify,
}

/// Unbounded: for tests of the ordering alone.
impl Default for Tracker {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Sequence number of `pending[0]`.
    base: u64,
    pending: VecDeque<Entry>,
    /// Position after the last record of the finished prefix.
    committed: Option<Position>,
    /// Bumped whenever `committed` changes.
    version: u64,
}

#[derive(Debug)]
struct Entry {
    remaining: u32,
    position: Option<Position>,
    /// When the record was read.
    begun: Instant,
    /// Called when `remaining` reaches zero.
    done: Option<Done>,
}

impl Tracker {
    /// A tracker holding at most `window` unfinished records (at least 1).
    pub fn new(window: usize) -> Self {
        Self {
            inner: Mutex::default(),
            window: window.max(1),
            len: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// The window: how many records may be unfinished at once.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Waits until fewer than `window` records are unfinished; how many more
    /// may begin now. Cancel-safe.
    pub async fn room(&self) -> usize {
        loop {
            let len = self.len.load(Ordering::Acquire);
            if len < self.window {
                return self.window - len;
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the second look: a finish in between still
            // wakes us.
            freed.as_mut().enable();
            if self.len.load(Ordering::Acquire) < self.window {
                continue;
            }
            freed.await;
        }
    }

    /// Registers the next record, which `receivers` receivers must finish.
    /// A record with no receivers is finished at once.
    pub fn begin(&self, receivers: u32, position: Option<Position>, done: Option<Done>) -> u64 {
        let (seq, done) = {
            let mut inner = self.inner.lock().expect("tracker lock");
            let seq = inner.base + inner.pending.len() as u64;
            let (done, kept) = if receivers == 0 {
                (done, None)
            } else {
                (None, done)
            };
            inner.pending.push_back(Entry {
                remaining: receivers,
                position,
                begun: Instant::now(),
                done: kept,
            });
            inner.advance();
            self.len.store(inner.pending.len(), Ordering::Release);
            (seq, done)
        };
        if let Some(Done(hook)) = done {
            hook();
        }
        seq
    }

    /// The record `seq` (not yet finished by the caller) must be finished
    /// `extra` more times: a receiver's transform split its event.
    pub fn extend(&self, seq: u64, extra: u32) {
        let mut inner = self.inner.lock().expect("tracker lock");
        let index = seq
            .checked_sub(inner.base)
            .expect("extended a finished record") as usize;
        inner.pending[index].remaining += extra;
    }

    /// One receiver finished these records (delivered, rejected or dead-lettered).
    pub fn finish(&self, seqs: &[u64]) {
        let mut hooks = Vec::new();
        {
            let mut inner = self.inner.lock().expect("tracker lock");
            for &seq in seqs {
                let index = seq
                    .checked_sub(inner.base)
                    .expect("finished a record twice") as usize;
                let entry = &mut inner.pending[index];
                entry.remaining = entry
                    .remaining
                    .checked_sub(1)
                    .expect("finished a record twice");
                if entry.remaining == 0 {
                    hooks.extend(entry.done.take());
                }
            }
            let before = inner.pending.len();
            inner.advance();
            let after = inner.pending.len();
            self.len.store(after, Ordering::Release);
            if before >= self.window && after < self.window {
                self.freed.notify_waiters();
            }
        }
        // Outside the lock: a hook may take its time.
        for Done(hook) in hooks {
            hook();
        }
    }

    /// The committed position and its version (changes on every advance).
    pub fn committed(&self) -> (Option<Position>, u64) {
        let inner = self.inner.lock().expect("tracker lock");
        (inner.committed.clone(), inner.version)
    }

    /// When the oldest unfinished record was read: the committed position
    /// has been held back since then. `None` when every record is finished.
    pub fn oldest_unfinished(&self) -> Option<Instant> {
        let inner = self.inner.lock().expect("tracker lock");
        inner.pending.front().map(|e| e.begun)
    }

    /// Records registered but not yet finished by all their receivers.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().expect("tracker lock").pending.len()
    }
}

impl Inner {
    fn advance(&mut self) {
        let mut moved = false;
        while self.pending.front().is_some_and(|e| e.remaining == 0) {
            let entry = self.pending.pop_front().expect("front exists");
            self.base += 1;
            if entry.position.is_some() {
                self.committed = entry.position;
                moved = true;
            }
        }
        self.version += u64::from(moved);
    }
}

impl crate::telemetry::Progress for Tracker {
    fn in_flight(&self) -> usize {
        Tracker::in_flight(self)
    }

    fn window(&self) -> usize {
        Tracker::window(self)
    }

    fn oldest_unfinished(&self) -> Option<Instant> {
        Tracker::oldest_unfinished(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Option<Position> {
        Some(Position::Offset { stream: 1, offset })
    }

    #[test]
    fn advances_only_over_a_finished_prefix() {
        let t = Tracker::default();
        let a = t.begin(2, at(10), None);
        let b = t.begin(1, at(20), None);
        let c = t.begin(1, at(30), None);
        assert_eq!(t.committed().0, None);
        t.finish(&[b, c]);
        assert_eq!(t.committed().0, None, "a is not finished yet");
        t.finish(&[a]);
        assert_eq!(t.committed().0, None, "a has a second receiver");
        t.finish(&[a]);
        assert_eq!(t.committed().0, at(30));
        assert_eq!(t.in_flight(), 0);
        let d = t.begin(0, at(40), None);
        assert_eq!(d, 3);
        assert_eq!(
            t.committed(),
            (at(40), 2),
            "unrouted records finish at once"
        );
    }

    /// The window: `room` says how many may begin, waits while it is full,
    /// and wakes when the oldest record finishes — not when a later one
    /// does, since the position (and the window) waits for the oldest.
    #[tokio::test]
    async fn the_window_waits_for_the_oldest_record() {
        use std::sync::Arc;
        let t = Arc::new(Tracker::new(3));
        assert_eq!(t.room().await, 3);
        let a = t.begin(1, at(10), None);
        let b = t.begin(1, at(20), None);
        assert_eq!(t.room().await, 1);
        let c = t.begin(1, at(30), None);
        let waiting = tokio::spawn({
            let t = t.clone();
            async move { t.room().await }
        });
        tokio::task::yield_now().await;
        t.finish(&[b, c]);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a still holds the window");
        t.finish(&[a]);
        assert_eq!(waiting.await.unwrap(), 3);
        assert_eq!(t.committed().0, at(30));
    }

    #[test]
    fn a_record_is_done_when_its_own_receivers_finish() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hook = |name: &'static str| {
            let done = done.clone();
            Some(Done(Box::new(move || done.lock().unwrap().push(name))))
        };
        let t = Tracker::default();
        let a = t.begin(2, None, hook("a"));
        let b = t.begin(1, None, hook("b"));
        t.begin(0, None, hook("unrouted"));
        assert_eq!(*done.lock().unwrap(), ["unrouted"], "finished at once");
        t.finish(&[b, a]);
        assert_eq!(
            *done.lock().unwrap(),
            ["unrouted", "b"],
            "b is done although a, read before it, is not"
        );
        t.finish(&[a]);
        assert_eq!(*done.lock().unwrap(), ["unrouted", "b", "a"]);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let s = t.begin(
            1,
            None,
            Some(Done(Box::new(move || {
                c.fetch_add(1, Ordering::Relaxed);
            }))),
        );
        t.extend(s, 1);
        t.finish(&[s]);
        assert_eq!(
            calls.load(Ordering::Relaxed),
            0,
            "a split event is half done"
        );
        t.finish(&[s]);
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
