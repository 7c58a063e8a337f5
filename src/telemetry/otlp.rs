//! Where traces go: the OTLP exporter (gRPC over tonic, or HTTP/protobuf
//! over the project's reqwest client), configured from `telemetry.tracing`
//! and, for what it leaves out, the standard `OTEL_*` variables; the SDK's
//! tracer provider with its batching span processor.
//!
//! Precedence, per setting: the YAML value, then the signal-specific
//! variable (`OTEL_EXPORTER_OTLP_TRACES_*`), then the generic one
//! (`OTEL_EXPORTER_OTLP_*`), then the default — the order the OTLP exporter
//! specification gives programmatic configuration and the variables. The
//! SDK itself reads `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `_TIMEOUT` and `_COMPRESSION`.

use std::sync::Arc;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::info;

use super::config::{OtlpProtocol, TracingSpec};
use super::traces::{JoiningIds, Tracer};

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("{variable}={value:?}: not an OTLP protocol this build speaks (grpc, http/protobuf)")]
    Protocol {
        variable: &'static str,
        value: String,
    },
    #[error("telemetry.tracing: {0}")]
    Exporter(String),
}

/// The exporter's settings once the environment has filled in what the
/// YAML left out. Headers from the YAML are kept apart (they are secrets
/// and never printed); those of `OTEL_EXPORTER_OTLP_HEADERS` are read by
/// the exporter itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub protocol: OtlpProtocol,
    /// The full URL spans are sent to.
    pub endpoint: String,
    pub service_name: String,
}

/// The service name when neither the YAML nor `OTEL_SERVICE_NAME` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "switchyard";

/// Fills in `spec` from `env` (a variable's value, `None` or empty when
/// unset).
pub fn resolve(
    spec: &TracingSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, TracingError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let protocol = match spec.protocol {
        Some(p) => p,
        None => {
            let mut protocol = OtlpProtocol::Grpc;
            for variable in [
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ] {
                if let Some(value) = env(variable) {
                    protocol = OtlpProtocol::parse(&value)
                        .ok_or(TracingError::Protocol { variable, value })?;
                    break;
                }
            }
            protocol
        }
    };
    let insecure = spec.insecure.unwrap_or_else(|| {
        env("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
            .or_else(|| env("OTEL_EXPORTER_OTLP_INSECURE"))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    });
    let with_scheme = |endpoint: &str| {
        let endpoint = endpoint.trim();
        if endpoint.contains("://") {
            endpoint.to_owned()
        } else if insecure {
            format!("http://{endpoint}")
        } else {
            format!("https://{endpoint}")
        }
    };
    let http = protocol == OtlpProtocol::HttpProtobuf;
    let endpoint = if let Some(e) = &spec.endpoint {
        let url = with_scheme(e);
        // A base address gets the traces path; a URL with a path is used as is.
        match url.split_once("://").map(|(_, rest)| rest.split_once('/')) {
            Some(None | Some((_, ""))) if http => {
                format!("{}/v1/traces", url.trim_end_matches('/'))
            }
            _ => url,
        }
    } else if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        with_scheme(&e)
    } else if let Some(e) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let url = with_scheme(&e);
        if http {
            format!("{}/v1/traces", url.trim_end_matches('/'))
        } else {
            url
        }
    } else if http {
        "http://localhost:4318/v1/traces".to_owned()
    } else {
        "http://localhost:4317".to_owned()
    };
    let service_name = spec
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    Ok(Resolved {
        protocol,
        endpoint,
        service_name,
    })
}

/// Traces being exported: the tracer for the pipeline, and the provider to
/// flush at exit.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: Tracer,
}

impl Tracing {
    /// Starts exporting as `spec` and the environment say. Must run inside
    /// the tokio runtime (the exporters' connections live there). Sets the
    /// global tracer provider too, for spans outside the pipeline (the
    /// MongoDB backfill).
    pub fn start(spec: &TracingSpec) -> Result<Self, TracingError> {
        let resolved = resolve(spec, &|name| std::env::var(name).ok())?;
        let headers = header_map(spec);
        let exporter = match resolved.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(resolved.endpoint.clone())
                .with_interceptor(Metadata(Arc::new(headers)))
                .build(),
            OtlpProtocol::HttpProtobuf => {
                let client = crate::net::http_client::build(
                    &Default::default(),
                    std::time::Duration::from_secs(10),
                    "OTLP exporter",
                )
                .map_err(TracingError::Exporter)?;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(resolved.endpoint.clone())
                    .with_http_client(Client {
                        client,
                        headers,
                        runtime: tokio::runtime::Handle::current(),
                    })
                    .build()
            }
        }
        .map_err(|e| TracingError::Exporter(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(resolved.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_id_generator(JoiningIds::default())
            .with_resource(resource)
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        info!(
            protocol = resolved.protocol.as_str(),
            endpoint = %resolved.endpoint,
            service = %resolved.service_name,
            "exporting traces over OTLP"
        );
        let tracer = Tracer::new(&provider);
        Ok(Self { provider, tracer })
    }

    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Exports the spans still buffered (waiting at most a few seconds for
    /// the collector) and stops.
    pub async fn shutdown(self) {
        let provider = self.provider;
        // Blocks until the processor's thread has exported: not on a
        // runtime thread.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "spans not exported at shutdown may be lost");
        }
    }
}

/// The YAML's headers (validated as header names and values).
fn header_map(spec: &TracingSpec) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &spec.headers {
        if let (Ok(n), Ok(mut v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value.0),
        ) {
            v.set_sensitive(true);
            map.insert(n, v);
        }
    }
    map
}

/// gRPC: the YAML's headers as metadata, over those of the environment.
#[derive(Clone)]
struct Metadata(Arc<HeaderMap>);

impl tonic::service::Interceptor for Metadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if self.0.is_empty() {
            return Ok(request);
        }
        let mut headers = std::mem::take(request.metadata_mut()).into_headers();
        for (name, value) in self.0.iter() {
            headers.insert(name.clone(), value.clone());
        }
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(request)
    }
}

/// HTTP/protobuf over the project's reqwest client (rustls, system roots),
/// run on the tokio runtime: the batch processor's own thread has none.
struct Client {
    client: reqwest::Client,
    /// The YAML's headers, set over those the exporter adds.
    headers: HeaderMap,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client(reqwest)")
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        let request = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(headers)
            .body(body);
        let response = self.runtime.spawn(async move {
            let response = request.send().await?;
            let mut out = Response::builder().status(response.status());
            if let Some(h) = out.headers_mut() {
                *h = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(out.body(body))
        });
        let built = response.await?.map_err(crate::net::http_client::describe)?;
        Ok(built?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec() -> TracingSpec {
        TracingSpec {
            endpoint: None,
            protocol: None,
            insecure: None,
            service_name: None,
            headers: Vec::new(),
        }
    }

    fn with(vars: &[(&str, &str)], spec: &TracingSpec) -> Result<Resolved, TracingError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(spec, &|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_grpc_on_localhost() {
        let r = with(&[], &spec()).unwrap();
        assert_eq!(r.protocol, OtlpProtocol::Grpc);
        assert_eq!(r.endpoint, "http://localhost:4317");
        assert_eq!(r.service_name, "switchyard");
        let http = TracingSpec {
            protocol: Some(OtlpProtocol::HttpProtobuf),
            ..spec()
        };
        assert_eq!(
            with(&[], &http).unwrap().endpoint,
            "http://localhost:4318/v1/traces"
        );
    }

    #[test]
    fn nvsentinel_variables_carry_over() {
        // What NVSentinel's chart sets from global.tracing: host:port and insecure.
        let vars = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "otel-collector.monitoring:4317",
            ),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ("OTEL_SERVICE_NAME", "event-exporter"),
        ];
        let r = with(&vars, &spec()).unwrap();
        assert_eq!(r.endpoint, "http://otel-collector.monitoring:4317");
        assert_eq!(r.service_name, "event-exporter");
        // Without insecure a bare host:port means TLS.
        let r = with(&vars[..1], &spec()).unwrap();
        assert_eq!(r.endpoint, "https://otel-collector.monitoring:4317");
    }

    #[test]
    fn http_paths_follow_the_otlp_rules() {
        let http = |vars: &[(&str, &str)]| {
            with(
                &[vars, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]].concat(),
                &spec(),
            )
            .unwrap()
            .endpoint
        };
        // The generic variable is a base: the signal's path is appended.
        assert_eq!(
            http(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            http(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp")]),
            "http://c:4318/otlp/v1/traces"
        );
        // The signal's own variable is used as it is, and wins.
        assert_eq!(
            http(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9999/in"),
            ]),
            "http://t:9999/in"
        );
    }

    #[test]
    fn the_yaml_wins_over_the_environment() {
        let vars = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://env:1/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "false"),
            ("OTEL_SERVICE_NAME", "from-env"),
        ];
        let yaml = TracingSpec {
            endpoint: Some("collector:4318".into()),
            protocol: Some(OtlpProtocol::HttpProtobuf),
            insecure: Some(true),
            service_name: Some("from-yaml".into()),
            headers: Vec::new(),
        };
        let r = with(&vars, &yaml).unwrap();
        assert_eq!(r.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(r.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(r.service_name, "from-yaml");
        // A YAML URL with a path is used as it is.
        let yaml = TracingSpec {
            endpoint: Some("https://c/custom/path".into()),
            ..yaml
        };
        assert_eq!(
            with(&vars, &yaml).unwrap().endpoint,
            "https://c/custom/path"
        );
    }

    #[test]
    fn an_unknown_protocol_is_an_error() {
        let e = with(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], &spec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\": not an OTLP protocol this build speaks (grpc, http/protobuf)"
        );
        // The signal's variable is read first.
        let r = with(
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            &spec(),
        )
        .unwrap();
        assert_eq!(r.protocol, OtlpProtocol::HttpProtobuf);
    }
}
