//! The YAML shape of the `kafka` receiver and its validation into a
//! [`KafkaSpec`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::common::expanded;
use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::mapping::Template;

/// `kafka`: CloudEvents produced to Kafka topics (the CloudEvents Kafka
/// protocol binding), acknowledged by all in-sync replicas.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` (`${…}` expanded).
    pub brokers: Vec<Spanned<String>>,
    /// The topic of each event, a template: `health.{{data.healthEvent.agent}}`.
    pub topic: Spanned<String>,
    /// The record key, a template; it picks the partition (the Java
    /// client's murmur2 partitioner), so events with one key stay in order.
    /// Default: the `partitionkey` extension if the event has one, else the
    /// event id.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// `structured` (the event JSON as value) or `binary` (`ce_*` headers,
    /// the data as value).
    #[serde(default)]
    pub mode: KafkaMode,
    /// How long to wait for the brokers (metadata, each produce request).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KafkaMode {
    #[default]
    Structured,
    Binary,
}

/// A validated `kafka` receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSpec {
    pub brokers: Vec<String>,
    pub topic: Template,
    pub key: Option<Template>,
    pub mode: KafkaMode,
    pub timeout: std::time::Duration,
}

impl KafkaSinkConfig {
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<KafkaSpec> {
        let place = format!("{place}.kafka");
        let mut brokers = Vec::new();
        for b in &self.brokers {
            let broker = expanded(b, &format!("{place}.brokers"), diags)?;
            let valid = broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                diags.error(
                    Some(b.referenced),
                    format!("{place}.brokers: {broker:?} is not host:port"),
                );
            }
            brokers.push(broker);
        }
        if brokers.is_empty() {
            diags.error(
                Some(self.topic.referenced),
                format!("{place}.brokers: name at least one broker"),
            );
        }
        let template = |v: &Spanned<String>, key: &str, diags: &mut Diagnostics| {
            Template::compile(&v.value, metadata)
                .map_err(|e| diags.error(Some(v.referenced), format!("{place}.{key}: {e}")))
                .ok()
        };
        let topic = template(&self.topic, "topic", diags)?;
        if let Some(constant) = topic.as_constant()
            && let Err(e) = check_topic(constant)
        {
            diags.error(Some(self.topic.referenced), format!("{place}.topic: {e}"));
        }
        let key = match &self.key {
            Some(k) => Some(template(k, "key", diags)?),
            None => None,
        };
        if self.timeout.0.is_zero() {
            diags.error(
                Some(self.topic.referenced),
                format!("{place}.timeout: must be greater than zero"),
            );
        }
        Some(KafkaSpec {
            brokers,
            topic,
            key,
            mode: self.mode,
            timeout: self.timeout.0,
        })
    }
}

/// A legal Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic is empty".into());
    }
    if topic == "." || topic == ".." {
        return Err(format!("{topic:?} is not a topic name"));
    }
    if topic.len() > 249 {
        return Err("the topic is longer than 249 characters".into());
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{topic:?} contains {c:?}; topics are letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn topics() {
        use super::check_topic;
        assert!(check_topic("health.gpu-node_1").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("..").is_err());
        assert!(check_topic("a/b").unwrap_err().contains("'/'"));
        assert!(check_topic(&"x".repeat(250)).is_err());
    }
}
