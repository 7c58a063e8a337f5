//! Operations settings: `telemetry` (metrics and health endpoints, traces)
//! and `leaderElection` (one exporting replica at a time). None of them
//! changes what is exported, and none can change on a live reload.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::{Diagnostics, Duration, Spanned};
use crate::config::common::{Secret, expanded};
use crate::sink::http::config::compile_headers;

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

/// `leaderElection: {enabled, lease, leaseDuration, renewInterval, …}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Only the replica holding the lease reads and exports; the others wait
    /// as standbys.
    #[serde(default)]
    pub enabled: bool,
    /// The lease document's `_id`: replicas with the same lease compete.
    #[serde(default = "default_lease")]
    pub lease: Spanned<String>,
    /// The collection of lease documents, in `source.mongodb.database`.
    #[serde(default = "default_collection")]
    pub collection: String,
    /// How long a lease lasts without renewal: a dead leader's standby takes
    /// over within this time.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby tries to take over). At
    /// most half of `leaseDuration`.
    #[serde(default = "default_renew_interval")]
    pub renew_interval: Duration,
    /// This replica's name in the lease. Default: `$POD_NAME`, else the
    /// host name, with the process id.
    #[serde(default)]
    pub identity: Option<String>,
}

fn default_lease() -> Spanned<String> {
    Spanned::new(
        "switchyard".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_collection() -> String {
    "Leases".to_owned()
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_renew_interval() -> Duration {
    Duration::from_secs(5)
}

/// `telemetry`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySpec {
    pub listen: SocketAddr,
    pub compat: Option<Compat>,
}

/// `leaderElection`, resolved (only when enabled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSpec {
    pub lease: String,
    pub collection: String,
    pub lease_duration: std::time::Duration,
    pub renew_interval: std::time::Duration,
    pub identity: String,
}

pub(super) fn telemetry(
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

pub(super) fn tracing(
    config: Option<&TelemetryConfig>,
    diags: &mut Diagnostics,
) -> Option<TracingSpec> {
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

pub(super) fn leader(
    config: Option<&LeaderElectionConfig>,
    has_mongodb: bool,
    diags: &mut Diagnostics,
) -> Option<LeaderSpec> {
    let config = config.filter(|c| c.enabled)?;
    let at = Some(config.lease.referenced);
    if !has_mongodb {
        diags.error(
            at,
            "leaderElection: needs a mongodb source (the lease is a document in its database)",
        );
    }
    if config.lease.value.is_empty() {
        diags.error(at, "leaderElection.lease: must not be empty");
    }
    let (duration, renew) = (config.lease_duration.0, config.renew_interval.0);
    if renew.is_zero() || renew * 2 > duration {
        diags.error(
            at,
            format!(
                "leaderElection.renewInterval: must be more than zero and at most half of leaseDuration ({})",
                config.lease_duration
            ),
        );
    }
    if duration.as_millis() < 1000 && !duration.is_zero() {
        diags.warning(
            at,
            "leaderElection.leaseDuration: under 1s leaves no room for a slow database",
        );
    }
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    Some(LeaderSpec {
        lease: config.lease.value.clone(),
        collection: config.collection.clone(),
        lease_duration: duration,
        renew_interval: renew,
        identity,
    })
}

/// `$POD_NAME` (or the host name) and the process id: unique per process,
/// readable in the lease document.
fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "switchyard".to_owned());
    format!("{host}/{}", std::process::id())
}
