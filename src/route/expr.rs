//! CEL expressions in route rules (`expr:`), with the `cel` crate.
//!
//! Compiled once when the config loads; a syntax error, or an expression
//! that cannot be seen to return a boolean, is a config error. Evaluated
//! against one view of the event, built at most once per event however many
//! rules use CEL:
//!
//! - under the `nvsentinel` profile, `event` is exactly what NVSentinel's
//!   exporter filter binds (`commons/pkg/celevent`): `agent`, `checkName`,
//!   `componentClass`, `nodeName`, `message` (strings), `errorCode` (a list
//!   of strings), `isFatal`, `isHealthy` (bools), `recommendedAction` (the
//!   enum's **name**, whatever `mapping.enums` says) and `metadata` (a map),
//!   read from `data.healthEvent`;
//! - under the other profiles, `event` is the CloudEvent: its attributes,
//!   extensions and `data`.
//!
//! An evaluation error (a missing field, a type mismatch) fails open, as in
//! NVSentinel: the event goes on as if the rule had not stopped it — a `drop`
//! rule does not drop, a `match` rule matches — and the error is counted.

use std::sync::Arc;

use cel::common::ast::{Expr as Ast, IdedExpr, LiteralValue, operators};
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value};
use serde_json::Value as Json;

use crate::event::{Data, Event, enums};

/// What `event` means in an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// NVSentinel's filter variables (the `nvsentinel` profile).
    Nvsentinel,
    /// The CloudEvent's attributes, extensions and `data`.
    #[default]
    CloudEvent,
}

/// A compiled expression.
#[derive(Clone)]
pub struct Expr {
    program: Arc<Program>,
    env: Arc<Env>,
    source: Arc<str>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

/// Why an expression was refused; `at` is its 1-based line and column
/// within the expression, when the parser says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub at: Option<(u64, u64)>,
    pub message: String,
}

impl Expr {
    /// Parses `source` and checks that it returns a boolean.
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        let env = Arc::new(Env::stdlib());
        let program = env.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                at: first.and_then(|e| {
                    let (line, col) = e.pos;
                    (line >= 1 && col >= 0).then_some((line as u64, col as u64 + 1))
                }),
                message: first
                    .map(|e| {
                        let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
                        format!("CEL syntax error: {msg}")
                    })
                    .unwrap_or_else(|| "CEL syntax error".to_owned()),
            }
        })?;
        if !returns_bool(program.expression()) {
            return Err(CompileError {
                at: None,
                message: "CEL expression must return a boolean (a bare field read is untyped; compare it, for example `event.isFatal == true`)".to_owned(),
            });
        }
        Ok(Self {
            program: Arc::new(program),
            env,
            source: source.into(),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `view` (from [`view`]).
    pub fn eval(&self, view: &Value) -> Result<bool, String> {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("event", view.clone());
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("returned {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Whether an expression's result is a boolean whatever its operands are:
/// what cel-go's checker concludes for NVSentinel's `map(string, dyn)`
/// event, where a field read is `dyn` and refused.
fn returns_bool(e: &IdedExpr) -> bool {
    match &e.expr {
        Ast::Literal(LiteralValue::Boolean(_)) => true,
        // `has(event.x)`.
        Ast::Select(s) => s.test,
        Ast::Call(call) => match call.func_name.as_str() {
            operators::CONDITIONAL => {
                call.args.len() == 3 && call.args[1..].iter().all(returns_bool)
            }
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::NOT_STRICTLY_FALSE
            | operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN => true,
            "startsWith" | "endsWith" | "contains" | "matches" => true,
            _ => false,
        },
        // `all`, `exists` (a boolean accumulator) and `exists_one` (a comparison).
        Ast::Comprehension(c) => {
            returns_bool(&c.result)
                || matches!(&c.result.expr, Ast::Ident(v) if *v == c.accu_var)
                    && returns_bool(&c.accu_init)
        }
        _ => false,
    }
}

/// The value of `event` for one event.
pub fn view(kind: View, event: &Event) -> Value {
    match kind {
        View::Nvsentinel => nvsentinel_view(event),
        View::CloudEvent => json_value(&crate::event::to_value(event)),
    }
}

fn nvsentinel_view(event: &Event) -> Value {
    let empty = serde_json::Map::new();
    let he = match event.data() {
        Some(Data::Json(d)) => d.get("healthEvent").and_then(Json::as_object),
        _ => None,
    }
    .unwrap_or(&empty);
    let text = |k: &str| {
        Value::String(Arc::new(
            he.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
        ))
    };
    let flag = |k: &str| Value::Bool(he.get(k).and_then(Json::as_bool).unwrap_or_default());
    let codes = he
        .get("errorCode")
        .and_then(Json::as_array)
        .map(|a| a.iter().map(json_value).collect())
        .unwrap_or_default();
    // The enum's name, whether the mapping wrote the number or the name.
    let action = match he.get("recommendedAction") {
        Some(Json::Number(n)) => n
            .as_i64()
            .map(|n| enums::name(enums::RECOMMENDED_ACTION, n).into_owned())
            .unwrap_or_else(|| n.to_string()),
        Some(Json::String(s)) => s.clone(),
        _ => "NONE".to_owned(),
    };
    let metadata = he
        .get("metadata")
        .map(json_value)
        .unwrap_or_else(|| map(Vec::new()));
    map(vec![
        ("agent", text("agent")),
        ("checkName", text("checkName")),
        ("componentClass", text("componentClass")),
        ("errorCode", Value::List(Arc::new(codes))),
        ("isFatal", flag("isFatal")),
        ("isHealthy", flag("isHealthy")),
        ("recommendedAction", Value::String(Arc::new(action))),
        ("nodeName", text("nodeName")),
        ("metadata", metadata),
        ("message", text("message")),
    ])
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(CelMap {
        map: Arc::new(
            entries
                .into_iter()
                .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
                .collect(),
        ),
    })
}

/// JSON → CEL: integers as `int` (or `uint` past `i64`), other numbers as
/// `double`.
fn json_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(json_value).collect())),
        Json::Object(o) => Value::Map(CelMap {
            map: Arc::new(
                o.iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_value(v)))
                    .collect(),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBuilder, EventBuilderV10};
    use serde_json::json;

    fn event(ra: Json, codes: &[&str]) -> Event {
        EventBuilderV10::new()
            .id("1")
            .ty("com.nvidia.nvsentinel.health.v1")
            .source("nvsentinel://c/healthevents")
            .data(
                "application/json",
                json!({"metadata": {"cluster": "c"}, "healthEvent": {
                    "agent": "syslog-health-monitor", "checkName": "SysLogsXIDError",
                    "nodeName": "node-1", "errorCode": codes, "recommendedAction": ra,
                    "isFatal": true, "metadata": {"zone": "a"}}}),
            )
            .build()
            .unwrap()
    }

    fn eval(source: &str, e: &Event) -> Result<bool, String> {
        Expr::compile(source)
            .unwrap()
            .eval(&view(View::Nvsentinel, e))
    }

    /// NVSentinel's own filter examples (`event-exporter/pkg/exporter/filter_test.go`).
    #[test]
    fn nvsentinel_filter_examples() {
        let none = event(json!(0), &["45"]);
        let support = event(json!(5), &["31"]);
        let restart = event(json!("RESTART_VM"), &["74"]);
        let actionable = "event.recommendedAction != 'NONE'";
        assert_eq!(eval(actionable, &none), Ok(false));
        assert_eq!(eval(actionable, &support), Ok(true));
        assert_eq!(
            eval(actionable, &restart),
            Ok(true),
            "names mode reads the same"
        );
        let no45 = "event.recommendedAction != 'NONE' && !('45' in event.errorCode)";
        assert_eq!(eval(no45, &event(json!(5), &["45"])), Ok(false));
        assert_eq!(eval(no45, &support), Ok(true));
        assert_eq!(eval(no45, &event(json!(5), &["31", "45"])), Ok(false));
        assert_eq!(eval("event.metadata.zone == 'a'", &none), Ok(true));
        assert_eq!(eval("event.nodeName.startsWith('node-')", &none), Ok(true));
        // A missing field is an evaluation error (the caller fails open).
        assert!(eval("event.notAField == 'x'", &none).is_err());
    }

    #[test]
    fn a_bare_field_read_is_refused() {
        for bad in [
            "event.agent",
            "event.isFatal",
            "size(event.errorCode)",
            "1 + 2",
            "event.errorCode.map(c, c == '1')",
        ] {
            let e = Expr::compile(bad).unwrap_err();
            assert!(e.message.contains("must return a boolean"), "{bad}: {e:?}");
        }
        for good in [
            "event.isFatal == true",
            "event.isFatal && event.isHealthy",
            "!(event.isFatal == true)",
            "has(event.metadata.zone)",
            "event.errorCode.exists(c, c == '45')",
            "event.errorCode.all(c, c != '45')",
            "event.errorCode.exists_one(c, c == '45')",
            "event.isFatal == true ? true : event.agent == 'x'",
            "event.message.matches('^XID')",
            "true",
        ] {
            assert!(Expr::compile(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = Expr::compile("event.agent == ").unwrap_err();
        assert!(e.message.starts_with("CEL syntax error"), "{e:?}");
        assert!(e.at.is_some(), "{e:?}");
    }

    #[test]
    fn other_profiles_see_the_cloudevent() {
        let e = event(json!(2), &[]);
        let x = Expr::compile(
            "event.type == 'com.nvidia.nvsentinel.health.v1' && event.data.healthEvent.recommendedAction == 2",
        )
        .unwrap();
        assert_eq!(x.eval(&view(View::CloudEvent, &e)), Ok(true));
    }
}
