//! The YAML shape of the `mqtt` receiver and its validation into an
//! [`MqttSpec`].

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::config::common::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, TlsConfig, TlsSpec, expanded};
use crate::mapping::Template;

/// `mqtt`: CloudEvents published to MQTT topics (the CloudEvents MQTT
/// protocol binding), MQTT 5 or 3.1.1, QoS 1 by default.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// `mqtt://host:1883` or, with TLS, `mqtts://host:8883` (`${…}`
    /// expanded; a user and password in the URL are kept secret).
    pub url: Spanned<String>,
    /// The topic of each event, a template: `health/{{data.healthEvent.nodeName}}`.
    pub topic: Spanned<String>,
    /// `5` (the default) or `3.1.1`.
    #[serde(default)]
    pub version: MqttVersion,
    /// `1` (the default): an event counts as delivered when the broker's
    /// PUBACK for it arrived. `0`: when it was written to the connection.
    #[serde(default)]
    pub qos: Option<Spanned<u8>>,
    /// Publish with the retain flag.
    #[serde(default)]
    pub retain: bool,
    /// `structured` (the event JSON as payload) or `binary` (attributes as
    /// MQTT 5 user properties, the data as payload; MQTT 5 only).
    #[serde(default)]
    pub mode: MqttMode,
    /// The client identifier; default `switchyard-` and a per-process suffix.
    #[serde(default)]
    pub client_id: Option<Spanned<String>>,
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// The password (`${…}` expanded; kept secret).
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// TLS for `mqtts://`: `caFile`, `certFile`/`keyFile`, `insecureSkipVerify`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// How long to wait for the broker (connect, and the acks of a batch).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The protocol version: `version: 5` or `version: 3.1.1`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    #[default]
    V5,
}

impl<'de> Deserialize<'de> for MqttVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(5) => Ok(Self::V5),
            Raw::Text(t) if t == "5" || t == "5.0" => Ok(Self::V5),
            Raw::Text(t) if t == "3.1.1" || t == "311" => Ok(Self::V311),
            _ => Err(serde::de::Error::custom(
                "unknown MQTT version; expected 5 or 3.1.1",
            )),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MqttMode {
    #[default]
    Structured,
    Binary,
}

/// A validated `mqtt` receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    /// TLS settings when the URL is `mqtts://`.
    pub tls: Option<TlsSpec>,
    pub topic: Template,
    pub version: MqttVersion,
    /// QoS 1 when true, else QoS 0.
    pub acknowledged: bool,
    pub retain: bool,
    pub mode: MqttMode,
    pub client_id: String,
    pub credentials: Option<(String, Secret)>,
    pub timeout: std::time::Duration,
}

impl MqttSinkConfig {
    pub fn compile(
        &self,
        place: &str,
        metadata: &Map<String, Value>,
        diags: &mut Diagnostics,
    ) -> Option<MqttSpec> {
        let place = format!("{place}.mqtt");
        let at = Some(self.url.referenced);
        let text = expanded(&self.url, &format!("{place}.url"), diags)?;
        // The parse error never quotes the URL (it may hold a password).
        let Ok(url) = url::Url::parse(&text) else {
            diags.error(
                at,
                format!("{place}.url: not a URL (expected mqtt://host:1883 or mqtts://host:8883)"),
            );
            return None;
        };
        let secure = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                diags.error(
                    at,
                    format!("{place}.url: unknown scheme {other:?}; use mqtt:// or mqtts://"),
                );
                return None;
            }
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            diags.error(at, format!("{place}.url: no host"));
            return None;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if secure { 8883 } else { 1883 });
        let tls_set = self.tls.ca_file.is_some()
            || self.tls.cert_file.is_some()
            || self.tls.insecure_skip_verify;
        let tls = if secure {
            Some(
                self.tls
                    .compile(&format!("{place}.tls"), self.url.referenced, diags)?,
            )
        } else {
            if tls_set {
                diags.error(
                    at,
                    format!("{place}.tls: the URL is mqtt:// (no TLS); use mqtts:// for TLS"),
                );
            }
            None
        };

        let topic = match Template::compile(&self.topic.value, metadata) {
            Ok(t) => t,
            Err(e) => {
                diags.error(Some(self.topic.referenced), format!("{place}.topic: {e}"));
                return None;
            }
        };
        if let Some(constant) = topic.as_constant()
            && let Err(e) = check_topic(constant)
        {
            diags.error(Some(self.topic.referenced), format!("{place}.topic: {e}"));
        }
        let qos_at = Some(
            self.qos
                .as_ref()
                .map_or(self.url.referenced, |q| q.referenced),
        );
        let acknowledged = match self.qos.as_ref().map_or(1, |q| q.value) {
            0 => false,
            1 => true,
            2 => {
                diags.error(
                    qos_at,
                    format!(
                        "{place}.qos: QoS 2 is not supported; use 1 (consumers deduplicate by event id)"
                    ),
                );
                return None;
            }
            n => {
                diags.error(
                    qos_at,
                    format!("{place}.qos: {n} is not an MQTT QoS; use 0 or 1"),
                );
                return None;
            }
        };
        if self.mode == MqttMode::Binary && self.version == MqttVersion::V311 {
            diags.error(
                at,
                format!(
                    "{place}.mode: binary needs MQTT 5 (user properties); MQTT 3.1.1 carries structured events only"
                ),
            );
        }

        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let from_url = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                Secret(url.password().map(decode).unwrap_or_default()),
            )
        });
        let credentials = match (&self.username, &self.password, from_url) {
            (None, None, from_url) => from_url,
            (Some(user), password, None) => Some((
                expanded(user, &format!("{place}.username"), diags)?,
                Secret(match password {
                    Some(p) => expanded(p, &format!("{place}.password"), diags)?,
                    None => String::new(),
                }),
            )),
            (None, Some(p), None) => {
                diags.error(
                    Some(p.referenced),
                    format!("{place}.password: needs a username"),
                );
                return None;
            }
            (_, _, Some(_)) => {
                diags.error(
                    at,
                    format!(
                        "{place}: credentials both in the URL and in username/password; keep one"
                    ),
                );
                return None;
            }
        };
        let client_id = match &self.client_id {
            Some(written) => {
                let id = expanded(written, &format!("{place}.clientId"), diags)?;
                if id.is_empty() || id.len() > 65_535 {
                    diags.error(
                        Some(written.referenced),
                        format!("{place}.clientId: must be 1 to 65535 bytes"),
                    );
                }
                id
            }
            None => default_client_id(),
        };
        if self.timeout.0.is_zero() {
            diags.error(at, format!("{place}.timeout: must be greater than zero"));
        }
        Some(MqttSpec {
            host,
            port,
            tls,
            topic,
            version: self.version,
            acknowledged,
            retain: self.retain,
            mode: self.mode,
            client_id,
            credentials,
            timeout: self.timeout.0,
        })
    }
}

/// `switchyard-` and twelve hex digits from the process id and the start
/// time: 23 characters, the length every MQTT 3.1.1 broker must accept.
fn default_client_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos ^ (u64::from(std::process::id()) << 20);
    format!("switchyard-{:012x}", mixed & 0xffff_ffff_ffff)
}

/// A topic MQTT accepts for publishing: not empty, no wildcards (`+`, `#`),
/// no NUL, at most 65535 bytes.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic is empty".into());
    }
    if topic.contains(['+', '#']) {
        return Err(format!(
            "{topic:?} has a wildcard (+ or #); publish to a concrete topic"
        ));
    }
    if topic.contains('\0') {
        return Err(format!("{topic:?} contains a NUL character"));
    }
    if topic.len() > 65_535 {
        return Err("the topic is longer than 65535 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(check_topic("health/node-1").is_ok());
        assert!(check_topic("/leading/slash").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("health/+").unwrap_err().contains("wildcard"));
        assert!(check_topic("health/#").unwrap_err().contains("wildcard"));
        assert!(check_topic("a\0b").unwrap_err().contains("NUL"));
    }

    #[test]
    fn default_client_ids_fit_mqtt_3_1_1() {
        let id = default_client_id();
        assert_eq!(id.len(), 23);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
