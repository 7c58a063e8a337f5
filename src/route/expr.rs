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

/// A set of the members of NVSentinel's `event` (`NV_FIELDS` by index):
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

    /// The members in the set, by their names in the CloudEvent's
    /// `data.healthEvent` (where NVSentinel's view reads them).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        (0..NV_FIELDS.len())
            .filter(move |i| self.has(*i))
            .map(|i| NV_FIELDS[i])
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
        check_size(source)?;
        let env = Arc::new(Env::stdlib());
        let program = parse(&env, source)?;
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

/// Parses on a thread of its own with a large stack (reserved, not used:
/// the parser recurses per level of the expression, and a validation may
/// run on a small worker stack), refusing an expression whose tree is
/// deeper than [`MAX_DEPTH`] before it is evaluated (recursively) on a
/// router's stack.
fn parse(env: &Arc<Env>, source: &str) -> Result<Program, CompileError> {
    let (env, owned) = (env.clone(), source.to_owned());
    let parse = move || {
        let program = env.compile(&owned).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                at: first.and_then(|e| {
                    let (line, col) = e.pos;
                    (line >= 1 && col >= 0).then_some((line as u64, col as u64 + 1))
                }),
                message: first
                    .map(|e| {
                        if e.msg.contains("Recursion limit") {
                            return too_deep();
                        }
                        let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
                        format!("CEL syntax error: {msg}")
                    })
                    .unwrap_or_else(|| "CEL syntax error".to_owned()),
            }
        })?;
        if depth(program.expression()) > MAX_DEPTH {
            // Dropped here too: dropping a tree recurses as deep as it is.
            return Err(CompileError {
                at: None,
                message: too_deep(),
            });
        }
        Ok(program)
    };
    std::thread::Builder::new()
        .name("cel-parse".into())
        .stack_size(PARSE_STACK)
        .spawn(parse)
        .map_err(|e| CompileError {
            at: None,
            message: format!("cannot start the CEL parser's thread: {e}"),
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(CompileError {
                at: None,
                message: "the CEL parser failed on this expression".into(),
            })
        })
}

fn too_deep() -> String {
    format!(
        "CEL expression too deep (more than {MAX_DEPTH} operators inside one another); split it into several rules"
    )
}

/// The parser thread's stack: ample for [`MAX_EXPR_BYTES`] of unary
/// operators (the deepest recursion left once brackets are bounded).
const PARSE_STACK: usize = 256 * 1024 * 1024;

/// The longest expression taken.
pub const MAX_EXPR_BYTES: usize = 4096;

/// The deepest expression tree taken (evaluation recurses once per level).
pub const MAX_DEPTH: usize = 100;

/// How deep an expression tree is (walked without recursion).
fn depth(e: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut visit = vec![(e, 1usize)];
    while let Some((e, d)) = visit.pop() {
        deepest = deepest.max(d);
        let d = d + 1;
        match &e.expr {
            Ast::Select(s) => visit.push((&s.operand, d)),
            Ast::Call(c) => {
                visit.extend(c.target.as_deref().map(|t| (t, d)));
                visit.extend(c.args.iter().map(|a| (a, d)));
            }
            Ast::List(l) => visit.extend(l.elements.iter().map(|x| (x, d))),
            Ast::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        visit.push((&me.key, d));
                        visit.push((&me.value, d));
                    }
                }
            }
            Ast::Comprehension(c) => visit.extend(
                [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]
                .map(|x| (x, d)),
            ),
            _ => {}
        }
    }
    deepest
}

/// Refuses an expression longer than [`MAX_EXPR_BYTES`] or nested deeper
/// than [`MAX_NESTING`].
fn check_size(source: &str) -> Result<(), CompileError> {
    if source.len() > MAX_EXPR_BYTES {
        return Err(CompileError {
            at: None,
            message: format!(
                "CEL expression longer than {MAX_EXPR_BYTES} bytes ({}); split it into several rules",
                source.len()
            ),
        });
    }
    check_nesting(source)
}

/// How deep parentheses, lists and maps may nest in an expression. CEL's
/// parser recurses once per level, kilobytes of stack each: without a
/// bound, a hundred levels overflow the stack and end the process (found by
/// the `routes` fuzz target) — on a reload, the running exporter.
pub const MAX_NESTING: usize = 32;

/// Refuses an expression nested deeper than [`MAX_NESTING`] (brackets in
/// string literals do not count), naming where it goes too deep.
fn check_nesting(source: &str) -> Result<(), CompileError> {
    let bytes = source.as_bytes();
    let (mut depth, mut i) = (0usize, 0);
    let (mut line, mut col) = (1u64, 0u64);
    while i < bytes.len() {
        let b = bytes[i];
        col += 1;
        match b {
            b'\n' => (line, col) = (line + 1, 0),
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(CompileError {
                        at: Some((line, col)),
                        message: format!(
                            "CEL expression nested more than {MAX_NESTING} deep (parentheses, lists and maps)"
                        ),
                    });
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'\'' | b'"' => {
                // A string literal, single or triple quoted; a raw one
                // (r"...") has no escapes. Skip to its end.
                let raw = i > 0 && matches!(bytes[i - 1], b'r' | b'R');
                let quotes = if bytes[i..].starts_with(&[b, b, b]) {
                    3
                } else {
                    1
                };
                let close = &bytes[i..i + quotes];
                let mut j = i + quotes;
                while j < bytes.len() && !bytes[j..].starts_with(close) {
                    if bytes[j] == b'\\' && !raw {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&b'\n') {
                        (line, col) = (line + 1, 0);
                    }
                    j += 1;
                }
                let end = (j + quotes).min(bytes.len());
                col += (end - i - 1) as u64;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
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

    #[test]
    fn deep_nesting_is_refused_before_it_reaches_the_parser() {
        let nested = |n: usize| format!("{}1{} == 1", "(".repeat(n), ")".repeat(n));
        let e = event(json!(5), &["31"]);
        assert_eq!(eval(&nested(MAX_NESTING), &e), Ok(true));
        let err = Expr::compile(&nested(1000)).unwrap_err();
        assert_eq!(
            err,
            CompileError {
                at: Some((1, 33)),
                message: "CEL expression nested more than 32 deep (parentheses, lists and maps)"
                    .into()
            }
        );
        let lists = format!("{}{} == []", "[".repeat(40), "]".repeat(40));
        assert_eq!(Expr::compile(&lists).unwrap_err().at, Some((1, 33)));
        // Brackets in string literals are text.
        let text = format!(
            "event.nodeName != '{}' && event.nodeName != \"\"\"{}\"\"\"",
            "(".repeat(50),
            "[".repeat(50)
        );
        assert_eq!(eval(&text, &e), Ok(true));
        let escaped = format!("event.nodeName != 'it\\'s {}'", "(".repeat(50));
        assert_eq!(eval(&escaped, &e), Ok(true));
        // Deep without brackets: refused by the tree's depth, or by length.
        let ternaries = vec!["event.isFatal == false ? false :"; MAX_DEPTH].join(" ") + " true";
        let err = Expr::compile(&ternaries).unwrap_err();
        assert!(
            err.message.starts_with("CEL expression too deep"),
            "{err:?}"
        );
        let long = format!("{}true", "!".repeat(MAX_EXPR_BYTES));
        let err = Expr::compile(&long).unwrap_err();
        assert!(
            err.message
                .starts_with("CEL expression longer than 4096 bytes"),
            "{err:?}"
        );
        // What is taken evaluates on a small stack (this test thread's).
        let chain = vec!["event.isFatal == false"; 60].join(" || ") + " || true";
        assert_eq!(eval(&chain, &e), Ok(true));
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
