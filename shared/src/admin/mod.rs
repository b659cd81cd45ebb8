//! The admin HTTP server, one port per service:
//!
//! - `GET /metrics` — Prometheus text exposition (404 when metrics are off)
//! - `GET /healthz` — liveness: 200 while the process can answer at all
//! - `GET /readyz`  — readiness: 200 once every listener is bound and until draining starts
//! - `GET /version` — service name and version as JSON
//!
//! State changes live under `/admin/`, in [`api`], mounted only when `admin_api` is on;
//! [`server`] holds the admin port's own budget of connections and time
//! (docs/architecture.md, "Admin plane").

pub mod api;
pub mod audit;
pub mod healthcheck;
pub mod server;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::{AdminApi, Peer, API_KEYS};
pub use audit::Audit;
pub use server::{AdminLimits, SERVER_KEYS};

use crate::fault::Faults;
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
    /// Injected faults, which `/healthz` and `/readyz` obey.
    pub faults: Faults,
    /// The `/admin/` API, when enabled.
    pub api: Option<AdminApi>,
    /// Where `POST /admin/reload` and the settings routes send their requests.
    pub reload: tokio::sync::mpsc::Sender<crate::reload::Request>,
    /// Every change made through the admin plane.
    pub audit: Audit,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version));
    if state.api.is_some() {
        router = router.merge(api::routes(state.clone()));
    }
    router.with_state(state)
}

/// Liveness: 200 while the process can answer, unless the `not_live` fault says otherwise.
async fn healthz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.faults.not_live() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not live (fault not_live)\n",
        )
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    match &state.metrics {
        Some(metrics) => {
            metrics.set_health(
                !state.faults.not_live(),
                state.readiness.phase() == Phase::Serving && !state.faults.not_ready(),
            );
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                metrics.render(),
            )
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "metrics are off (metrics = false)\n".to_owned(),
        ),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.readiness.phase() {
        Phase::Serving if state.faults.not_ready() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready (fault not_ready)\n",
        ),
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

/// The admin routes with every bound `limits` sets, as [`serve`] serves them.
pub fn bounded_router(state: AdminState, limits: &AdminLimits, metrics: Option<Metrics>) -> Router {
    server::bounded(router(state), limits, metrics)
}

/// Serves the admin routes on `listener`, within `limits`, until `stop` is cancelled. The
/// admin server stops last, so that `/readyz` reports draining for the whole drain.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    limits: AdminLimits,
    stop: CancellationToken,
) {
    let metrics = state.metrics.clone();
    let routes = bounded_router(state, &limits, metrics.clone());
    server::serve(listener, routes, limits, metrics, stop).await;
}
