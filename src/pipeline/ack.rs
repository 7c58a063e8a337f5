//! Ordered acknowledgements. Every record gets a sequence number and the
//! number of receivers it went to; receivers finish records in any order,
//! and the committed position advances only over the longest prefix of
//! records that are all finished.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use crate::source::Position;

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
}

impl Tracker {
    /// Registers the next record, which `receivers` receivers must finish.
    /// A record with no receivers is finished at once.
    pub fn begin(&self, receivers: u32, position: Option<Position>) -> u64 {
        let mut inner = self.inner.lock().expect("tracker lock");
        let seq = inner.base + inner.pending.len() as u64;
        inner.pending.push_back(Entry {
            remaining: receivers,
            position,
            begun: Instant::now(),
        });
        inner.advance();
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
        }
        inner.advance();
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
        let a = t.begin(2, at(10));
        let b = t.begin(1, at(20));
        let c = t.begin(1, at(30));
        assert_eq!(t.committed().0, None);
        t.finish(&[b, c]);
        assert_eq!(t.committed().0, None, "a is not finished yet");
        t.finish(&[a]);
        assert_eq!(t.committed().0, None, "a has a second receiver");
        t.finish(&[a]);
        assert_eq!(t.committed().0, at(30));
        assert_eq!(t.in_flight(), 0);
        let d = t.begin(0, at(40));
        assert_eq!(d, 3);
        assert_eq!(
            t.committed(),
            (at(40), 2),
            "unrouted records finish at once"
        );
    }
}
