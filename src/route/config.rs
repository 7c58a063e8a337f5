//! The YAML shape of the route tree (`route`): nodes with drop and match
//! rules and child routes; a rule's conditions keep their places
//! (`rule_de.rs` reads them). [`super::compile`] turns it into a
//! [`super::RouteTree`].

use serde::Deserialize;

use crate::config::common::Spanned;

/// A node of the route tree.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// If any of these rules matches, the event stops here.
    #[serde(default)]
    pub drop: Vec<RuleConfig>,
    /// Each matching rule that names a receiver sends the event to it; only
    /// if all match (or there are none) are the child routes processed.
    #[serde(default, rename = "match")]
    pub matches: Vec<RuleConfig>,
    /// Child routes, processed in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// A rule: `path: pattern` conditions that must all hold, plus an optional
/// CEL `expr` and an optional `receiver`. A nested map is shorthand for a longer path.
#[derive(Debug, Default)]
pub struct RuleConfig {
    /// The receiver this rule sends matching events to.
    pub receiver: Option<Spanned<String>>,
    /// A CEL expression that must hold as well (ANDed with the
    /// conditions); see `route::expr` for what `event` is.
    pub expr: Option<Spanned<String>>,
    /// The conditions, in file order.
    pub conditions: Vec<(String, Spanned<PatternValue>)>,
}

/// The right-hand side of a condition as written in YAML.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternValue {
    String(String),
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Null,
    Map(Vec<(String, Spanned<PatternValue>)>),
}
