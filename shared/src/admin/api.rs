//! The state-changing admin API under `/admin/`, off unless `admin_api` is on, and then
//! only for requests carrying `Authorization: Bearer TOKEN`. Two tokens, two roles
//! (docs/training/README.md): `admin_token` (the trainer) may do everything;
//! `admin_trainee_token` (the trainee) may read and apply what an operator would, never
//! touch a fault. Every change is written to the [`audit`](super::audit) trail.
//!
//! - `GET /admin/faults` — the faults set now, and every fault there is (trainer)
//! - `PUT /admin/faults/{fault}` — set one; the body is `PARAM=VALUE,…` (`for=` expires
//!   it, `when=KEY=VALUE` ties it to a setting) (trainer)
//! - `DELETE /admin/faults/{fault}` — clear one; `DELETE /admin/faults` clears them all
//!   (trainer)
//! - `POST /admin/reload` — read the configuration again, as SIGHUP does
//! - `GET /admin/settings` — every live key's value in force, and the API's overrides
//! - `PUT /admin/settings/{key}` — set a live key (the body is the value) above every
//!   other layer, until `DELETE /admin/settings/{key}`
//! - `GET /admin/audit?since=N` — the changes after number N (a trainee sees no faults)

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::audit::{clean_actor, Role};
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
    Key::secret("admin_trainee_token", "", "Second bearer token, for a trainee: may read settings and the audit trail and change live settings and reload, never set or clear a fault; prefer admin_trainee_token_file"),
    Key::new("admin_trainee_token_file", "", "File holding the trainee's bearer token"),
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
    /// The bearer token of the trainer (every `/admin/` request).
    pub token: String,
    /// The trainee's bearer token, if one is set.
    pub trainee_token: Option<String>,
}

/// Reads a token from `file_key` (preferred) or `key`; `None` when neither is set.
fn read_token(
    settings: &Settings,
    key: &'static str,
    file_key: &'static str,
) -> Result<Option<String>, ConfigError> {
    let file = settings.text(file_key)?;
    let (token, named) = if !file.trim().is_empty() {
        let text = read_small_file(std::path::Path::new(file.trim()), MAX_TOKEN_FILE_BYTES)
            .map_err(|e| {
                ConfigError::invalid(file_key, format!("cannot read `{}`: {e}", file.trim()))
            })?;
        (text.trim().to_owned(), file_key)
    } else {
        (settings.text(key)?.trim().to_owned(), key)
    };
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(ConfigError::invalid(
            named,
            format!(
                "the token is {} characters; at most {MAX_TOKEN_LEN} fit in a request",
                token.len()
            ),
        ));
    }
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            named,
            format!("the token must be at least {MIN_TOKEN_LEN} characters without spaces, e.g. from `openssl rand -hex 16`"),
        ));
    }
    Ok(Some(token))
}

/// Reads `admin_api` and the tokens: `None` when the API is off.
pub fn admin_api(settings: &Settings) -> Result<Option<AdminApi>, ConfigError> {
    if !settings.flag("admin_api")? {
        return Ok(None);
    }
    let Some(token) = read_token(settings, "admin_token", "admin_token_file")? else {
        return Err(ConfigError::invalid(
            "admin_api",
            "the admin API needs a bearer token: set admin_token_file (or INETSVC_ADMIN_TOKEN)",
        ));
    };
    let trainee_token = read_token(settings, "admin_trainee_token", "admin_trainee_token_file")?;
    if trainee_token.as_ref() == Some(&token) {
        return Err(ConfigError::invalid(
            "admin_trainee_token",
            "is the trainer's admin_token; the two roles need different tokens",
        ));
    }
    Ok(Some(AdminApi {
        token,
        trainee_token,
    }))
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

/// The peer address of an admin connection, set by the server on each connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Who is asking: the token's role, the peer, the actor the client named.
#[derive(Debug, Clone)]
struct Caller {
    role: Role,
    origin: String,
    actor: String,
}

/// The `/admin/` routes, each behind the token check; the fault routes for the trainer only.
pub(super) fn routes(state: AdminState) -> Router<AdminState> {
    let trainer_only = Router::new()
        .route("/admin/faults", get(list_faults).delete(clear_faults))
        .route(
            "/admin/faults/{fault}",
            axum::routing::put(set_fault).delete(clear_fault),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), trainer_only));
    Router::new()
        .route("/admin/reload", axum::routing::post(reload))
        .route("/admin/settings", get(show_settings))
        .route(
            "/admin/settings/{key}",
            axum::routing::put(set_setting).delete(unset_setting),
        )
        .route("/admin/audit", get(audit_trail))
        .merge(trainer_only)
        .route_layer(middleware::from_fn_with_state(state, authorize))
}

/// The role whose token `presented` is, if any.
fn role_of(api: &AdminApi, presented: &[u8]) -> Option<Role> {
    if token_matches(presented, api.token.as_bytes()) {
        return Some(Role::Trainer);
    }
    let trainee = api.trainee_token.as_deref()?;
    token_matches(presented, trainee.as_bytes()).then_some(Role::Trainee)
}

/// Lets a request through only with one of the configured bearer tokens, and hands the
/// handlers who asked.
async fn authorize(State(state): State<AdminState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let role = match (presented, state.api.as_ref()) {
        (Some(presented), Some(api)) => role_of(api, presented),
        _ => None,
    };
    let Some(role) = role else {
        if let Some(metrics) = &state.metrics {
            metrics.admin_refused(AdminRefusal::Unauthorized);
        }
        if let Some(suppressed) = REFUSED_LOG.admit(std::time::Instant::now()) {
            // The path is cut: a refused request must not write what it likes to the log.
            let path: String = request.uri().path().chars().take(80).collect();
            tracing::warn!(%path, suppressed, "admin API request refused: missing or wrong bearer token");
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"inetsvc-admin\"")],
            "a bearer token is required: Authorization: Bearer TOKEN (admin_token)\n",
        )
            .into_response();
    };
    let origin = request
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "unknown".to_owned(), |peer| peer.0.to_string());
    let actor = request
        .headers()
        .get("x-inetsvc-actor")
        .and_then(|value| value.to_str().ok())
        .map(clean_actor)
        .unwrap_or_default();
    request.extensions_mut().insert(Caller {
        role,
        origin,
        actor,
    });
    next.run(request).await
}

/// Refuses the trainee on the fault routes (403), counted and written to the trail.
async fn trainer_only(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    match caller {
        Some(caller) if caller.role == Role::Trainee => {
            let action = match (request.method().as_str(), request.uri().path()) {
                ("GET", _) => "fault.list",
                ("PUT", _) => "fault.set",
                (_, "/admin/faults") => "fault.clear_all",
                _ => "fault.clear",
            };
            let subject: String = request.uri().path().chars().take(80).collect();
            forbid(&state, &caller, action, subject)
        }
        _ => next.run(request).await,
    }
}

/// Refuses a trainee what is the trainer's: 403, counted, written to the trail.
fn forbid(state: &AdminState, caller: &Caller, action: &'static str, subject: String) -> Response {
    if let Some(metrics) = &state.metrics {
        metrics.admin_refused(AdminRefusal::Forbidden);
    }
    record(
        state,
        caller,
        action,
        subject,
        "forbidden: faults are the trainer's",
    );
    (
        StatusCode::FORBIDDEN,
        "forbidden: faults are the trainer's; the trainee token may read settings and the audit trail, change live settings and reload\n",
    )
        .into_response()
}

fn record(
    state: &AdminState,
    caller: &Caller,
    action: &'static str,
    subject: String,
    outcome: &str,
) {
    state.audit.record(
        caller.role,
        caller.origin.clone(),
        caller.actor.clone(),
        action,
        subject,
        outcome.to_owned(),
    );
}

/// Hands a change to the reloader and answers its outcome (400 when refused).
async fn ask_reloader(
    state: &AdminState,
    change: crate::reload::Change,
) -> Result<crate::reload::Outcome, Response> {
    let stopping = || {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": "the service is stopping" }),
        )
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = crate::reload::Request { change, reply };
    if state.reload.send(request).await.is_err() {
        return Err(stopping());
    }
    match outcome.await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(reason)) => Err(bad_request(format!(
            "refused, the configuration in force stays: {reason}"
        ))),
        Err(_) => Err(stopping()),
    }
}

/// Answers a change the reloader carried out, and writes it to the trail.
async fn change(
    state: &AdminState,
    caller: &Caller,
    change: crate::reload::Change,
    action: &'static str,
    subject: String,
) -> Response {
    let result = ask_reloader(state, change).await;
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(_) => "refused".to_owned(),
    };
    record(state, caller, action, subject, &outcome);
    match result {
        Ok(outcome) => json(StatusCode::OK, &serde_json::json!(outcome)),
        Err(response) => response,
    }
}

async fn show_settings(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    match ask_reloader(&state, crate::reload::Change::Show).await {
        Ok(mut outcome) => {
            // The faults are the trainer's, the configured ones too.
            if caller.role == Role::Trainee {
                outcome.settings.remove("faults");
            }
            json(StatusCode::OK, &serde_json::json!(outcome))
        }
        Err(response) => response,
    }
}

/// Longest value accepted for a setting: far above any key's, far below the body limit.
const MAX_SETTING_BYTES: usize = 4096;

async fn set_setting(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(key): Path<String>,
    body: String,
) -> Response {
    // Cut and on one line: the key is written to the trail and the log.
    let key = crate::config::one_line(&key.chars().take(80).collect::<String>());
    let value = body.trim().to_owned();
    let subject = format!(
        "{key}={}",
        crate::config::one_line(&value.chars().take(200).collect::<String>())
    );
    if value.len() > MAX_SETTING_BYTES {
        record(
            &state,
            &caller,
            "settings.set",
            subject,
            "refused: too long",
        );
        return bad_request(format!(
            "the value is {} bytes; at most {MAX_SETTING_BYTES}",
            value.len()
        ));
    }
    // The faults are the trainer's, whichever way they are set.
    if key == "faults" && caller.role == Role::Trainee {
        return forbid(&state, &caller, "settings.set", subject);
    }
    change(
        &state,
        &caller,
        crate::reload::Change::Set(key, value),
        "settings.set",
        subject,
    )
    .await
}

async fn unset_setting(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(key): Path<String>,
) -> Response {
    let key = crate::config::one_line(&key.chars().take(80).collect::<String>());
    if key == "faults" && caller.role == Role::Trainee {
        return forbid(&state, &caller, "settings.unset", key);
    }
    change(
        &state,
        &caller,
        crate::reload::Change::Unset(key.clone()),
        "settings.unset",
        key,
    )
    .await
}

/// `since=N` from a query string; anything else is 0 (the whole trail).
fn since(query: Option<&str>) -> u64 {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("since="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn audit_trail(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
    uri: axum::http::Uri,
) -> Response {
    let entries = state.audit.since(since(uri.query()), caller.role);
    json(
        StatusCode::OK,
        &serde_json::json!({ "service": state.service, "entries": entries }),
    )
}

/// Reloads the configuration and answers what changed, or why nothing did (400).
async fn reload(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    change(
        &state,
        &caller,
        crate::reload::Change::Reload,
        "reload",
        String::new(),
    )
    .await
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
    axum::Extension(caller): axum::Extension<Caller>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let request = FaultKind::parse(&name)
        .and_then(|kind| FaultRequest::parse(kind, body.trim()))
        .and_then(|request| match &request.when {
            Some((key, _)) if !state.faults.has_setting(key) => {
                Err(format!("{}: when: no key `{key}`", request.kind.name()))
            }
            _ => Ok(request),
        });
    let subject: String = format!(
        "{}:{}",
        crate::config::one_line(&name.chars().take(40).collect::<String>()),
        crate::config::one_line(&body.trim().chars().take(200).collect::<String>())
    );
    record(
        &state,
        &caller,
        "fault.set",
        subject,
        if request.is_ok() { "ok" } else { "refused" },
    );
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

async fn clear_fault(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match FaultKind::parse(&name) {
        Ok(kind) => {
            let was_set = state.faults.clear(kind, "cleared");
            let outcome = if was_set { "ok" } else { "ok: was not set" };
            record(
                &state,
                &caller,
                "fault.clear",
                crate::config::one_line(&name.chars().take(40).collect::<String>()),
                outcome,
            );
            json(
                StatusCode::OK,
                &serde_json::json!({ "cleared": if was_set { vec![name] } else { vec![] } }),
            )
        }
        Err(reason) => bad_request(reason),
    }
}

async fn clear_faults(
    State(state): State<AdminState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    let count = state.faults.clear_all();
    record(
        &state,
        &caller,
        "fault.clear_all",
        String::new(),
        &format!("ok: {count} cleared"),
    );
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
