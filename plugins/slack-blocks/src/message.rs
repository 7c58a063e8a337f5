//! The Block Kit message for one event. Pure functions of the event and the
//! config, tested natively (`cargo test` in plugins/).

use serde_json::{Map, Value, json};

use crate::{CloudEvent, Config};

/// Slack's limits (https://api.slack.com/reference/block-kit/blocks).
const HEADER_MAX: usize = 150;
const SECTION_TEXT_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const CONTEXT_MAX: usize = 2000;
/// The fallback `text` is allowed far more; notifications show little.
const TEXT_MAX: usize = 3000;

/// Which message an event became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `data.healthEvent` was an object.
    Health,
    /// Anything else: a message about the event itself.
    Generic,
}

/// The event's data as the message needs it.
enum Body {
    None,
    Json(Value),
    Text(String),
    Binary(usize),
}

/// Whether a content type is JSON (as the host decides it).
pub fn is_json(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn body(event: &CloudEvent) -> Result<Body, String> {
    let Some(bytes) = event.data.as_deref() else {
        return Ok(Body::None);
    };
    match event.datacontenttype.as_deref() {
        Some(ct) if is_json(ct) => serde_json::from_slice(bytes)
            .map(Body::Json)
            .map_err(|e| format!("event {}: {ct} data is not valid JSON: {e}", event.id)),
        // No content type: JSON if it parses (as CloudEvents reads it).
        None => Ok(match serde_json::from_slice(bytes) {
            Ok(v) => Body::Json(v),
            Err(_) => text_or_binary(bytes),
        }),
        Some(_) => Ok(text_or_binary(bytes)),
    }
}

fn text_or_binary(bytes: &[u8]) -> Body {
    match std::str::from_utf8(bytes) {
        Ok(s) => Body::Text(s.to_owned()),
        Err(_) => Body::Binary(bytes.len()),
    }
}

/// The message for `event`. Fails only when the data claims to be JSON and
/// is not.
pub fn build(event: &CloudEvent, config: &Config) -> Result<(Value, Kind), String> {
    let body = body(event)?;
    if let Body::Json(Value::Object(data)) = &body
        && let Some(Value::Object(he)) = data.get("healthEvent")
    {
        return Ok((health(event, config, data, he), Kind::Health));
    }
    Ok((generic(event, config, &body), Kind::Generic))
}

fn health(
    event: &CloudEvent,
    config: &Config,
    data: &Map<String, Value>,
    he: &Map<String, Value>,
) -> Value {
    let text_of = |key: &str| {
        he.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let node = text_of("nodeName")
        .or(event.subject.as_deref())
        .unwrap_or("unknown node");
    let check = text_of("checkName").unwrap_or("unknown check");
    let fatal = he.get("isFatal").and_then(Value::as_bool) == Some(true);
    let healthy = he.get("isHealthy").and_then(Value::as_bool) == Some(true);
    let (status, emoji) = if healthy {
        ("Healthy", ":white_check_mark:")
    } else if fatal {
        ("Fatal", ":rotating_light:")
    } else {
        ("Unhealthy", ":warning:")
    };
    let headline = format!("{status}: {check} on {node}");
    let message = text_of("message");

    let mut text = String::new();
    if fatal
        && !healthy
        && let Some(mention) = &config.mention
    {
        text.push_str(mention);
        text.push(' ');
    }
    match message {
        // NVSentinel's messages often name the check and node already.
        Some(message) if message.contains(check) && message.contains(node) => {
            text.push_str(&format!("{status}: {message}"));
        }
        Some(message) => text.push_str(&format!("{headline} — {message}")),
        None => text.push_str(&headline),
    }

    let mut fields = vec![formatted_field("Node", &code(node)), field("Check", check)];
    if let Some(component) = text_of("componentClass") {
        fields.push(field("Component", component));
    }
    if let Some(agent) = text_of("agent") {
        fields.push(field("Agent", agent));
    }
    fields.push(field("Error codes", &error_codes(he.get("errorCode"))));
    if let Some(action) = recommended_action(he) {
        fields.push(field("Recommended action", &action));
    }
    fields.push(field("Entities", &entities(he.get("entitiesImpacted"))));
    if let Some(cluster) = data
        .get("metadata")
        .and_then(|m| m.get("cluster"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        fields.push(field("Cluster", cluster));
    }

    let mut section = Map::new();
    section.insert("type".into(), "section".into());
    if let Some(message) = message {
        section.insert(
            "text".into(),
            mrkdwn(&truncate(&escape(message), SECTION_TEXT_MAX)),
        );
    }
    section.insert("fields".into(), Value::Array(fields));

    let time = text_of("generatedTimestamp").or(event.time.as_deref());
    message_value(
        config,
        text,
        &format!("{emoji} {headline}"),
        Value::Object(section),
        time,
        &event.id,
    )
}

fn generic(event: &CloudEvent, config: &Config, body: &Body) -> Value {
    let mut text = format!("{} from {}", event.type_, event.source);
    if let Some(subject) = &event.subject {
        text.push_str(&format!(" ({subject})"));
    }
    let mut fields = vec![field("Type", &event.type_), field("Source", &event.source)];
    if let Some(subject) = &event.subject {
        fields.push(field("Subject", subject));
    }
    let mut section = Map::new();
    section.insert("type".into(), "section".into());
    let excerpt = match body {
        Body::None => None,
        Body::Json(v) => {
            let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
            // Room for the fences.
            Some(format!(
                "```{}```",
                truncate(&escape(&pretty), SECTION_TEXT_MAX - 6)
            ))
        }
        Body::Text(s) if s.trim().is_empty() => None,
        Body::Text(s) => Some(truncate(&escape(s), SECTION_TEXT_MAX)),
        Body::Binary(n) => {
            let ct = event.datacontenttype.as_deref().unwrap_or("binary data");
            Some(format!("_{n} bytes of {}_", escape(ct)))
        }
    };
    if let Some(excerpt) = excerpt {
        section.insert("text".into(), mrkdwn(&excerpt));
    }
    section.insert("fields".into(), Value::Array(fields));
    message_value(
        config,
        text,
        &event.type_,
        Value::Object(section),
        event.time.as_deref(),
        &event.id,
    )
}

/// The message: fallback text, header, the section, context; `channel`.
fn message_value(
    config: &Config,
    text: String,
    header: &str,
    section: Value,
    time: Option<&str>,
    id: &str,
) -> Value {
    let header = match &config.title {
        Some(title) => format!("{title} · {header}"),
        None => header.to_owned(),
    };
    let context = match time {
        Some(time) => format!("{} · event `{}`", escape(time), escape(id)),
        None => format!("event `{}`", escape(id)),
    };
    let mut msg = Map::new();
    if let Some(channel) = &config.channel {
        msg.insert("channel".into(), channel.as_str().into());
    }
    msg.insert("text".into(), truncate(&text, TEXT_MAX).into());
    msg.insert(
        "blocks".into(),
        json!([
            {
                "type": "header",
                "text": {"type": "plain_text", "text": truncate(&header, HEADER_MAX), "emoji": true}
            },
            section,
            {
                "type": "context",
                "elements": [mrkdwn(&truncate(&context, CONTEXT_MAX))]
            }
        ]),
    );
    Value::Object(msg)
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

/// A section field: bold label, the value (escaped) on the next line.
fn field(label: &str, value: &str) -> Value {
    formatted_field(label, &escape(value))
}

/// A field whose value is mrkdwn already.
fn formatted_field(label: &str, mrkdwn_value: &str) -> Value {
    mrkdwn(&truncate(&format!("*{label}*\n{mrkdwn_value}"), FIELD_MAX))
}

fn code(value: &str) -> String {
    format!("`{}`", escape(&value.replace('`', "'")))
}

fn error_codes(v: Option<&Value>) -> String {
    let codes: Vec<String> = match v {
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
        None => Vec::new(),
    };
    if codes.is_empty() {
        "none".to_owned()
    } else {
        codes.join(", ")
    }
}

/// NVSentinel's `RecommendedAction` numbers (what its exporter, and
/// Switchyard by default, put on the wire) and their names.
const RECOMMENDED_ACTIONS: &[(i64, &str)] = &[
    (0, "NONE"),
    (2, "COMPONENT_RESET"),
    (5, "CONTACT_SUPPORT"),
    (6, "RUN_FIELDDIAG"),
    (15, "RESTART_VM"),
    (24, "RESTART_BM"),
    (25, "REPLACE_VM"),
    (26, "RUN_DCGMEUD"),
    (27, "CUSTOM"),
    (99, "UNKNOWN"),
];

/// The action's name, whether the event carries the number (the default)
/// or the name (`mapping.enums: names`); an unknown number as it is.
fn action_name(v: &Value) -> Option<String> {
    if let Some(n) = v.as_i64()
        && let Some((_, name)) = RECOMMENDED_ACTIONS.iter().find(|(k, _)| *k == n)
    {
        return Some((*name).to_owned());
    }
    scalar(v)
}

fn recommended_action(he: &Map<String, Value>) -> Option<String> {
    let action = he
        .get("recommendedAction")
        .and_then(action_name)
        .filter(|s| !s.is_empty());
    let custom = he
        .get("customRecommendedAction")
        .and_then(scalar)
        .filter(|s| !s.is_empty());
    match (action, custom) {
        (Some(a), Some(c)) if a == c => Some(a),
        (Some(a), Some(c)) => Some(format!("{a} ({c})")),
        (a, c) => a.or(c),
    }
}

/// `GPU GPU-…, PCI 0000:…` from `entitiesImpacted`.
fn entities(v: Option<&Value>) -> String {
    let Some(Value::Array(items)) = v else {
        return "none".to_owned();
    };
    let list: Vec<String> = items
        .iter()
        .filter_map(|e| {
            let kind = e.get("entityType").and_then(scalar);
            let value = e.get("entityValue").and_then(scalar);
            match (kind, value) {
                (Some(k), Some(v)) => Some(format!("{k} {v}")),
                (None, Some(v)) => Some(v),
                (Some(k), None) => Some(k),
                (None, None) => None,
            }
        })
        .collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// A string, number or boolean as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Slack's mrkdwn escapes: `&`, `<`, `>`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, the last one `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str, ct: Option<&str>) -> CloudEvent {
        CloudEvent {
            id: "ev-1".into(),
            source: "nvsentinel://test".into(),
            type_: "com.nvidia.nvsentinel.health.v1".into(),
            subject: Some("gpu-node-0001".into()),
            time: Some("2026-10-01T00:00:00Z".into()),
            datacontenttype: ct.map(str::to_owned),
            dataschema: None,
            extensions: vec![],
            data: Some(data.as_bytes().to_vec()),
        }
    }

    const FATAL: &str = r#"{"metadata":{"cluster":"prod"},"healthEvent":{"version":1,"agent":"syslog-health-monitor","componentClass":"GPU","checkName":"GpuXidError","isFatal":true,"isHealthy":false,"message":"XID 79 <fell off the bus>","recommendedAction":15,"errorCode":["79"],"entitiesImpacted":[{"entityType":"GPU","entityValue":"GPU-1234"}],"generatedTimestamp":"2026-10-01T00:00:01Z","nodeName":"gpu-node-0001"}}"#;

    #[test]
    fn fatal_health_event() {
        let config = Config {
            channel: Some("#gpu".into()),
            mention: Some("<!here>".into()),
            title: None,
        };
        let (msg, kind) = build(&event(FATAL, Some("application/json")), &config).unwrap();
        assert_eq!(kind, Kind::Health);
        assert_eq!(msg["channel"], "#gpu");
        assert_eq!(
            msg["text"],
            "<!here> Fatal: GpuXidError on gpu-node-0001 — XID 79 <fell off the bus>"
        );
        let blocks = msg["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":rotating_light: Fatal: GpuXidError on gpu-node-0001"
        );
        assert_eq!(blocks[1]["text"]["text"], "XID 79 &lt;fell off the bus&gt;");
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Node*\n`gpu-node-0001`",
                "*Check*\nGpuXidError",
                "*Component*\nGPU",
                "*Agent*\nsyslog-health-monitor",
                "*Error codes*\n79",
                "*Recommended action*\nRESTART_VM",
                "*Entities*\nGPU GPU-1234",
                "*Cluster*\nprod",
            ]
        );
        assert_eq!(
            blocks[2]["elements"][0]["text"],
            "2026-10-01T00:00:01Z · event `ev-1`"
        );
    }

    /// The action reads as its name in both wire forms; a number NVSentinel
    /// has no name for shows as it is; a custom action follows in brackets.
    #[test]
    fn recommended_action_is_named_from_the_number_or_the_name() {
        let shown = |action: &str, custom: &str| {
            let data = format!(
                r#"{{"healthEvent":{{"isFatal":true,"isHealthy":false,"recommendedAction":{action}{custom}}}}}"#
            );
            let (msg, _) =
                build(&event(&data, Some("application/json")), &Config::default()).unwrap();
            msg["blocks"][1]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["text"].as_str().unwrap().to_owned())
                .find(|f| f.starts_with("*Recommended action*"))
        };
        let field = |s: &str| Some(format!("*Recommended action*\n{s}"));
        assert_eq!(shown("15", ""), field("RESTART_VM"));
        assert_eq!(shown("\"RESTART_VM\"", ""), field("RESTART_VM"));
        assert_eq!(shown("0", ""), field("NONE"));
        assert_eq!(shown("1234", ""), field("1234"));
        assert_eq!(
            shown("27", r#","customRecommendedAction":"drain-rack""#),
            field("CUSTOM (drain-rack)")
        );
    }

    #[test]
    fn healthy_event_has_no_mention_and_missing_fields_are_tolerated() {
        let config = Config {
            mention: Some("<!here>".into()),
            title: Some("Prod".into()),
            ..Config::default()
        };
        let data = r#"{"healthEvent":{"isFatal":true,"isHealthy":true}}"#;
        let (msg, kind) = build(&event(data, Some("application/json")), &config).unwrap();
        assert_eq!(kind, Kind::Health);
        assert!(msg.get("channel").is_none());
        assert_eq!(msg["text"], "Healthy: unknown check on gpu-node-0001");
        assert_eq!(
            msg["blocks"][0]["text"]["text"],
            "Prod · :white_check_mark: Healthy: unknown check on gpu-node-0001"
        );
        assert!(msg["blocks"][1].get("text").is_none());
        assert_eq!(msg["blocks"][1]["fields"].as_array().unwrap().len(), 4);
        assert_eq!(
            msg["blocks"][2]["elements"][0]["text"],
            "2026-10-01T00:00:00Z · event `ev-1`"
        );
    }

    #[test]
    fn a_message_naming_check_and_node_is_not_repeated() {
        let data = r#"{"healthEvent":{"checkName":"GpuMemWatch","nodeName":"n7","isFatal":false,"isHealthy":false,"message":"GpuMemWatch on n7: detected"}}"#;
        let (msg, _) = build(&event(data, Some("application/json")), &Config::default()).unwrap();
        assert_eq!(msg["text"], "Unhealthy: GpuMemWatch on n7: detected");
        assert_eq!(
            msg["blocks"][0]["text"]["text"],
            ":warning: Unhealthy: GpuMemWatch on n7"
        );
    }

    #[test]
    fn other_events_get_a_generic_message() {
        let config = Config::default();
        let (msg, kind) = build(&event(r#"{"a":1}"#, Some("application/json")), &config).unwrap();
        assert_eq!(kind, Kind::Generic);
        assert_eq!(
            msg["text"],
            "com.nvidia.nvsentinel.health.v1 from nvsentinel://test (gpu-node-0001)"
        );
        assert_eq!(msg["blocks"][1]["text"]["text"], "```{\n  \"a\": 1\n}```");

        let (msg, _) = build(&event("plain <text>", Some("text/plain")), &config).unwrap();
        assert_eq!(msg["blocks"][1]["text"]["text"], "plain &lt;text&gt;");

        let mut binary = event("", Some("application/octet-stream"));
        binary.data = Some(vec![0xff, 0xfe, 0]);
        let (msg, _) = build(&binary, &config).unwrap();
        assert_eq!(
            msg["blocks"][1]["text"]["text"],
            "_3 bytes of application/octet-stream_"
        );

        let mut none = event("", None);
        none.data = None;
        let (msg, _) = build(&none, &config).unwrap();
        assert!(msg["blocks"][1].get("text").is_none());
    }

    #[test]
    fn invalid_json_is_an_error() {
        let err = build(
            &event("{not json", Some("application/json")),
            &Config::default(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("event ev-1: application/json data is not valid JSON"),
            "{err}"
        );
        // Without a content type, it is text.
        assert!(build(&event("{not json", None), &Config::default()).is_ok());
    }

    #[test]
    fn the_event_keeps_its_attributes() {
        let mut input = event(FATAL, Some("application/json"));
        input.extensions = vec![("partition".into(), "3".into())];
        input.dataschema = Some("https://example.com/schema".into());
        let (out, _) = crate::to_slack(input, &Config::default()).unwrap();
        assert_eq!(out.id, "ev-1");
        assert_eq!(out.source, "nvsentinel://test");
        assert_eq!(out.subject.as_deref(), Some("gpu-node-0001"));
        assert_eq!(out.time.as_deref(), Some("2026-10-01T00:00:00Z"));
        assert_eq!(out.type_, "com.slack.message");
        assert_eq!(out.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(out.dataschema, None);
        assert_eq!(
            out.extensions,
            [
                ("partition".to_owned(), "3".to_owned()),
                (
                    "originaltype".to_owned(),
                    "com.nvidia.nvsentinel.health.v1".to_owned()
                )
            ]
        );
        let msg: Value = serde_json::from_slice(out.data.as_deref().unwrap()).unwrap();
        assert!(msg["blocks"].is_array());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("überhitzt", 4), "übe…");
        assert_eq!(truncate("abc", 3), "abc");
        let long = "x".repeat(500);
        let data = format!(
            r#"{{"healthEvent":{{"checkName":"{long}","nodeName":"n","message":"{}"}}}}"#,
            "y".repeat(5000)
        );
        let (msg, _) = build(&event(&data, Some("application/json")), &Config::default()).unwrap();
        assert_eq!(
            msg["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            HEADER_MAX
        );
        assert_eq!(
            msg["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            SECTION_TEXT_MAX
        );
        assert_eq!(msg["text"].as_str().unwrap().chars().count(), TEXT_MAX);
    }
}
