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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Where the rule is written: `route.routes[1].match[0]`.
    place: Arc<str>,
    /// Events this rule matched (shared by clones of the tree).
    hits: Arc<AtomicU64>,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// A `drop` rule: the event stops at this route.
    Drop,
    /// A `match` rule.
    Match,
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
        if let Some(rule) = self.drop.iter().find(|r| r.matches(event)) {
            rule.hits.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut all = true;
        for rule in &self.matches {
            if rule.matches(event) {
                rule.hits.fetch_add(1, Ordering::Relaxed);
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

    /// Calls `f` with every rule's place, kind and match count.
    pub fn rule_counts(&self, f: &mut dyn FnMut(&str, RuleKind, u64)) {
        self.root.visit(&mut |rule, kind| {
            f(&rule.place, kind, rule.hits.load(Ordering::Relaxed));
        });
    }

    /// Continues the match counts of `old`'s rules in the rules written at
    /// the same place (a reload keeps counters monotonic).
    pub fn inherit_counts(&mut self, old: &RouteTree) {
        let mut counters = HashMap::new();
        old.root.visit(&mut |rule, kind| {
            counters.insert((rule.place.clone(), kind), rule.hits.clone());
        });
        self.root.visit_mut(&mut |rule, kind| {
            if let Some(hits) = counters.get(&(rule.place.clone(), kind)) {
                rule.hits = hits.clone();
            }
        });
    }
}

impl Node {
    fn visit(&self, f: &mut dyn FnMut(&Rule, RuleKind)) {
        self.drop.iter().for_each(|r| f(r, RuleKind::Drop));
        self.matches.iter().for_each(|r| f(r, RuleKind::Match));
        self.routes.iter().for_each(|n| n.visit(f));
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Rule, RuleKind)) {
        self.drop.iter_mut().for_each(|r| f(r, RuleKind::Drop));
        self.matches.iter_mut().for_each(|r| f(r, RuleKind::Match));
        self.routes.iter_mut().for_each(|n| n.visit_mut(f));
    }
}
