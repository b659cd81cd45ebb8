//! `inetsvc fault`: the client of a service's `/admin/faults` API (docs/faults.md).
//!
//! The token comes from a file or `INETSVC_ADMIN_TOKEN`, never from a flag, so that it
//! does not show in `ps` or the shell history.

use std::time::Duration;

use inetsvc_proto::Protocol;
use reqwest::blocking::Client;
use reqwest::StatusCode;

/// Why a fault command failed.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The token's role may not do this (a trainee's token on the faults).
    #[error("forbidden (403): {0}")]
    Forbidden(String),
    /// The service refused the token (or none was sent).
    #[error("refused (401): missing or wrong token; give --token-file or set INETSVC_ADMIN_TOKEN")]
    Unauthorized,
    /// Nothing under `/admin/`: the API is off on that service.
    #[error("no admin API at {0} (404): the service runs with admin_api = false")]
    Disabled(String),
    /// The service said the fault or its parameters are wrong.
    #[error("{0}")]
    Invalid(String),
    /// The request did not get an answer.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// Any other answer.
    #[error("unexpected answer {status} from {url}: {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// Where.
        url: String,
        /// What it said.
        body: String,
    },
}

/// The admin base URL for `admin`: `http://HOST:PORT`, `HOST:PORT`, or a service name
/// (`echo`, `daytime`, `time`): the address in `INETSVC_ECHO_ADMIN` (and so on) when set
/// (a trainee's stack with its ports moved: scripts/gameday sets them), else that
/// service's default admin port on 127.0.0.1.
pub fn base_url(admin: &str) -> String {
    let admin = admin.trim_end_matches('/');
    if let Some(protocol) = Protocol::ALL.into_iter().find(|p| p.name() == admin) {
        let variable = format!("INETSVC_{}_ADMIN", protocol.name().to_uppercase());
        return match std::env::var(&variable) {
            Ok(address) if !address.trim().is_empty() => base_url(address.trim()),
            _ => format!("http://127.0.0.1:{}", protocol.admin_port()),
        };
    }
    match admin {
        _ if admin.starts_with("http://") || admin.starts_with("https://") => admin.to_owned(),
        _ => format!("http://{admin}"),
    }
}

/// A connection to one service's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: Client,
    /// Sent as `X-Inetsvc-Actor`, for the service's audit trail.
    actor: String,
}

impl AdminClient {
    /// A client for the API at `base` (see [`base_url`]) with `token`.
    pub fn new(base: String, token: String, timeout: Duration) -> Result<Self, FaultError> {
        let http =
            Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| FaultError::Unreachable {
                    url: base.clone(),
                    reason: e.to_string(),
                })?;
        Ok(AdminClient {
            base,
            token,
            http,
            actor: "inetsvc-cli".to_owned(),
        })
    }

    /// The same client naming itself `actor` in the audit trail.
    pub fn with_actor(mut self, actor: &str) -> Self {
        actor.clone_into(&mut self.actor);
        self
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: String,
    ) -> Result<serde_json::Value, FaultError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header("X-Inetsvc-Actor", &self.actor)
            .body(body)
            .send()
            .map_err(|e| FaultError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        let body = response.text().unwrap_or_default();
        match status {
            StatusCode::OK => serde_json::from_str(&body).map_err(|e| FaultError::Unexpected {
                status: 200,
                url,
                body: format!("not JSON ({e}): {body}"),
            }),
            StatusCode::UNAUTHORIZED => Err(FaultError::Unauthorized),
            StatusCode::FORBIDDEN => Err(FaultError::Forbidden(body.trim().to_owned())),
            StatusCode::NOT_FOUND => Err(FaultError::Disabled(self.base.clone())),
            StatusCode::BAD_REQUEST => Err(FaultError::Invalid(
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or(body),
            )),
            other => Err(FaultError::Unexpected {
                status: other.as_u16(),
                url,
                body,
            }),
        }
    }

    /// `GET /admin/faults`: what is set and what exists.
    pub fn list(&self) -> Result<serde_json::Value, FaultError> {
        self.send(reqwest::Method::GET, "/admin/faults", String::new())
    }

    /// `PUT /admin/faults/{fault}` with `PARAM=VALUE,…`.
    pub fn set(&self, fault: &str, params: &str) -> Result<serde_json::Value, FaultError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/admin/faults/{fault}"),
            params.to_owned(),
        )
    }

    /// `DELETE /admin/faults/{fault}`, or every fault with `None`.
    pub fn clear(&self, fault: Option<&str>) -> Result<serde_json::Value, FaultError> {
        let path = match fault {
            Some(fault) => format!("/admin/faults/{fault}"),
            None => "/admin/faults".to_owned(),
        };
        self.send(reqwest::Method::DELETE, &path, String::new())
    }
}

impl AdminClient {
    /// `GET /admin/settings`: every live key's value in force, and the overrides.
    pub fn settings(&self) -> Result<serde_json::Value, FaultError> {
        self.send(reqwest::Method::GET, "/admin/settings", String::new())
    }

    /// `PUT /admin/settings/{key}`: a live change, above the configuration.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<serde_json::Value, FaultError> {
        self.send(
            reqwest::Method::PUT,
            &format!("/admin/settings/{key}"),
            value.to_owned(),
        )
    }

    /// `DELETE /admin/settings/{key}`: back to the configuration's value.
    pub fn unset_setting(&self, key: &str) -> Result<serde_json::Value, FaultError> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/admin/settings/{key}"),
            String::new(),
        )
    }

    /// `POST /admin/reload`.
    pub fn reload(&self) -> Result<serde_json::Value, FaultError> {
        self.send(reqwest::Method::POST, "/admin/reload", String::new())
    }

    /// `GET /admin/audit?since=N`: the changes after number `since`.
    pub fn audit(&self, since: u64) -> Result<serde_json::Value, FaultError> {
        self.send(
            reqwest::Method::GET,
            &format!("/admin/audit?since={since}"),
            String::new(),
        )
    }
}

/// The parameters of `inetsvc fault set` as the API's body: `PARAM=VALUE` words joined
/// by commas, with `--for` as `for=…`.
pub fn params_body(params: &[String], lasts: Option<&str>) -> String {
    let mut parts: Vec<String> = params
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(lasts) = lasts {
        parts.push(format!("for={lasts}"));
    }
    parts.join(",")
}

/// The active faults of a `list` answer as text, one per line.
pub fn active_table(listing: &serde_json::Value) -> String {
    let active = listing["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        return format!(
            "{}: no fault set\n",
            listing["service"].as_str().unwrap_or("?")
        );
    }
    let mut out = String::new();
    for fault in active {
        let expires = match fault["expires_in_seconds"].as_f64() {
            Some(seconds) => format!("expires in {seconds:.0}s"),
            None => "until cleared".to_owned(),
        };
        out.push_str(&format!(
            "{:<14} {:<40} {} (set by {})\n",
            fault["fault"].as_str().unwrap_or("?"),
            fault["params"].as_str().unwrap_or(""),
            expires,
            fault["origin"].as_str().unwrap_or("?"),
        ));
    }
    out
}

/// Every fault there is, with its parameters, as text.
pub fn available_table(listing: &serde_json::Value) -> String {
    let mut out = String::new();
    for fault in listing["available"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "{}: {}\n",
            fault["fault"].as_str().unwrap_or("?"),
            fault["about"].as_str().unwrap_or("")
        ));
        for param in fault["params"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "    {}={:<8} {}\n",
                param["name"].as_str().unwrap_or("?"),
                param["default"].as_str().unwrap_or(""),
                param["help"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_become_urls() {
        assert_eq!(base_url("time"), "http://127.0.0.1:9037");
        assert_eq!(base_url("127.0.0.1:9007/"), "http://127.0.0.1:9007");
        assert_eq!(base_url("http://[::1]:9013"), "http://[::1]:9013");
    }

    #[test]
    fn params_join_with_the_expiry() {
        let words = vec!["delay=1s".to_owned(), "jitter=2ms, ".to_owned()];
        assert_eq!(
            params_body(&words, Some("5m")),
            "delay=1s,jitter=2ms,for=5m"
        );
        assert_eq!(params_body(&[], None), "");
    }
}
