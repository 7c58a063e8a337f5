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

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{Expr as Ast, IdedExpr, LiteralValue, operators};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
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
    /// The members of NVSentinel's `event` it reads.
    fields: Fields,
}

/// A set of the members of NVSentinel's `event` ([`NV_FIELDS`] by index):
/// the view holds only those its tree's expressions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields(u16);

/// The members of NVSentinel's `event`, in [`Fields`] bit order.
const NV_FIELDS: [&str; 10] = [
    "agent",
    "checkName",
    "componentClass",
    "errorCode",
    "isFatal",
    "isHealthy",
    "recommendedAction",
    "nodeName",
    "metadata",
    "message",
];

impl Fields {
    pub const ALL: Fields = Fields((1 << NV_FIELDS.len()) - 1);

    pub fn union(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// The members `e` reads: `event.<member>` adds one; `event` used in
    /// any other way (passed whole, indexed, `'x' in event`) needs them all.
    fn read_by(e: &IdedExpr) -> Fields {
        let mut fields = Fields::default();
        let mut visit = vec![e];
        while let Some(e) = visit.pop() {
            match &e.expr {
                Ast::Select(s) => match &s.operand.expr {
                    Ast::Ident(v) if v == "event" => {
                        // Not a member: an evaluation error, whatever the view.
                        if let Some(i) = NV_FIELDS.iter().position(|f| *f == s.field) {
                            fields.0 |= 1 << i;
                        }
                    }
                    _ => visit.push(&s.operand),
                },
                Ast::Ident(v) if v == "event" => return Fields::ALL,
                Ast::Call(c) => {
                    visit.extend(c.target.as_deref());
                    visit.extend(&c.args);
                }
                Ast::List(l) => visit.extend(&l.elements),
                Ast::Map(m) => {
                    for entry in &m.entries {
                        if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                            visit.push(&me.key);
                            visit.push(&me.value);
                        }
                    }
                }
                Ast::Comprehension(c) => visit.extend([
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]),
                Ast::Struct(_) => return Fields::ALL,
                _ => {}
            }
        }
        fields
    }
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
        let fields = Fields::read_by(program.expression());
        Ok(Self {
            program: Arc::new(program),
            env,
            source: source.into(),
            fields,
        })
    }

    /// The members of NVSentinel's `event` it reads.
    pub fn fields(&self) -> Fields {
        self.fields
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `view` (from [`view`]).
    pub fn eval(&self, view: &Bound<'_>) -> Result<bool, String> {
        let mut context = Context::with_env(self.env.clone());
        context.set_variable_resolver(view);
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

/// `event` for one event: built once however many rules read it (as CEL's
/// own values, borrowing the event's strings), and handed to every
/// evaluation by reference.
pub struct Bound<'a>(Box<dyn Val + 'a>);

impl std::fmt::Debug for Bound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bound").field(&self.0).finish()
    }
}

impl VariableResolver for Bound<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == "event").then(|| CowVal::Borrowed(&*self.0))
    }
}

/// The value of `event` for one event, with (in NVSentinel's view) the
/// members in `fields`: the others are absent, as a member the event does
/// not have.
pub fn view(kind: View, event: &Event, fields: Fields) -> Bound<'_> {
    match kind {
        View::Nvsentinel => Bound(nvsentinel_view(event, fields)),
        View::CloudEvent => Bound(owned(&crate::event::to_value(event))),
    }
}

type Boxed<'a> = Box<dyn Val + 'a>;

fn nvsentinel_view(event: &Event, fields: Fields) -> Boxed<'_> {
    static EMPTY: std::sync::OnceLock<serde_json::Map<String, Json>> = std::sync::OnceLock::new();
    let he = match event.data() {
        Some(Data::Json(d)) => d.get("healthEvent").and_then(Json::as_object),
        _ => None,
    }
    .unwrap_or_else(|| EMPTY.get_or_init(serde_json::Map::new));
    let text = |k: &str| -> Boxed<'_> {
        Box::new(CelString::from(
            he.get(k).and_then(Json::as_str).unwrap_or_default(),
        ))
    };
    let flag = |k: &str| -> Boxed<'_> {
        Box::new(CelBool::from(
            he.get(k).and_then(Json::as_bool).unwrap_or_default(),
        ))
    };
    let member = |i: usize| -> Boxed<'_> {
        match NV_FIELDS[i] {
            "errorCode" => Box::new(CelList::from(
                he.get("errorCode")
                    .and_then(Json::as_array)
                    .map(|a| a.iter().map(borrowed).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )),
            "isFatal" | "isHealthy" => flag(NV_FIELDS[i]),
            // The enum's name, whether the mapping wrote the number or the name.
            "recommendedAction" => {
                let action: std::borrow::Cow<'_, str> = match he.get("recommendedAction") {
                    Some(Json::Number(n)) => match n.as_i64() {
                        Some(n) => enums::name(enums::RECOMMENDED_ACTION, n),
                        None => n.to_string().into(),
                    },
                    Some(Json::String(s)) => s.as_str().into(),
                    _ => "NONE".into(),
                };
                Box::new(CelString::from(action))
            }
            "metadata" => match he.get("metadata") {
                Some(m) => borrowed(m),
                None => Box::new(CelMap::from(HashMap::new())),
            },
            other => text(other),
        }
    };
    let map: HashMap<CelMapKey<'_>, Boxed<'_>> = (0..NV_FIELDS.len())
        .filter(|i| fields.has(*i))
        .map(|i| (CelMapKey::from(NV_FIELDS[i]), member(i)))
        .collect();
    Box::new(CelMap::from(map))
}

/// JSON → CEL, borrowing its strings: integers as `int` (or `uint` past
/// `i64`), other numbers as `double`.
fn borrowed(v: &Json) -> Boxed<'_> {
    match v {
        Json::String(s) => Box::new(CelString::from(s.as_str())),
        Json::Array(a) => Box::new(CelList::from(a.iter().map(borrowed).collect::<Vec<_>>())),
        Json::Object(o) => Box::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), borrowed(v)))
                .collect::<HashMap<_, _>>(),
        )),
        scalar => owned(scalar),
    }
}

/// JSON → CEL, copying its strings (for a JSON value built just for it).
fn owned(v: &Json) -> Boxed<'static> {
    match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => Box::new(CelString::from(s.clone())),
        Json::Array(a) => Box::new(CelList::from(a.iter().map(owned).collect::<Vec<_>>())),
        Json::Object(o) => Box::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), owned(v)))
                .collect::<HashMap<_, _>>(),
        )),
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
            .eval(&view(View::Nvsentinel, e, Fields::ALL))
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
        assert_eq!(x.eval(&view(View::CloudEvent, &e, Fields::ALL)), Ok(true));
    }

    /// The view holds only what the expressions read; what they read
    /// evaluates as with the whole view.
    #[test]
    fn the_view_holds_what_the_expressions_read() {
        let fields = |src: &str| Expr::compile(src).unwrap().fields();
        let bit = |name: &str| Fields(1 << NV_FIELDS.iter().position(|f| *f == name).unwrap());
        assert_eq!(
            fields("event.recommendedAction != 'NONE'"),
            bit("recommendedAction")
        );
        assert_eq!(
            fields("!('45' in event.errorCode) && event.metadata.zone == 'a'"),
            bit("errorCode").union(bit("metadata"))
        );
        assert_eq!(
            fields("event.errorCode.exists(c, c == event.nodeName)"),
            bit("errorCode").union(bit("nodeName"))
        );
        assert_eq!(fields("'agent' in event"), Fields::ALL);
        assert_eq!(fields("event['agent'] == 'x'"), Fields::ALL);
        assert_eq!(fields("event.notAField == 'x'"), Fields::default());
        let e = event(json!(5), &["45"]);
        for src in [
            "event.recommendedAction != 'NONE'",
            "!('45' in event.errorCode)",
            "event.metadata.zone == 'a' && event.isFatal",
        ] {
            let x = Expr::compile(src).unwrap();
            assert_eq!(
                x.eval(&view(View::Nvsentinel, &e, x.fields())),
                x.eval(&view(View::Nvsentinel, &e, Fields::ALL)),
                "{src}"
            );
        }
        let x = Expr::compile("event.notAField == 'x'").unwrap();
        assert!(x.eval(&view(View::Nvsentinel, &e, x.fields())).is_err());
    }
}
