//! The state-changing admin API under `/admin/`, off unless `admin_api` is on, and then
//! only for requests carrying `Authorization: Bearer TOKEN`:
//!
//! - `GET /admin/faults` — the faults set now, and every fault there is
//! - `PUT /admin/faults/{fault}` — set one; the body is `PARAM=VALUE,…` (`for=` expires it)
//! - `DELETE /admin/faults/{fault}` — clear one; `DELETE /admin/faults` clears them all
//! - `POST /admin/reload` — read the configuration again, as SIGHUP does

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AdminState;
use crate::config::{read_small_file, ConfigError, Key, Settings};
use crate::fault::{FaultKind, FaultRequest};
use crate::logging::Throttle;
use crate::metrics::AdminRefusal;

/// The keys of the admin API.
pub const API_KEYS: &[Key] = &[
    Key::new("admin_api", "false", "Serve the state-changing admin API under /admin/ (fault injection); requires admin_token or admin_token_file"),
    Key::secret("admin_token", "", "Bearer token the /admin/ API requires, at least 16 characters; prefer admin_token_file or INETSVC_ADMIN_TOKEN over a flag"),
    Key::new("admin_token_file", "", "File holding the /admin/ bearer token (a mounted Secret); surrounding whitespace is ignored"),
];

/// One log line a second at most for refused requests: a flood of them must not flood
/// the log (they are all counted in the metrics).
static REFUSED_LOG: Throttle = Throttle::new();

/// Shortest token accepted: long enough that guessing is not an attack.
const MIN_TOKEN_LEN: usize = 16;

/// Longest token accepted: one that fits in a request head (16 KiB) with room to spare.
const MAX_TOKEN_LEN: usize = 1024;

/// Largest token file read: the token and a newline or two.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The admin API's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminApi {
    /// The bearer token every `/admin/` request must carry.
    pub token: String,
}

/// Reads `admin_api`, `admin_token` and `admin_token_file`: `None` when the API is off.
pub fn admin_api(settings: &Settings) -> Result<Option<AdminApi>, ConfigError> {
    if !settings.flag("admin_api")? {
        return Ok(None);
    }
    let file = settings.text("admin_token_file")?;
    let token = if !file.trim().is_empty() {
        read_small_file(std::path::Path::new(file.trim()), MAX_TOKEN_FILE_BYTES)
            .map_err(|e| {
                ConfigError::invalid(
                    "admin_token_file",
                    format!("cannot read `{}`: {e}", file.trim()),
                )
            })?
            .trim()
            .to_owned()
    } else {
        settings.text("admin_token")?.trim().to_owned()
    };
    let key = if file.trim().is_empty() {
        "admin_token"
    } else {
        "admin_token_file"
    };
    if token.is_empty() {
        return Err(ConfigError::invalid(
            "admin_api",
            "the admin API needs a bearer token: set admin_token_file (or INETSVC_ADMIN_TOKEN)",
        ));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the token is {} characters; at most {MAX_TOKEN_LEN} fit in a request",
                token.len()
            ),
        ));
    }
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            format!("the token must be at least {MIN_TOKEN_LEN} characters without spaces, e.g. from `openssl rand -hex 16`"),
        ));
    }
    Ok(Some(AdminApi { token }))
}

/// Compares a presented token with the expected one in time independent of where they
/// differ, so that the token cannot be guessed byte by byte from response times.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The `/admin/` routes, each behind the token check.
pub(super) fn routes(state: AdminState) -> Router<AdminState> {
    Router::new()
        .route("/admin/faults", get(list_faults).delete(clear_faults))
        .route(
            "/admin/faults/{fault}",
            axum::routing::put(set_fault).delete(clear_fault),
        )
        .route("/admin/reload", axum::routing::post(reload))
        .route_layer(middleware::from_fn_with_state(state, authorize))
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
            if let Some(metrics) = &state.metrics {
                metrics.admin_refused(AdminRefusal::Unauthorized);
            }
            if let Some(suppressed) = REFUSED_LOG.admit(std::time::Instant::now()) {
                // The path is cut: a refused request must not write what it likes to the log.
                let path: String = request.uri().path().chars().take(80).collect();
                tracing::warn!(%path, suppressed, "admin API request refused: missing or wrong bearer token");
            }
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"inetsvc-admin\"")],
                "a bearer token is required: Authorization: Bearer TOKEN (admin_token)\n",
            )
                .into_response()
        }
    }
}

/// Reloads the configuration and answers what changed, or why nothing did (400).
async fn reload(State(state): State<AdminState>) -> Response {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if state.reload.send(reply).await.is_err() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": "the service is stopping" }),
        );
    }
    match outcome.await {
        Ok(Ok(outcome)) => json(StatusCode::OK, &serde_json::json!(outcome)),
        Ok(Err(reason)) => bad_request(format!(
            "reload refused, the configuration in force stays: {reason}"
        )),
        Err(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": "the service is stopping" }),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!token_matches(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!token_matches(b"0123456789abcde", b"0123456789abcdef"));
    }
}
