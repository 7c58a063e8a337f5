//! The Kubernetes source's position: per watched namespace, the
//! `resourceVersion` to watch from and what was delivered (object uid →
//! its `resourceVersion` and occurrence), so a relist after `410 Gone`
//! skips what was already sent.
//!
//! Records carry only a sequence number (`{"seq": n}`); the changes they
//! make wait in a [`Journal`] until the pipeline saves the position of
//! record `n` (every record up to it finished), when the store applies
//! them and writes the whole state. So the persisted state never claims an
//! unfinished delivery, and a record does not clone a map.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::BoxFuture;
use crate::source::Position;
use crate::state::{FileStore, PositionStore, StateError};

/// What was delivered of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Its `resourceVersion` when delivered.
    pub rv: String,
    /// Its occurrence: the Event's count (a count bump is a new delivery);
    /// 0 for objects delivered once (health events).
    pub n: u64,
}

/// One watched namespace (`""`: all namespaces).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    /// Watch from here; none: list first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// By object uid.
    #[serde(default)]
    pub delivered: HashMap<String, Seen>,
}

/// The persisted position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub scopes: BTreeMap<String, Scope>,
}

impl State {
    pub fn from_json(v: Option<&Value>) -> Result<Self, String> {
        match v {
            None => Ok(Self::default()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| format!("the persisted Kubernetes position is unreadable: {e}")),
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Delivered { scope, uid, seen } => {
                let s = self.scopes.entry(scope).or_default();
                s.resource_version = Some(seen.rv.clone());
                s.delivered.insert(uid, seen);
            }
            Change::Watched { scope, rv } => {
                self.scopes.entry(scope).or_default().resource_version = Some(rv);
            }
            Change::ListItem { scope, uid, seen } => {
                self.scopes
                    .entry(scope)
                    .or_default()
                    .delivered
                    .insert(uid, seen);
            }
            Change::Deleted { scope, uid, rv } => {
                let s = self.scopes.entry(scope).or_default();
                s.delivered.remove(&uid);
                s.resource_version = Some(rv);
            }
            Change::Listed { scope, keep, rv } => {
                let s = self.scopes.entry(scope).or_default();
                s.delivered.retain(|uid, _| keep.contains(uid));
                s.resource_version = Some(rv);
            }
        }
    }
}

/// A change a record makes to the [`State`] once it is finished.
#[derive(Debug, Clone)]
pub enum Change {
    /// An object seen by the watch (delivered or not): remember it and
    /// watch on from its version.
    Delivered {
        scope: String,
        uid: String,
        seen: Seen,
    },
    /// An object of a list: remember it; the list's own version comes with
    /// [`Change::Listed`].
    ListItem {
        scope: String,
        uid: String,
        seen: Seen,
    },
    /// A bookmark, or a skipped modification: watch on from `rv`.
    Watched { scope: String, rv: String },
    /// The object is gone: forget it.
    Deleted {
        scope: String,
        uid: String,
        rv: String,
    },
    /// A list ended: forget objects not in it, watch from its version.
    Listed {
        scope: String,
        keep: Arc<HashSet<String>>,
        rv: String,
    },
}

/// Changes not yet persisted, by record sequence number.
#[derive(Debug, Default)]
pub struct Journal {
    next: u64,
    pending: VecDeque<(u64, Change)>,
    state: State,
}

impl Journal {
    pub fn new(state: State) -> Self {
        Self {
            next: 0,
            pending: VecDeque::new(),
            state,
        }
    }

    /// Queues a change; the position to give the record that makes it.
    pub fn push(&mut self, change: Change) -> Position {
        let seq = self.next;
        self.next += 1;
        self.pending.push_back((seq, change));
        Position::Json(json!({ "seq": seq }))
    }

    /// Applies every change up to `seq`; the state to persist.
    pub fn finish(&mut self, seq: u64) -> &State {
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            let (_, change) = self.pending.pop_front().expect("front exists");
            self.state.apply(change);
        }
        &self.state
    }
}

/// The state file, written through the journal.
pub struct JournalStore {
    pub file: FileStore,
    pub journal: Arc<Mutex<Journal>>,
}

impl PositionStore for JournalStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<Value>, StateError>> {
        self.file.load()
    }

    fn save<'a>(&'a self, position: &'a Value) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let Some(seq) = position.get("seq").and_then(Value::as_u64) else {
                return Err(StateError::Remote(format!(
                    "not a Kubernetes source position: {position}"
                )));
            };
            let state = {
                let mut journal = self.journal.lock().expect("journal lock");
                serde_json::to_value(journal.finish(seq)).expect("state serialises")
            };
            self.file.save(&state).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(rv: &str, n: u64) -> Seen {
        Seen { rv: rv.into(), n }
    }

    #[test]
    fn only_finished_changes_reach_the_state() {
        let mut j = Journal::new(State::default());
        let scope = String::new();
        j.push(Change::Delivered {
            scope: scope.clone(),
            uid: "a".into(),
            seen: seen("5", 1),
        });
        j.push(Change::Delivered {
            scope: scope.clone(),
            uid: "b".into(),
            seen: seen("6", 1),
        });
        let p = j.push(Change::Deleted {
            scope: scope.clone(),
            uid: "a".into(),
            rv: "7".into(),
        });
        assert_eq!(p.to_json(), json!({"seq": 2}));
        let s = j.finish(0).clone();
        assert_eq!(s.scopes[""].resource_version.as_deref(), Some("5"));
        assert_eq!(s.scopes[""].delivered.len(), 1);
        let s = j.finish(2).clone();
        assert_eq!(s.scopes[""].resource_version.as_deref(), Some("7"));
        assert_eq!(s.scopes[""].delivered.keys().collect::<Vec<_>>(), ["b"]);
        // Round trip through the persisted form.
        let back = State::from_json(Some(&serde_json::to_value(&s).unwrap())).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_list_forgets_objects_it_no_longer_holds() {
        let mut j = Journal::new(State::default());
        for uid in ["a", "b", "c"] {
            j.push(Change::Delivered {
                scope: "ns".into(),
                uid: uid.into(),
                seen: seen("1", 1),
            });
        }
        j.push(Change::ListItem {
            scope: "ns".into(),
            uid: "d".into(),
            seen: seen("9", 2),
        });
        j.push(Change::Listed {
            scope: "ns".into(),
            keep: Arc::new(["b".to_owned(), "d".to_owned()].into()),
            rv: "10".into(),
        });
        let s = j.finish(10);
        let mut uids: Vec<_> = s.scopes["ns"].delivered.keys().cloned().collect();
        uids.sort();
        assert_eq!(uids, ["b", "d"]);
        assert_eq!(s.scopes["ns"].resource_version.as_deref(), Some("10"));
    }

    #[test]
    fn an_unreadable_position_is_an_error() {
        let err = State::from_json(Some(&json!({"scopes": 3}))).unwrap_err();
        assert!(err.contains("unreadable"), "{err}");
    }
}
