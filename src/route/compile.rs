//! [`RouteConfig`] → [`RouteTree`], collecting every error with its
//! place (`route.routes[1].match[0]`) and line.

use std::collections::HashMap;

use crate::config::common::{Diagnostics, Spanned};
use crate::event::{FieldPath, enums};

use super::config::{PatternValue, RouteConfig, RuleConfig};
use super::expr::{Expr, Fields, View};
use super::{Condition, Node, Pattern, ReceiverId, RouteTree, Rule};

/// Compiles the tree. `receivers` maps names to ids; every receiver a rule
/// names is recorded in `used`.
/// `view` is what `event` is in the rules' CEL expressions.
pub fn compile(
    config: &RouteConfig,
    receivers: &HashMap<&str, ReceiverId>,
    used: &mut Vec<bool>,
    view: View,
    diags: &mut Diagnostics,
) -> RouteTree {
    let mut cx = Cx {
        receivers,
        used,
        diags,
        exprs: 0,
        fields: Fields::default(),
    };
    let root = cx.node(config, "route");
    RouteTree {
        root,
        view,
        has_exprs: cx.exprs > 0,
        fields: cx.fields,
    }
}

struct Cx<'a> {
    receivers: &'a HashMap<&'a str, ReceiverId>,
    used: &'a mut Vec<bool>,
    diags: &'a mut Diagnostics,
    exprs: usize,
    /// What the expressions read of NVSentinel's `event`.
    fields: Fields,
}

impl Cx<'_> {
    fn node(&mut self, config: &RouteConfig, place: &str) -> Node {
        let drop = config
            .drop
            .iter()
            .enumerate()
            .map(|(i, r)| self.rule(r, &format!("{place}.drop[{i}]"), false))
            .collect();
        let matches = config
            .matches
            .iter()
            .enumerate()
            .map(|(i, r)| self.rule(r, &format!("{place}.match[{i}]"), true))
            .collect();
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| self.node(r, &format!("{place}.routes[{i}]")))
            .collect();
        Node {
            drop,
            matches,
            routes,
        }
    }

    fn rule(&mut self, config: &RuleConfig, place: &str, may_send: bool) -> Rule {
        let receiver = config.receiver.as_ref().and_then(|name| {
            if !may_send {
                self.diags.error(
                    Some(name.referenced),
                    format!("{place}: a drop rule cannot name a receiver"),
                );
                return None;
            }
            match self.receivers.get(name.value.as_str()) {
                Some(&id) => {
                    self.used[id] = true;
                    Some(id)
                }
                None => {
                    self.diags.error(
                        Some(name.referenced),
                        format!("{place}: unknown receiver {:?}", name.value),
                    );
                    None
                }
            }
        });
        let mut conditions = Vec::new();
        for (key, value) in &config.conditions {
            self.conditions(key, value, place, &mut conditions);
        }
        let expr = config.expr.as_ref().and_then(|x| self.expr(x, place));
        Rule {
            conditions: conditions.into(),
            receiver,
            expr,
            place: place.into(),
            hits: Default::default(),
            errors: Default::default(),
        }
    }

    /// Compiles `expr:`. An error is placed at the value, and says where in
    /// the expression the parser stopped.
    fn expr(&mut self, x: &Spanned<String>, place: &str) -> Option<Expr> {
        match Expr::compile(&x.value) {
            Ok(e) => {
                self.exprs += 1;
                self.fields = self.fields.union(e.fields());
                Some(e)
            }
            Err(e) => {
                let within = match e.at {
                    Some((line, col)) => format!(" (at {line}:{col} of the expression)"),
                    None => String::new(),
                };
                self.diags.error(
                    Some(x.referenced),
                    format!("{place}.expr: {}{within}", e.message),
                );
                None
            }
        }
    }

    /// Flattens nested maps (`data: {healthEvent: {nodeName: x}}`) into paths.
    fn conditions(
        &mut self,
        path: &str,
        value: &Spanned<PatternValue>,
        place: &str,
        out: &mut Vec<Condition>,
    ) {
        if let PatternValue::Map(fields) = &value.value {
            if fields.is_empty() {
                self.diags.error(
                    Some(value.referenced),
                    format!("{place}: {path}: empty map"),
                );
            }
            for (key, nested) in fields {
                self.conditions(&format!("{path}.{key}"), nested, place, out);
            }
            return;
        }
        let at = Some(value.referenced);
        let parsed = match FieldPath::parse(path) {
            Ok(p) => p,
            Err(e) => {
                self.diags.error(at, format!("{place}: {e}"));
                return;
            }
        };
        if parsed.is_extension() {
            self.diags.warning(
                at,
                format!(
                    "{place}: {path:?} is read as a CloudEvents extension attribute; event data is addressed as data.{path}"
                ),
            );
        }
        // NVSentinel's enums: a pattern accepts the member's number and name.
        let pattern = Pattern::compile(&value.value).map(|p| match enums::table_for(path) {
            Some(table) => p.over_enum(table),
            None => p,
        });
        match pattern {
            Ok(pattern) => out.push(Condition {
                path: parsed,
                pattern,
            }),
            Err(e) => self.diags.error(at, format!("{place}: {path}: {e}")),
        }
    }
}
