//! The telemetry HTTP server: `GET /metrics` (OpenMetrics text),
//! `GET /healthz` (the process answers), `GET /readyz` (200 when this
//! replica does its job: exporting with its source connected, or waiting as
//! a standby; 503 otherwise; a JSON body says which).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::Telemetry;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.listen {addr}: {source}")]
pub struct ServeError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr` and serves until `shutdown`. Returns the bound address
/// (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry);
    info!(listen = %bound, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            error!(error = %e, "telemetry server stopped");
        }
    });
    Ok(bound)
}

async fn metrics(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        super::metrics::render(&telemetry),
    )
}

async fn readyz(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    let readiness = telemetry.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        readiness.to_json() + "\n",
    )
}
