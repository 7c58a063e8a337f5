//! The YAML shape of the `webhook` receiver and its validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::template::Templates;
use crate::config::common::compile_headers;
use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, TlsConfig, TlsSpec, check_url};
use crate::sink::http::config::{OAuth2Config, OAuth2Spec};

/// `webhook`: one request per event with a payload of your own: a `layout`
/// (YAML rendered to JSON) or a raw `body` template.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// The URL; a template (`{{metadata.team}}`), `${…}` expanded first.
    pub endpoint: Spanned<String>,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers (`${…}` expanded in values).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// A YAML tree whose string leaves are handlebars templates, sent as JSON.
    #[serde(default)]
    pub layout: Option<Spanned<Value>>,
    /// Or a raw handlebars template for the body …
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    /// … sent with this content type (default `text/plain; charset=utf-8`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    10
}

/// The payload of a webhook. Its text may hold an expanded secret (a
/// routing key), so `Debug` does not show it.
#[derive(Clone, PartialEq)]
pub enum Payload {
    Layout(Value),
    Body {
        template: String,
        content_type: String,
    },
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Layout(_) => f.write_str("Layout(***)"),
            Self::Body { content_type, .. } => write!(f, "Body({content_type}, ***)"),
        }
    }
}

/// A validated webhook. The endpoint may hold a secret: never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub endpoint: Secret,
    pub method: reqwest::Method,
    pub headers: Vec<(String, Secret)>,
    pub payload: Payload,
    pub timeout: std::time::Duration,
    pub tls: TlsSpec,
    pub oauth2: Option<OAuth2Spec>,
    /// The config `metadata`, available to templates as `metadata`.
    pub metadata: Map<String, Value>,
}

impl WebhookSinkConfig {
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<(WebhookSpec, usize)> {
        let place = format!("{place}.webhook");
        let at = Some(self.endpoint.referenced);
        let mut templates = Templates::new();
        let endpoint = match crate::config::common::expand(&self.endpoint.value) {
            Ok(e) => e.into_owned(),
            Err(e) => {
                diags.error(at, format!("{place}.endpoint: {e}"));
                return None;
            }
        };
        if endpoint.contains("{{") {
            if let Err(e) = templates.add(&endpoint) {
                diags.error(at, format!("{place}.endpoint: {e}"));
            }
        } else {
            check_url(&self.endpoint, &format!("{place}.endpoint"), diags)?;
        }
        let method = match self.method.to_ascii_uppercase().as_str() {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            _ => {
                diags.error(
                    at,
                    format!(
                        "{place}.method: {:?} is not one of POST, PUT, PATCH",
                        self.method
                    ),
                );
                return None;
            }
        };
        let payload = match (&self.layout, &self.body) {
            (Some(layout), None) => {
                let mut errors = Vec::new();
                let value = expand_leaves(&layout.value, &format!("{place}.layout"), &mut errors);
                templates.layout(&value, &format!("{place}.layout"), &mut errors);
                for e in errors {
                    diags.error(Some(layout.referenced), e);
                }
                Payload::Layout(value)
            }
            (None, Some(body)) => {
                if let Err(e) = templates.add(&body.value) {
                    diags.error(Some(body.referenced), format!("{place}.body: {e}"));
                }
                let content_type = self
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "text/plain; charset=utf-8".into());
                if reqwest::header::HeaderValue::from_str(&content_type).is_err() {
                    diags.error(
                        Some(body.referenced),
                        format!("{place}.contentType: not a valid header value"),
                    );
                }
                Payload::Body {
                    template: body.value.clone(),
                    content_type,
                }
            }
            _ => {
                diags.error(at, format!("{place}: set exactly one of: layout, body"));
                return None;
            }
        };
        if self.content_type.is_some() && self.layout.is_some() {
            diags.error(
                at,
                format!("{place}.contentType: a layout is always sent as application/json"),
            );
        }
        if self.concurrency == 0 {
            diags.error(at, format!("{place}.concurrency: must be at least 1"));
        }
        let headers = compile_headers(&self.headers, &place, diags);
        let tls = self
            .tls
            .compile(&format!("{place}.tls"), self.endpoint.referenced, diags);
        let oauth2 = match &self.oauth2 {
            Some(o) => Some(o.compile(&format!("{place}.oauth2"), diags)?),
            None => None,
        };
        let spec = WebhookSpec {
            endpoint: Secret(endpoint),
            method,
            headers,
            payload,
            timeout: self.timeout.0,
            tls: tls?,
            oauth2,
            metadata: metadata.clone(),
        };
        Some((spec, self.concurrency.max(1)))
    }
}

/// `${…}` in the layout's strings (a routing key in the body), before the
/// templates see them.
fn expand_leaves(value: &Value, place: &str, errors: &mut Vec<String>) -> Value {
    match value {
        Value::String(s) => match crate::config::common::expand(s) {
            Ok(v) => Value::String(v.into_owned()),
            Err(e) => {
                errors.push(format!("{place}: {e}"));
                value.clone()
            }
        },
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand_leaves(v, &format!("{place}.{k}"), errors)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| expand_leaves(v, &format!("{place}[{i}]"), errors))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, validate};

    #[test]
    #[allow(unsafe_code)] // set_var (SAFETY below)
    fn secrets_do_not_show_in_debug_output() {
        // SAFETY: only this test reads these variables.
        unsafe {
            std::env::set_var("SWITCHYARD_TEST_PD_KEY", "pd-secret-key");
            std::env::set_var(
                "SWITCHYARD_TEST_HOOK",
                "https://hooks.example.com/T0/B0/hook-secret",
            );
        }
        let yaml = "metadata: {cluster: c}\nsource: {stdin: {}}\nroute: {match: [{receiver: pd}, {receiver: hook}]}\nreceivers:\n  \
            - name: pd\n    webhook: {endpoint: https://events.example.com/v2/enqueue, headers: {X-Key: \"${SWITCHYARD_TEST_PD_KEY}\"}, layout: {routing_key: \"${SWITCHYARD_TEST_PD_KEY}\"}}\n  \
            - name: hook\n    http: {endpoint: \"${SWITCHYARD_TEST_HOOK}\", oauth2: {tokenUrl: \"https://auth.example.com/t\", clientId: c, clientSecret: \"${SWITCHYARD_TEST_PD_KEY}\"}}\n";
        let (compiled, _) = validate(&parse(yaml).unwrap()).unwrap();
        let debug = format!("{compiled:?}");
        assert!(!debug.contains("pd-secret-key"), "{debug}");
        assert!(!debug.contains("hook-secret"), "{debug}");
    }
}
