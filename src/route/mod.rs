//! The route tree (kubernetes-event-exporter semantics), compiled once.
//!
//! At a route: if any `drop` rule matches, stop. Each `match` rule that
//! matches and names a receiver sends the event there. If every `match` rule
//! matched (or there are none), each child route is processed in order. An
//! event reaches each receiver at most once.

mod compile;
mod pattern;
#[cfg(test)]
mod tests;

pub use compile::compile;
pub use pattern::Pattern;

use crate::event::{Event, FieldPath};

/// Index of a receiver in the compiled configuration.
pub type ReceiverId = usize;

/// A compiled route tree.
#[derive(Debug, Clone, Default)]
pub struct RouteTree {
    root: Node,
}

#[derive(Debug, Clone, Default)]
struct Node {
    drop: Vec<Rule>,
    matches: Vec<Rule>,
    routes: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Rule {
    conditions: Box<[Condition]>,
    receiver: Option<ReceiverId>,
}

#[derive(Debug, Clone)]
struct Condition {
    path: FieldPath,
    pattern: Pattern,
}

impl Rule {
    #[inline]
    fn matches(&self, event: &Event) -> bool {
        self.conditions
            .iter()
            .all(|c| c.path.any(event, &mut |v| c.pattern.is_match(v)))
    }
}

impl Node {
    fn process(&self, event: &Event, out: &mut Vec<ReceiverId>) {
        if self.drop.iter().any(|r| r.matches(event)) {
            return;
        }
        let mut all = true;
        for rule in &self.matches {
            if rule.matches(event) {
                if let Some(r) = rule.receiver
                    && !out.contains(&r)
                {
                    out.push(r);
                }
            } else {
                all = false;
            }
        }
        if all {
            for child in &self.routes {
                child.process(event, out);
            }
        }
    }
}

impl RouteTree {
    /// Fills `out` with the receivers `event` goes to, in order of first
    /// delivery. Reuse `out` across calls: routing then allocates nothing.
    pub fn route(&self, event: &Event, out: &mut Vec<ReceiverId>) {
        out.clear();
        self.root.process(event, out);
    }
}
