//! The YAML shape of `telemetry` (metrics and health endpoints, traces)
//! and its validation. Nothing here changes what is exported, and none of
//! it can change on a live reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::common::{Diagnostics, Secret, Spanned, compile_headers, expanded};

/// `telemetry: {listen, compat, tracing}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the HTTP server for `/metrics` (Prometheus text format),
    /// `/healthz` and `/readyz`, e.g. `0.0.0.0:2112`. Without it no server
    /// runs.
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    /// Also serve another exporter's metric families, under its names, beside
    /// Switchyard's own: `nvsentinel` (NVSentinel's event exporter,
    /// `health_events_exporter_*`), so its dashboards and alerts keep working.
    #[serde(default)]
    pub compat: Option<Compat>,
    /// OpenTelemetry traces of every event, sent over OTLP.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
}

/// `telemetry.tracing: {enabled, endpoint, protocol, insecure, serviceName,
/// headers}`. A setting written here wins over its standard `OTEL_*`
/// environment variable; one left out takes the variable's value.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingConfig {
    /// Export traces. Off by default (and then it costs nothing).
    #[serde(default)]
    pub enabled: bool,
    /// The OTLP collector: `http(s)://host:port`, or `host:port` (then
    /// `insecure` picks the scheme). For `http/protobuf`, `/v1/traces` is
    /// appended when the URL has no path. Default:
    /// `$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as it is),
    /// `$OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended for HTTP), else
    /// `localhost:4317` (gRPC) or `localhost:4318` (HTTP).
    #[serde(default)]
    pub endpoint: Option<Spanned<String>>,
    /// `grpc` or `http/protobuf`. Default:
    /// `$OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `$OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// else `grpc` (what NVSentinel's services speak).
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// For an endpoint without a scheme: plain `http://` (true) or TLS
    /// (false). Default: `$OTEL_EXPORTER_OTLP_TRACES_INSECURE`,
    /// `$OTEL_EXPORTER_OTLP_INSECURE`, else false.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// The `service.name` of the spans. Default: `$OTEL_SERVICE_NAME`, else
    /// `switchyard`.
    #[serde(default)]
    pub service_name: Option<Spanned<String>>,
    /// Headers (gRPC metadata) sent with every export, e.g. an API key
    /// (`${file:…}` expanded; never logged). Added to
    /// `$OTEL_EXPORTER_OTLP_HEADERS`; a name in both takes the value here.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/json` is not
    /// supported).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "grpc" => Some(Self::Grpc),
            "http/protobuf" => Some(Self::HttpProtobuf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// `telemetry.tracing`, validated (only when enabled). What it leaves out
/// comes from the environment when tracing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingSpec {
    pub endpoint: Option<String>,
    pub protocol: Option<OtlpProtocol>,
    pub insecure: Option<bool>,
    pub service_name: Option<String>,
    pub headers: Vec<(String, Secret)>,
}

/// `telemetry.compat`: whose metric names are served as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    /// NVSentinel's event exporter (`health_events_exporter_*`).
    Nvsentinel,
}

/// `telemetry`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySpec {
    pub listen: SocketAddr,
    pub compat: Option<Compat>,
}

pub fn telemetry(
    config: Option<&TelemetryConfig>,
    diags: &mut Diagnostics,
) -> Option<TelemetrySpec> {
    let config = config?;
    let listen = config.listen.as_ref()?;
    match listen.value.parse() {
        Ok(listen) => Some(TelemetrySpec {
            listen,
            compat: config.compat,
        }),
        Err(_) => {
            diags.error(
                Some(listen.referenced),
                format!(
                    "telemetry.listen: {:?} is not an address; write e.g. 0.0.0.0:2112",
                    listen.value
                ),
            );
            None
        }
    }
}

pub fn tracing(config: Option<&TelemetryConfig>, diags: &mut Diagnostics) -> Option<TracingSpec> {
    let config = config?.tracing.as_ref().filter(|t| t.enabled)?;
    let endpoint = config.endpoint.as_ref().and_then(|e| {
        let value = expanded(e, "telemetry.tracing.endpoint", diags)?;
        let scheme = value.split_once("://").map(|(scheme, _)| scheme);
        let with_scheme = match scheme {
            Some(_) => value.clone(),
            None => format!("http://{value}"),
        };
        let bad = |why: &str| format!("telemetry.tracing.endpoint: {value:?} {why}");
        if !matches!(scheme, None | Some("http" | "https")) {
            diags.error(
                Some(e.referenced),
                bad("must be http(s)://host:port or host:port"),
            );
        } else if url::Url::parse(&with_scheme).map_or(true, |u| u.host_str().is_none()) {
            diags.error(Some(e.referenced), bad("is not a URL"));
        } else {
            return Some(value);
        }
        None
    });
    let service_name = config.service_name.as_ref().and_then(|n| {
        let value = expanded(n, "telemetry.tracing.serviceName", diags)?;
        if value.trim().is_empty() {
            diags.error(
                Some(n.referenced),
                "telemetry.tracing.serviceName: must not be empty",
            );
            return None;
        }
        Some(value)
    });
    Some(TracingSpec {
        endpoint,
        protocol: config.protocol,
        insecure: config.insecure,
        service_name,
        headers: compile_headers(&config.headers, "telemetry.tracing", diags),
    })
}
