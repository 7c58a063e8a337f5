//! Where the stream is, exactly: Nomad numbers events by Raft index and
//! several events can share one index, so a position is `{index, events}`:
//! every event before `index` is finished, and the first `events` of
//! `index` (in stream order, under this source's filter) are too.
//!
//! Nomad starts a stream *at* the requested index (inclusive), so a resume
//! asks for `index` again and skips its first `events`. If that index has
//! left Nomad's bounded buffer, Nomad starts at the oldest one it still has
//! instead: the first frame then has a higher index, and what lay between
//! is gone (Nomad has no history API). That is a [`Gap`].

use serde_json::{Value, json};

/// A position in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub index: u64,
    /// Events of `index` already taken.
    pub events: u64,
}

impl Cursor {
    pub fn to_json(self) -> Value {
        json!({"index": self.index, "events": self.events})
    }

    /// A persisted position; `None` if it is not one of ours.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            index: v.get("index")?.as_u64()?,
            events: v.get("events")?.as_u64()?,
        })
    }
}

/// Events that may have been lost: the stream resumed past `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub after: Cursor,
    /// The first index Nomad sent instead of `after.index`.
    pub first_index: u64,
}

/// What to do with one frame of `len` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// Its first `skip` events were taken before.
    pub skip: usize,
    pub gap: Option<Gap>,
    /// A frame below the position (skipped): a server whose buffer lags
    /// behind the position (catching up, restarted), or Nomad's indexes
    /// went back (a new cluster at the same address) — worth a warning.
    pub stale: bool,
}

/// The reader's state across connections.
#[derive(Debug, Clone)]
pub struct Resume {
    last: Option<Cursor>,
    /// No frame at or past the position yet on this connection (the gap
    /// check is pending).
    awaiting_first: bool,
}

impl Resume {
    /// Starting from a persisted cursor (or from Nomad's oldest buffered
    /// event when there is none).
    pub fn new(last: Option<Cursor>) -> Self {
        Self {
            last,
            awaiting_first: last.is_some(),
        }
    }

    /// The last event taken.
    pub fn last(&self) -> Option<Cursor> {
        self.last
    }

    /// The `index` query parameter for a new connection (0: the oldest
    /// buffered event).
    pub fn request_index(&self) -> u64 {
        self.last.map_or(0, |c| c.index)
    }

    /// A new connection starts: check its first frame again.
    pub fn connecting(&mut self) {
        self.awaiting_first = self.last.is_some();
    }

    /// Decides about a frame (not a heartbeat) at `index` with `len` events.
    pub fn frame(&mut self, index: u64, len: usize) -> Plan {
        let Some(last) = self.last else {
            self.awaiting_first = false;
            return Plan::default();
        };
        if index < last.index {
            // Nomad sends its newest frame first when the requested index is
            // past it (a server whose buffer lags behind), then catches up:
            // taken long ago. The gap check waits for a frame at or past
            // the position.
            return Plan {
                skip: len,
                gap: None,
                stale: true,
            };
        }
        let first = std::mem::replace(&mut self.awaiting_first, false);
        if index == last.index {
            let skip = usize::try_from(last.events).unwrap_or(usize::MAX).min(len);
            return Plan {
                skip,
                ..Plan::default()
            };
        }
        Plan {
            gap: first.then_some(Gap {
                after: last,
                first_index: index,
            }),
            ..Plan::default()
        }
    }

    /// The `n`-th event (from 1) of `index` was handed over.
    pub fn taken(&mut self, index: u64, n: u64) {
        self.last = Some(Cursor { index, events: n });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(index: u64, events: u64) -> Cursor {
        Cursor { index, events }
    }

    fn skip(n: usize) -> Plan {
        Plan {
            skip: n,
            ..Plan::default()
        }
    }

    #[test]
    fn first_start_takes_everything_from_the_oldest_event() {
        let mut r = Resume::new(None);
        assert_eq!(r.request_index(), 0);
        assert_eq!(r.frame(40, 3), Plan::default());
    }

    #[test]
    fn resume_inside_an_index_skips_exactly_the_finished_events() {
        let mut r = Resume::new(Some(c(12, 2)));
        assert_eq!(r.request_index(), 12);
        // Nomad sends index 12 again: its first two events were finished.
        assert_eq!(r.frame(12, 5), skip(2));
        r.taken(12, 3);
        r.taken(12, 5);
        assert_eq!(r.frame(13, 1), Plan::default());
    }

    #[test]
    fn resume_after_a_whole_index_skips_all_of_it() {
        let mut r = Resume::new(Some(c(12, 5)));
        assert_eq!(r.frame(12, 5), skip(5));
        assert_eq!(r.frame(14, 2), Plan::default());
    }

    #[test]
    fn a_first_frame_past_the_resume_index_is_a_gap() {
        let mut r = Resume::new(Some(c(12, 1)));
        let plan = r.frame(30, 2);
        assert_eq!(
            plan,
            Plan {
                gap: Some(Gap {
                    after: c(12, 1),
                    first_index: 30
                }),
                ..Plan::default()
            }
        );
        // Reported once per connection.
        r.taken(30, 2);
        assert_eq!(r.frame(31, 1).gap, None);
    }

    #[test]
    fn every_connection_is_checked_again() {
        let mut r = Resume::new(None);
        r.frame(5, 1);
        r.taken(5, 1);
        r.connecting();
        assert_eq!(r.request_index(), 5);
        assert_eq!(r.frame(5, 1), skip(1));
        r.connecting();
        assert!(r.frame(9, 1).gap.is_some());
    }

    fn stale(n: usize) -> Plan {
        Plan {
            skip: n,
            stale: true,
            ..Plan::default()
        }
    }

    #[test]
    fn older_frames_are_skipped_and_do_not_settle_the_gap_check() {
        let mut r = Resume::new(Some(c(20, 1)));
        assert_eq!(r.frame(17, 4), stale(4));
        assert_eq!(r.frame(18, 1), stale(1));
        assert!(r.frame(25, 1).gap.is_some());
    }

    #[test]
    fn a_lagging_server_catching_up_to_the_position_is_no_gap() {
        let mut r = Resume::new(Some(c(20, 1)));
        assert_eq!(r.frame(17, 1), stale(1));
        assert_eq!(r.frame(19, 1), stale(1));
        assert_eq!(r.frame(20, 3), skip(1));
        assert_eq!(r.frame(22, 1), Plan::default());
    }

    #[test]
    fn a_resume_frame_with_fewer_events_than_taken_is_skipped_whole() {
        let mut r = Resume::new(Some(c(8, 4)));
        assert_eq!(r.frame(8, 2), skip(2));
    }

    #[test]
    fn positions_round_trip() {
        let p = c(7, 3);
        assert_eq!(Cursor::from_json(&p.to_json()), Some(p));
        assert_eq!(Cursor::from_json(&json!({"stream": 1, "offset": 2})), None);
    }
}
