//! Handlebars templates for webhooks (strict mode: a missing field is an
//! error, not an empty string), with the helpers people expect: `json`,
//! `toPrettyJson`, `default`, `upper`, `lower`, `trim`, `now`, `join`,
//! `actionName`/`strategyName` (NVSentinel's enum numbers as names), and
//! the built-in `eq`/`ne`. Output is not HTML-escaped: layouts become JSON
//! through serde, raw bodies are the user's format.
//!
//! A layout is a YAML tree whose string leaves are templates. A leaf that is
//! exactly one expression — `{{data.healthEvent.isFatal}}` or
//! `{{json data.healthEvent}}` — keeps the JSON type of its value.

use handlebars::{
    Context, Handlebars, Helper, HelperResult, JsonRender, Output, RenderContext,
    RenderErrorReason, handlebars_helper, no_escape,
};
use serde_json::Value;

/// The template registry of one receiver.
pub struct Templates {
    registry: Handlebars<'static>,
    next: usize,
}

/// A compiled layout: the YAML tree with templates at its string leaves.
#[derive(Debug, Clone)]
pub enum Layout {
    Object(Vec<(String, Layout)>),
    Array(Vec<Layout>),
    Literal(Value),
    /// A leaf that is one path expression: its value, JSON type kept.
    Path(Vec<String>),
    /// Any other string: rendered text.
    Text(String),
}

handlebars_helper!(upper: |s: str| s.to_uppercase());
handlebars_helper!(lower: |s: str| s.to_lowercase());
handlebars_helper!(trim: |s: str| s.trim().to_owned());
handlebars_helper!(to_pretty_json: |v: Json| serde_json::to_string_pretty(v).unwrap_or_default());
handlebars_helper!(now: | | chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
handlebars_helper!(action_name: |v: Json| enum_name(crate::event::enums::RECOMMENDED_ACTION, v));
handlebars_helper!(strategy_name: |v: Json| enum_name(crate::event::enums::PROCESSING_STRATEGY, v));

/// `{{actionName data.healthEvent.recommendedAction}}`: the enum member's
/// name whether the event carries the number (the default) or the name.
fn enum_name(table: &[(i64, &'static str)], v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(n) => crate::event::enums::name(table, n).into_owned(),
            None => n.to_string(),
        },
        other => other.render(),
    }
}

fn json(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
    if param.is_value_missing() {
        return Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
    }
    out.write(&param.value().to_string())?;
    Ok(())
}

/// `{{default data.x "fallback"}}`: the value, or the fallback when the
/// value is missing, null or empty.
fn default(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let fallback = h
        .param(1)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
    let value = h.param(0).filter(|p| {
        !p.is_value_missing() && !matches!(p.value(), Value::Null) && p.value().as_str() != Some("")
    });
    out.write(&value.unwrap_or(fallback).value().render())?;
    Ok(())
}

/// `{{join data.healthEvent.errorCode ", "}}`.
fn join(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let list = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("join", 0))?;
    let sep = h
        .param(1)
        .map(|p| p.value().render())
        .unwrap_or_else(|| ",".to_owned());
    let text = match list.value() {
        Value::Array(items) => items
            .iter()
            .map(JsonRender::render)
            .collect::<Vec<_>>()
            .join(&sep),
        other => other.render(),
    };
    out.write(&text)?;
    Ok(())
}

impl Templates {
    pub fn new() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(no_escape);
        registry.register_helper("json", Box::new(json));
        registry.register_helper("toPrettyJson", Box::new(to_pretty_json));
        registry.register_helper("default", Box::new(default));
        registry.register_helper("upper", Box::new(upper));
        registry.register_helper("lower", Box::new(lower));
        registry.register_helper("trim", Box::new(trim));
        registry.register_helper("now", Box::new(now));
        registry.register_helper("join", Box::new(join));
        registry.register_helper("actionName", Box::new(action_name));
        registry.register_helper("strategyName", Box::new(strategy_name));
        Self { registry, next: 0 }
    }

    /// Compiles a template; returns its name.
    pub fn add(&mut self, text: &str) -> Result<String, String> {
        let name = format!("t{}", self.next);
        self.next += 1;
        self.registry
            .register_template_string(&name, text)
            .map_err(|e| compile_error(&e))?;
        Ok(name)
    }

    pub fn render(&self, name: &str, context: &Value) -> Result<String, String> {
        self.registry
            .render(name, context)
            .map_err(|e| one_line(&e.to_string()))
    }

    /// Compiles a YAML layout tree. `place` names the key in errors.
    pub fn layout(&mut self, value: &Value, place: &str, errors: &mut Vec<String>) -> Layout {
        match value {
            Value::Object(map) => Layout::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.layout(v, &format!("{place}.{k}"), errors)))
                    .collect(),
            ),
            Value::Array(items) => Layout::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.layout(v, &format!("{place}[{i}]"), errors))
                    .collect(),
            ),
            Value::String(s) if !s.contains("{{") => Layout::Literal(value.clone()),
            Value::String(s) => {
                if let Some(path) = single_expression(s) {
                    return Layout::Path(path);
                }
                match self.add(s) {
                    Ok(name) => Layout::Text(name),
                    Err(e) => {
                        errors.push(format!("{place}: {e}"));
                        Layout::Literal(Value::Null)
                    }
                }
            }
            other => Layout::Literal(other.clone()),
        }
    }

    /// Renders a layout against an event's context.
    pub fn render_layout(&self, layout: &Layout, context: &Value) -> Result<Value, String> {
        Ok(match layout {
            Layout::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_layout(v, context)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Layout::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render_layout(v, context))
                    .collect::<Result<_, _>>()?,
            ),
            Layout::Literal(v) => v.clone(),
            Layout::Path(path) => lookup(context, path)
                .cloned()
                .ok_or_else(|| format!("variable {:?} not found in strict mode", path.join(".")))?,
            Layout::Text(name) => Value::String(self.render(name, context)?),
        })
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// `{{a.b.c}}` or `{{json a.b.c}}` alone: the path.
fn single_expression(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    if inner.contains(['{', '}']) {
        return None;
    }
    let path = inner.strip_prefix("json ").map(str::trim).unwrap_or(inner);
    let valid = !path.is_empty()
        && path.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
    valid.then(|| path.split('.').map(str::to_owned).collect())
}

fn lookup<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for seg in path {
        value = match value {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A template compile error as reason and position, without quoting the
/// template (an endpoint template may hold a secret).
fn compile_error(e: &handlebars::TemplateError) -> String {
    let reason = e.reason().to_string();
    let reason = match reason.split_once(": expected ") {
        Some((head, _)) => head.to_owned(),
        None => reason,
    };
    match e.pos() {
        Some((line, col)) if line > 1 => {
            format!("invalid template at line {line}, column {col}: {reason}")
        }
        Some((_, col)) => format!("invalid template at column {col}: {reason}"),
        None => format!("invalid template: {reason}"),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "id": "e1",
            "data": {"healthEvent": {"nodeName": "gpu-1", "isFatal": true, "recommendedAction": 25, "processingStrategy": "STORE_ONLY", "errorCode": ["XID_79", "XID_48"], "message": "  hot  ", "empty": ""}},
            "metadata": {"cluster": "prod"}
        })
    }

    fn render(text: &str) -> Result<String, String> {
        let mut t = Templates::new();
        let name = t.add(text)?;
        t.render(&name, &context())
    }

    #[test]
    fn helpers() {
        assert_eq!(
            render("{{upper data.healthEvent.nodeName}}").unwrap(),
            "GPU-1"
        );
        assert_eq!(render("{{lower \"ABC\"}}").unwrap(), "abc");
        assert_eq!(
            render("[{{trim data.healthEvent.message}}]").unwrap(),
            "[hot]"
        );
        assert_eq!(
            render("{{join data.healthEvent.errorCode \", \"}}").unwrap(),
            "XID_79, XID_48"
        );
        assert_eq!(
            render("{{json data.healthEvent.errorCode}}").unwrap(),
            r#"["XID_79","XID_48"]"#
        );
        assert!(
            render("{{toPrettyJson metadata}}")
                .unwrap()
                .contains("\n  \"cluster\": \"prod\"\n")
        );
        assert_eq!(
            render("{{default data.healthEvent.empty \"n/a\"}}").unwrap(),
            "n/a"
        );
        assert_eq!(
            render("{{default data.healthEvent.nodeName \"n/a\"}}").unwrap(),
            "gpu-1"
        );
        assert_eq!(
            render("{{#if (eq metadata.cluster \"prod\")}}P{{else}}D{{/if}}").unwrap(),
            "P"
        );
        assert_eq!(
            render("{{#if (ne metadata.cluster \"prod\")}}P{{else}}D{{/if}}").unwrap(),
            "D"
        );
        assert!(render("{{now}}").unwrap().ends_with('Z'));
        // NVSentinel's enums as names, from the number or the name.
        assert_eq!(
            render("{{actionName data.healthEvent.recommendedAction}}").unwrap(),
            "REPLACE_VM"
        );
        assert_eq!(
            render("{{strategyName data.healthEvent.processingStrategy}}").unwrap(),
            "STORE_ONLY"
        );
        assert_eq!(render("{{actionName 12345}}").unwrap(), "12345");
        assert_eq!(
            render("{{#if (eq (actionName data.healthEvent.recommendedAction) \"REPLACE_VM\")}}P1{{/if}}")
                .unwrap(),
            "P1"
        );
        assert_eq!(
            render("<{{data.healthEvent.nodeName}}&>").unwrap(),
            "<gpu-1&>",
            "no HTML escaping"
        );
    }

    #[test]
    fn strict_mode_and_compile_errors() {
        let e = render("{{data.healthEvent.nope}}").unwrap_err();
        assert!(e.contains("nope"), "{e}");
        assert!(Templates::new().add("{{#if x}}unclosed").is_err());
    }

    #[test]
    fn layouts_keep_json_types_of_single_expressions() {
        let mut t = Templates::new();
        let mut errors = Vec::new();
        let layout = t.layout(
            &json!({
                "text": "{{data.healthEvent.nodeName}}: {{data.healthEvent.isFatal}}",
                "fatal": "{{data.healthEvent.isFatal}}",
                "details": "{{json data.healthEvent}}",
                "codes": ["{{data.healthEvent.errorCode.0}}", "fixed", 3],
                "plain": "no template"
            }),
            "layout",
            &mut errors,
        );
        assert!(errors.is_empty());
        let out = t.render_layout(&layout, &context()).unwrap();
        assert_eq!(out["text"], "gpu-1: true");
        assert_eq!(out["fatal"], true);
        assert_eq!(out["details"]["errorCode"][1], "XID_48");
        assert_eq!(out["codes"], json!(["XID_79", "fixed", 3]));
        assert_eq!(out["plain"], "no template");

        let missing = t.layout(&json!({"x": "{{data.nope}}"}), "layout", &mut errors);
        assert!(
            t.render_layout(&missing, &context())
                .unwrap_err()
                .contains("data.nope")
        );
        t.layout(
            &json!({"bad": {"deep": "{{#each}}"}}),
            "layout",
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("layout.bad.deep: "), "{}", errors[0]);
    }
}
