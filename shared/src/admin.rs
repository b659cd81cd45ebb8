//! The admin HTTP server, one port per service:
//!
//! - `GET /metrics` — Prometheus text exposition (404 when metrics are off)
//! - `GET /healthz` — liveness: 200 while the process can answer at all
//! - `GET /readyz`  — readiness: 200 once every listener is bound and until draining starts
//! - `GET /version` — service name and version as JSON
//!
//! Nothing here changes state; state-changing endpoints will live under `/admin/`, off
//! unless enabled (DESIGN.md, "Runtime").

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::shutdown::{Phase, Readiness};

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Service name for `/version`.
    pub service: &'static str,
    /// Build version for `/version`.
    pub version: &'static str,
    /// `None` when metrics are off.
    pub metrics: Option<Metrics>,
    /// Readiness for `/readyz`.
    pub readiness: Readiness,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    match &state.metrics {
        Some(metrics) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics are off (metrics = false)\n".to_owned(),
        ),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.readiness.phase() {
        Phase::Serving => (StatusCode::OK, "ready\n"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        Phase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
    }
}

async fn version(State(state): State<AdminState>) -> impl IntoResponse {
    // Both values are crate constants without quotes or backslashes: no JSON escaping needed.
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            "{{\"service\":\"{}\",\"version\":\"{}\"}}\n",
            state.service, state.version
        ),
    )
}

/// Serves the admin routes on `listener` until `stop` is cancelled. The admin server stops
/// last, so that `/readyz` reports draining for the whole drain.
pub async fn serve(listener: TcpListener, state: AdminState, stop: CancellationToken) {
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "admin server failed");
    }
}
