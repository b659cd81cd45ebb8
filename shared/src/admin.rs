//! The admin HTTP server, one port per service:
//!
//! - `GET /metrics` — Prometheus text exposition (404 when metrics are off)
//! - `GET /healthz` — liveness: 200 while the process can answer at all
//! - `GET /readyz`  — readiness: 200 once every listener is bound and until draining starts
//! - `GET /version` — service name and version as JSON
//!
//! State changes live under `/admin/` (DESIGN.md, "Runtime"), mounted only when
//! `admin_api` is on, and every request there must carry `Authorization: Bearer TOKEN`:
//!
//! - `GET /admin/faults` — the faults set now, and every fault there is
//! - `PUT /admin/faults/{fault}` — set one; the body is `PARAM=VALUE,…` (`for=` expires it)
//! - `DELETE /admin/faults/{fault}` — clear one; `DELETE /admin/faults` clears them all

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fault::{token_matches, AdminApi, FaultKind, FaultRequest, Faults};
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
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version));
    if state.api.is_some() {
        let admin = Router::new()
            .route("/admin/faults", get(list_faults).delete(clear_faults))
            .route(
                "/admin/faults/{fault}",
                axum::routing::put(set_fault).delete(clear_fault),
            )
            .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
        router = router.merge(admin);
    }
    router.with_state(state)
}

/// Lets a request through only with the configured bearer token.
async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let expected = state.api.as_ref().map(|api| api.token.as_bytes());
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match (presented, expected) {
        (Some(presented), Some(expected)) if token_matches(presented, expected) => {
            next.run(request).await
        }
        _ => {
            tracing::warn!(path = %request.uri().path(), "admin API request refused: missing or wrong bearer token");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"inetsvc-admin\"")],
                "a bearer token is required: Authorization: Bearer TOKEN (admin_token)\n",
            )
                .into_response()
        }
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string() + "\n",
    )
        .into_response()
}

fn bad_request(reason: String) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": reason }),
    )
}

async fn list_faults(State(state): State<AdminState>) -> Response {
    let available: Vec<serde_json::Value> = FaultKind::ALL
        .iter()
        .map(|kind| {
            let params: Vec<serde_json::Value> = kind
                .params()
                .iter()
                .map(
                    |p| serde_json::json!({ "name": p.name, "default": p.default, "help": p.help }),
                )
                .collect();
            serde_json::json!({ "fault": kind.name(), "about": kind.about(), "params": params })
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "service": state.service, "active": state.faults.list(), "available": available }),
    )
}

async fn set_fault(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let request = FaultKind::parse(&name).and_then(|kind| FaultRequest::parse(kind, body.trim()));
    match request {
        Ok(request) => {
            // A memory load fills up to 1 GiB before it is set: off the runtime's threads,
            // so that serving (one thread in the single-thread design) never waits for it.
            let faults = state.faults.clone();
            match tokio::task::spawn_blocking(move || faults.set(request, "api")).await {
                Ok(active) => json(StatusCode::OK, &serde_json::json!({ "set": active })),
                Err(error) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "error": error.to_string() }),
                ),
            }
        }
        Err(reason) => bad_request(reason),
    }
}

async fn clear_fault(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match FaultKind::parse(&name) {
        Ok(kind) => {
            let was_set = state.faults.clear(kind, "cleared");
            json(
                StatusCode::OK,
                &serde_json::json!({ "cleared": if was_set { vec![name] } else { vec![] } }),
            )
        }
        Err(reason) => bad_request(reason),
    }
}

async fn clear_faults(State(state): State<AdminState>) -> Response {
    let count = state.faults.clear_all();
    json(
        StatusCode::OK,
        &serde_json::json!({ "cleared_count": count }),
    )
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
