//! Ordered acknowledgements. Every record gets a sequence number and the
//! number of receivers it went to; receivers finish records in any order,
//! and the committed position advances only over the longest prefix of
//! records that are all finished. A record may also carry its own
//! completion hook, called as soon as that record is finished (sources that
//! acknowledge each message rather than a position).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use crate::source::{Done, Position};

/// Tracks unfinished records and the position they hold back.
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
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
            inner.advance();
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
