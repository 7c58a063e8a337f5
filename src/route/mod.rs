//! The route tree (kubernetes-event-exporter semantics), compiled once.
//!
//! At a route: if any `drop` rule matches, stop. Each `match` rule that
//! matches and names a receiver sends the event there. If every `match` rule
//! matched (or there are none), each child route is processed in order. An
//! event reaches each receiver at most once.
//!
//! A rule's conditions are path patterns and, optionally, a CEL expression
//! (`expr:`, see [`expr`]), all of which must hold.

mod compile;
pub mod config;
pub mod expr;
mod pattern;
mod rule_de;
#[cfg(test)]
mod tests;

pub use compile::compile;
pub use config::{PatternValue, RouteConfig, RuleConfig};
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
    /// What `event` is in CEL expressions.
    view: expr::View,
    /// Whether any rule has an expression (else no view is ever built).
    has_exprs: bool,
    /// The members of NVSentinel's `event` the expressions read.
    fields: expr::Fields,
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
    /// A CEL expression that must hold too.
    expr: Option<expr::Expr>,
    /// Where the rule is written: `route.routes[1].match[0]`.
    place: Arc<str>,
    /// Events this rule matched (shared by clones of the tree).
    hits: Arc<AtomicU64>,
    /// Evaluation errors of `expr` (shared by clones of the tree).
    errors: Arc<AtomicU64>,
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

/// One event being routed, with its CEL view built on first use.
struct Routed<'a> {
    event: &'a Event,
    kind: expr::View,
    fields: expr::Fields,
    view: Option<expr::Bound<'a>>,
}

impl Rule {
    /// Whether the rule holds. `fail_open` is what an expression that
    /// cannot be evaluated counts as: the answer that lets the event on
    /// (false for a drop rule, true for a match rule).
    #[inline]
    fn matches(&self, e: &mut Routed<'_>, fail_open: bool) -> bool {
        let paths = self
            .conditions
            .iter()
            .all(|c| c.path.any(e.event, &mut |v| c.pattern.is_match(v)));
        if !paths {
            return false;
        }
        let Some(x) = &self.expr else {
            return true;
        };
        let view = e
            .view
            .get_or_insert_with(|| expr::view(e.kind, e.event, e.fields));
        match x.eval(view) {
            Ok(b) => b,
            Err(reason) => {
                let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
                // The first failure of a rule and then one in 10,000: enough
                // to see, not a log line per event.
                if n == 1 || n.is_multiple_of(10_000) {
                    use crate::event::AttributesReader;
                    tracing::warn!(
                        rule = %self.place,
                        event_id = %e.event.id(),
                        errors = n,
                        "CEL expression failed ({reason}); the event goes on as if the rule did not stop it"
                    );
                }
                fail_open
            }
        }
    }
}

impl Node {
    /// Appends the receivers the event reaches here to `out`, each once
    /// among `out[from..]` (what is before `from` belongs to other events).
    fn process(&self, e: &mut Routed<'_>, out: &mut Vec<ReceiverId>, from: usize) {
        if let Some(rule) = self.drop.iter().find(|r| r.matches(e, false)) {
            rule.hits.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut all = true;
        for rule in &self.matches {
            if rule.matches(e, true) {
                rule.hits.fetch_add(1, Ordering::Relaxed);
                if let Some(r) = rule.receiver
                    && !out[from..].contains(&r)
                {
                    out.push(r);
                }
            } else {
                all = false;
            }
        }
        if all {
            for child in &self.routes {
                child.process(e, out, from);
            }
        }
    }
}

impl RouteTree {
    /// Fills `out` with the receivers `event` goes to, in order of first
    /// delivery. Reuse `out` across calls: routing then allocates nothing.
    pub fn route(&self, event: &Event, out: &mut Vec<ReceiverId>) {
        out.clear();
        self.route_into(event, out);
    }

    /// [`RouteTree::route`] appending to what `out` holds already (the
    /// receivers of earlier events, kept).
    pub fn route_into(&self, event: &Event, out: &mut Vec<ReceiverId>) {
        let mut e = Routed {
            event,
            kind: self.view,
            fields: self.fields,
            view: None,
        };
        self.root.process(&mut e, out, out.len());
    }

    /// The `data` paths the rules read, when they can be known: every
    /// condition's path, and for CEL expressions in NVSentinel's view the
    /// members of `data.healthEvent` they read. `None` when an expression
    /// sees the whole CloudEvent (it may read any of it). Routing needs
    /// only these parts of an event's data.
    pub fn data_paths(&self) -> Option<crate::event::DataPaths> {
        let mut paths = Vec::new();
        if self.has_exprs {
            if self.view != expr::View::Nvsentinel {
                return None;
            }
            for name in self.fields.names() {
                let path = FieldPath::parse(&format!("data.healthEvent.{name}"))
                    .expect("NVSentinel's members are valid paths");
                paths.push(path);
            }
        }
        self.root.visit(&mut |rule, _| {
            paths.extend(rule.conditions.iter().map(|c| c.path.clone()));
        });
        Some(crate::event::DataPaths::new(&paths))
    }

    /// Whether any rule holds a CEL expression.
    pub fn has_exprs(&self) -> bool {
        self.has_exprs
    }

    /// CEL evaluation errors of every rule so far (each failed open).
    pub fn expr_errors(&self) -> u64 {
        let mut n = 0;
        self.root
            .visit(&mut |rule, _| n += rule.errors.load(Ordering::Relaxed));
        n
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
            counters.insert(
                (rule.place.clone(), kind),
                (rule.hits.clone(), rule.errors.clone()),
            );
        });
        self.root.visit_mut(&mut |rule, kind| {
            if let Some((hits, errors)) = counters.get(&(rule.place.clone(), kind)) {
                rule.hits = hits.clone();
                rule.errors = errors.clone();
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
