//! Field templates for the `type`, `source` and `subject` overrides:
//! literal text with `{{ path }}` placeholders. `{{metadata.KEY}}` is the
//! config metadata (fixed at load); any other path is read from the event
//! like a route condition (`{{data.healthEvent.nodeName}}`, `{{id}}`).

use serde_json::{Map, Value};

use crate::event::{Event, FieldPath};

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(FieldPath),
}

/// Errors: at compile time (bad placeholder) and at render time (missing field).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unterminated {{{{ in template")]
    Unterminated,
    #[error("{{{{metadata.{0}}}}}: no such key in metadata")]
    UnknownMetadata(String),
    #[error("{{{{{0}}}}}: {1}")]
    BadPath(String, String),
    #[error("{{{{{0}}}}}: the event has no such field")]
    Missing(String),
}

impl Template {
    pub fn compile(text: &str, metadata: &Map<String, Value>) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut text_buf = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            text_buf.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
            let name = after[..end].trim();
            if let Some(key) = name.strip_prefix("metadata.") {
                match metadata.get(key).and_then(Value::as_str) {
                    Some(v) => text_buf.push_str(v),
                    None => return Err(TemplateError::UnknownMetadata(key.to_owned())),
                }
            } else {
                let path = FieldPath::parse(name)
                    .map_err(|e| TemplateError::BadPath(name.to_owned(), e.to_string()))?;
                if !text_buf.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text_buf)));
                }
                parts.push(Part::Field(path));
            }
            rest = &after[end + 2..];
        }
        text_buf.push_str(rest);
        if !text_buf.is_empty() {
            parts.push(Part::Text(text_buf));
        }
        Ok(Self { parts })
    }

    /// The text when the template has no event fields.
    pub fn as_constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    pub fn render(&self, event: &Event) -> Result<String, TemplateError> {
        if let Some(c) = self.as_constant() {
            return Ok(c.to_owned());
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => {
                    let found = path.any(event, &mut |v| {
                        out.push_str(v);
                        true
                    });
                    if !found {
                        return Err(TemplateError::Missing(path.to_string()));
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use serde_json::json;

    #[test]
    fn renders_metadata_and_fields() {
        let meta: Map<String, Value> = json!({"cluster": "prod"}).as_object().unwrap().clone();
        let ev = EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .data("application/json", json!({"kind": "Pod"}))
            .build()
            .unwrap();
        let t = Template::compile("k8s://{{metadata.cluster}}/{{ data.kind }}", &meta).unwrap();
        assert_eq!(t.render(&ev).unwrap(), "k8s://prod/Pod");
        let c = Template::compile("nvsentinel://{{metadata.cluster}}/x", &meta).unwrap();
        assert_eq!(c.as_constant(), Some("nvsentinel://prod/x"));
        let missing = Template::compile("{{data.nope}}", &meta).unwrap();
        assert_eq!(
            missing.render(&ev).unwrap_err().to_string(),
            "{{data.nope}}: the event has no such field"
        );
        assert_eq!(
            Template::compile("{{metadata.zone}}", &meta)
                .unwrap_err()
                .to_string(),
            "{{metadata.zone}}: no such key in metadata"
        );
        assert_eq!(
            Template::compile("{{id", &meta).unwrap_err(),
            TemplateError::Unterminated
        );
    }
}
