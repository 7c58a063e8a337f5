//! `webhook`: one request per event, with a payload of the user's own
//! design — a `layout` (a YAML tree of handlebars templates, sent as JSON)
//! or a raw `body` template — for Slack, Teams, Opsgenie, PagerDuty and
//! in-house services. A template that fails for one event dead-letters that
//! event; the receiver goes on.
//!
//! Templates see the event as its structured JSON (`id`, `type`, `source`,
//! `subject`, `time`, `data`, extensions) plus the config `metadata`.

pub mod config;
pub mod template;

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use self::config::{Payload, WebhookSpec};
use self::template::{Layout, Templates};
use super::http::Transport;
use super::{Delivery, Item, Sink};
use crate::BoxFuture;
use crate::event::Event;

pub struct WebhookSink {
    spec: WebhookSpec,
    templates: Templates,
    /// The endpoint's template, when it has placeholders.
    endpoint: Option<String>,
    body: Body,
    transport: Transport,
}

enum Body {
    Layout(Layout),
    Template {
        name: String,
        content_type: HeaderValue,
    },
}

impl WebhookSink {
    pub fn new(spec: &WebhookSpec) -> Result<Self, String> {
        let mut templates = Templates::new();
        let endpoint = if spec.endpoint.0.contains("{{") {
            Some(templates.add(&spec.endpoint.0)?)
        } else {
            None
        };
        let body = match &spec.payload {
            Payload::Layout(v) => {
                let mut errors = Vec::new();
                let layout = templates.layout(v, "layout", &mut errors);
                if let Some(e) = errors.into_iter().next() {
                    return Err(e);
                }
                Body::Layout(layout)
            }
            Payload::Body {
                template,
                content_type,
            } => Body::Template {
                name: templates.add(template)?,
                content_type: HeaderValue::from_str(content_type)
                    .map_err(|_| "contentType".to_owned())?,
            },
        };
        let transport =
            Transport::new(&spec.tls, spec.timeout, &spec.headers, spec.oauth2.as_ref())?;
        Ok(Self {
            spec: spec.clone(),
            templates,
            endpoint,
            body,
            transport,
        })
    }

    /// What templates see: the structured event plus the config metadata.
    fn context(&self, event: &Event) -> Value {
        let mut context = crate::event::to_value(event);
        if let Value::Object(map) = &mut context {
            map.insert("metadata".into(), Value::Object(self.spec.metadata.clone()));
        }
        context
    }

    /// The URL, headers and body for one event, or why it cannot be sent.
    fn request(&self, event: &Event) -> Result<(String, HeaderMap, Vec<u8>), String> {
        let context = self.context(event);
        let url = match &self.endpoint {
            Some(name) => self
                .templates
                .render(name, &context)
                .map_err(|e| format!("endpoint template: {e}"))?,
            None => self.spec.endpoint.0.clone(),
        };
        if reqwest::Url::parse(&url).is_err() {
            return Err("the endpoint template did not render to a URL".to_owned());
        }
        let mut headers = HeaderMap::new();
        let body = match &self.body {
            Body::Layout(layout) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let value = self
                    .templates
                    .render_layout(layout, &context)
                    .map_err(|e| format!("layout: {e}"))?;
                serde_json::to_vec(&value).expect("JSON value serialises")
            }
            Body::Template { name, content_type } => {
                headers.insert(CONTENT_TYPE, content_type.clone());
                self.templates
                    .render(name, &context)
                    .map_err(|e| format!("body template: {e}"))?
                    .into_bytes()
            }
        };
        Ok((url, headers, body))
    }
}

impl WebhookSink {
    /// Its OAuth2 token source, if it has one.
    pub fn tokens(&self) -> Option<&Arc<super::http::oauth2::TokenSource>> {
        self.transport.tokens()
    }
}

impl Sink for WebhookSink {
    fn deliver<'a>(&'a self, items: &'a [Item]) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            for item in items {
                let (url, headers, body) = match self.request(item.event()) {
                    Ok(r) => r,
                    Err(e) => return Delivery::Reject(e),
                };
                let result = self
                    .transport
                    .send(self.spec.method.clone(), &url, headers, body)
                    .await;
                if result != Delivery::Delivered {
                    return result;
                }
            }
            Delivery::Delivered
        })
    }
}
