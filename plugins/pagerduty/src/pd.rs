//! The Events API v2 request for one event, and what PagerDuty's answer
//! means (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/).

use serde_json::{Map, Value, json};

use crate::CloudEvent;
use crate::config::{Config, DedupKey};
use crate::http::Response;

/// PagerDuty's limit for `payload.summary`.
const SUMMARY_MAX: usize = 1024;
/// How much of an error body goes into a reason.
const EXCERPT_MAX: usize = 200;

/// The request body and what identifies it in logs.
pub struct Alert {
    pub action: &'static str,
    pub dedup_key: String,
    pub body: Value,
}

/// The alert for `event`: from `data.healthEvent` when the data is a JSON
/// object holding one, else a generic alert about the event.
pub fn alert(event: &CloudEvent, config: &Config) -> Alert {
    let data = data(event);
    let health = match &data {
        Some(Value::Object(d)) => d.get("healthEvent").and_then(Value::as_object),
        _ => None,
    };
    let cluster = match &data {
        Some(Value::Object(d)) => d
            .get("metadata")
            .and_then(|m| m.get("cluster"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
        _ => None,
    };
    match health {
        Some(he) => health_alert(event, config, he, cluster),
        None => generic_alert(event, config, data.as_ref()),
    }
}

fn health_alert(
    event: &CloudEvent,
    config: &Config,
    he: &Map<String, Value>,
    cluster: Option<&str>,
) -> Alert {
    let text = |key: &str| {
        he.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let node = text("nodeName")
        .or(event.subject.as_deref())
        .unwrap_or(&event.source);
    let check = text("checkName");
    let healthy = he.get("isHealthy").and_then(Value::as_bool) == Some(true);
    let fatal = he.get("isFatal").and_then(Value::as_bool) == Some(true);
    let action = if healthy { "resolve" } else { "trigger" };
    let severity = if healthy {
        "info"
    } else if fatal {
        "critical"
    } else {
        "warning"
    };
    let summary = match text("message") {
        Some(message) => message.to_owned(),
        None => format!("{} on {node}", check.unwrap_or("health event")),
    };
    let dedup_key = match config.dedup_key {
        DedupKey::Id => event.id.clone(),
        DedupKey::Check => {
            let parts: Vec<&str> = [cluster, Some(node), Some(check.unwrap_or("unknown"))]
                .into_iter()
                .flatten()
                .collect();
            parts.join("/")
        }
    };
    let mut payload = Map::new();
    payload.insert("summary".into(), truncate(&summary, SUMMARY_MAX).into());
    payload.insert("source".into(), node.into());
    payload.insert("severity".into(), severity.into());
    if let Some(ts) = text("generatedTimestamp").or(event.time.as_deref()) {
        payload.insert("timestamp".into(), ts.into());
    }
    if let Some(component) = text("componentClass") {
        payload.insert("component".into(), component.into());
    }
    if let Some(cluster) = cluster {
        payload.insert("group".into(), cluster.into());
    }
    if let Some(check) = check {
        payload.insert("class".into(), check.into());
    }
    payload.insert("custom_details".into(), Value::Object(he.clone()));
    body(config, action, dedup_key, payload)
}

fn generic_alert(event: &CloudEvent, config: &Config, data: Option<&Value>) -> Alert {
    let mut summary = format!("{} from {}", event.type_, event.source);
    if let Some(subject) = &event.subject {
        summary.push_str(&format!(" ({subject})"));
    }
    let mut payload = Map::new();
    payload.insert("summary".into(), truncate(&summary, SUMMARY_MAX).into());
    payload.insert(
        "source".into(),
        event.subject.as_deref().unwrap_or(&event.source).into(),
    );
    payload.insert("severity".into(), "warning".into());
    if let Some(time) = &event.time {
        payload.insert("timestamp".into(), time.as_str().into());
    }
    payload.insert("class".into(), event.type_.as_str().into());
    if let Some(data) = data {
        let details = match data {
            Value::Object(_) => data.clone(),
            other => json!({ "data": other }),
        };
        payload.insert("custom_details".into(), details);
    }
    body(config, "trigger", event.id.clone(), payload)
}

fn body(
    config: &Config,
    action: &'static str,
    dedup_key: String,
    payload: Map<String, Value>,
) -> Alert {
    let body = json!({
        "routing_key": config.routing_key,
        "event_action": action,
        "dedup_key": dedup_key,
        "payload": payload,
        "client": config.client,
    });
    Alert {
        action,
        dedup_key,
        body,
    }
}

/// The data as JSON when it parses (whatever the content type claims), as
/// a string when it is other UTF-8 text, else nothing.
fn data(event: &CloudEvent) -> Option<Value> {
    let bytes = event.data.as_deref()?;
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Some(v);
    }
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| Value::String(truncate(s, 16 * 1024)))
}

/// What to tell the host about one answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Retry(String),
    Reject(String),
}

/// 2xx: accepted. 408, 429 and 5xx: retry. Anything else: reject.
pub fn classify(response: &Response) -> Outcome {
    let status = response.status;
    if (200..300).contains(&status) {
        return Outcome::Accepted;
    }
    let mut reason = format!("PagerDuty answered HTTP {status}");
    if let Some(after) = response
        .retry_after
        .as_deref()
        .filter(|_| status == 429 || status == 503)
    {
        reason.push_str(&format!(" (Retry-After: {})", after.trim()));
    }
    let excerpt = excerpt(&response.body);
    if !excerpt.is_empty() {
        reason.push_str(": ");
        reason.push_str(&excerpt);
    }
    if status == 408 || status == 429 || status >= 500 {
        Outcome::Retry(reason)
    } else {
        Outcome::Reject(reason)
    }
}

/// The start of a body on one line, control characters replaced.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&one_line, EXCERPT_MAX)
}

/// At most `max` characters, the last one `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dedup: &str) -> Config {
        Config::from_lookup(|key| match key {
            "routingKey" => Some("RK".into()),
            "dedupKey" => Some(dedup.into()),
            _ => None,
        })
        .unwrap()
    }

    fn event(data: &str) -> CloudEvent {
        CloudEvent {
            id: "ev-1".into(),
            source: "nvsentinel://test".into(),
            type_: "com.nvidia.nvsentinel.health.v1".into(),
            subject: Some("gpu-node-0001".into()),
            time: Some("2026-10-01T00:00:00Z".into()),
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            extensions: vec![],
            data: Some(data.as_bytes().to_vec()),
        }
    }

    #[test]
    fn fatal_event_triggers_critical() {
        let data = r#"{"metadata":{"cluster":"prod"},"healthEvent":{"agent":"a","componentClass":"GPU","checkName":"GpuXidError","isFatal":true,"isHealthy":false,"message":"XID 79","generatedTimestamp":"2026-10-01T00:00:01Z","nodeName":"gpu-node-0001"}}"#;
        let alert = alert(&event(data), &config("id"));
        assert_eq!(alert.action, "trigger");
        assert_eq!(
            alert.body,
            json!({
                "routing_key": "RK",
                "event_action": "trigger",
                "dedup_key": "ev-1",
                "payload": {
                    "summary": "XID 79",
                    "source": "gpu-node-0001",
                    "severity": "critical",
                    "timestamp": "2026-10-01T00:00:01Z",
                    "component": "GPU",
                    "group": "prod",
                    "class": "GpuXidError",
                    "custom_details": {"agent":"a","componentClass":"GPU","checkName":"GpuXidError","isFatal":true,"isHealthy":false,"message":"XID 79","generatedTimestamp":"2026-10-01T00:00:01Z","nodeName":"gpu-node-0001"}
                },
                "client": "Switchyard"
            })
        );
    }

    #[test]
    fn healthy_event_resolves_and_check_dedup() {
        let data = r#"{"metadata":{"cluster":"prod"},"healthEvent":{"checkName":"GpuXidError","isFatal":true,"isHealthy":true,"nodeName":"n1"}}"#;
        let a = alert(&event(data), &config("check"));
        assert_eq!(a.action, "resolve");
        assert_eq!(a.dedup_key, "prod/n1/GpuXidError");
        assert_eq!(a.body["payload"]["severity"], "info");
        assert_eq!(a.body["payload"]["summary"], "GpuXidError on n1");

        let unhealthy = r#"{"healthEvent":{"isFatal":false,"isHealthy":false}}"#;
        let a = alert(&event(unhealthy), &config("check"));
        assert_eq!(a.dedup_key, "gpu-node-0001/unknown");
        assert_eq!(a.body["payload"]["severity"], "warning");
        assert_eq!(
            a.body["payload"]["summary"],
            "health event on gpu-node-0001"
        );
        assert!(a.body["payload"].get("group").is_none());
    }

    #[test]
    fn other_events_trigger_a_generic_alert() {
        let a = alert(&event(r#"[1,2]"#), &config("id"));
        assert_eq!(
            a.body["payload"]["summary"],
            "com.nvidia.nvsentinel.health.v1 from nvsentinel://test (gpu-node-0001)"
        );
        assert_eq!(a.body["payload"]["custom_details"], json!({"data": [1, 2]}));
        let mut e = event("");
        e.data = Some(vec![0xff]);
        assert!(
            alert(&e, &config("id")).body["payload"]
                .get("custom_details")
                .is_none()
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let data = format!(r#"{{"healthEvent":{{"message":"{}"}}}}"#, "ü".repeat(2000));
        let a = alert(&event(&data), &config("id"));
        assert_eq!(
            a.body["payload"]["summary"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            1024
        );
    }

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers() {
        assert_eq!(classify(&response(202, "")), Outcome::Accepted);
        assert_eq!(
            classify(&response(
                400,
                "{\"status\":\"invalid event\",\n\"errors\":[\"x\"]}"
            )),
            Outcome::Reject(
                "PagerDuty answered HTTP 400: {\"status\":\"invalid event\", \"errors\":[\"x\"]}"
                    .into()
            )
        );
        let mut limited = response(429, "");
        limited.retry_after = Some("30".into());
        assert_eq!(
            classify(&limited),
            Outcome::Retry("PagerDuty answered HTTP 429 (Retry-After: 30)".into())
        );
        assert!(matches!(classify(&response(503, "x")), Outcome::Retry(_)));
        assert!(matches!(classify(&response(408, "")), Outcome::Retry(_)));
        assert!(matches!(classify(&response(301, "")), Outcome::Reject(_)));
        let long = classify(&response(500, &"e".repeat(1000)));
        let Outcome::Retry(reason) = long else {
            panic!()
        };
        assert!(reason.chars().count() < 250);
    }
}
