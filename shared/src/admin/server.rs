//! The admin HTTP server's own budget, so that nobody who merely reaches the admin port
//! can take the service down (docs/architecture.md, "Admin plane"):
//!
//! - a connection cap, `admin_max_connections`, whose descriptors the data listeners can
//!   never take (the data cap is fitted to the open-file limit minus this cap and a
//!   reserve). At the cap the oldest admin connection is closed gracefully — a request in
//!   flight on it finishes first — so that a health check or a scrape always gets in
//!   however many idle connections someone holds;
//! - `admin_header_timeout` for the request headers, which also bounds the idle time
//!   between keep-alive requests (a slowloris is closed within it);
//! - `admin_request_timeout` for a whole request, body included, and a bound on header
//!   and body sizes.
//!
//! Everything turned away is counted in `inetsvc_admin_refused_total{reason}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, Key, Settings};
use crate::metrics::{AdminRefusal, Metrics};
use crate::net::Backoff;

/// The keys of the admin server's budget.
pub const SERVER_KEYS: &[Key] = &[
    Key::new(
        "admin_max_connections",
        "32",
        "Most admin HTTP connections at once; at the cap the oldest is closed (a request in flight on it finishes first), so probes always get in",
    ),
    Key::new(
        "admin_header_timeout",
        "5s",
        "Close an admin connection whose request headers take longer than this, or that sits idle between requests this long",
    ),
    Key::new(
        "admin_request_timeout",
        "10s",
        "Answer 408 and close when one admin request, its body included, takes longer than this",
    ),
    Key::new(
        "admin_allowed_hosts",
        "",
        "More names the admin port answers in the Host header, comma-separated, besides IP addresses, localhost, one-label names (echod) and .local/.internal/.svc/.cluster.local names; `*` answers any (turns off the DNS-rebinding guard)",
    ),
];

/// Largest request head, bytes: a path or header beyond it is refused (hyper's smallest
/// allowed buffer is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Largest request body, bytes: fault parameters are a line.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a new connection at the cap waits for the connection closed for it.
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// The checked admin budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Bound on reading request headers, and on idling between requests.
    pub header_timeout: Duration,
    /// Bound on one request, body included.
    pub request_timeout: Duration,
    /// Which `Host` headers are answered.
    pub hosts: HostPolicy,
}

/// Which names in the `Host` header the admin port answers. A browser page on an
/// attacker's domain that resolves to this host (DNS rebinding) sends that domain as its
/// `Host`; answering only addresses and names that cannot be registered publicly keeps
/// such a page from reading `/metrics` or `/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// Any `Host` (`admin_allowed_hosts = "*"`).
    Any,
    /// Addresses, local names, and these names (lower case).
    Local(Vec<String>),
}

impl HostPolicy {
    fn parse(text: &str) -> Result<Self, String> {
        if text.trim() == "*" {
            return Ok(HostPolicy::Any);
        }
        let names: Vec<String> = text
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        if let Some(bad) = names.iter().find(|name| {
            !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        }) {
            return Err(format!(
                "`{bad}` is not a host name; write echod,admin.example.org or `*`"
            ));
        }
        Ok(HostPolicy::Local(names))
    }

    /// Whether a request with this `Host` header (or none, as HTTP/1.0 allows) is answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let HostPolicy::Local(names) = self else {
            return true;
        };
        let Some(host) = host else {
            return true;
        };
        let name = strip_port(host).to_ascii_lowercase();
        let local_suffix = [
            ".local",
            ".internal",
            ".svc",
            ".cluster.local",
            ".localhost",
        ];
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || (!name.is_empty() && !name.contains('.'))
            || local_suffix.iter().any(|suffix| name.ends_with(suffix))
            || names.contains(&name)
    }
}

/// The host part of a `Host` header: `[::1]:9007` → `::1`, `echod:9007` → `echod`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

impl AdminLimits {
    /// Reads and checks the admin server's keys.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        Ok(AdminLimits {
            max_connections: settings.number("admin_max_connections", 2, 4096)? as usize,
            header_timeout: settings.duration("admin_header_timeout", MS)?,
            request_timeout: settings.duration("admin_request_timeout", MS)?,
            hosts: settings.parse("admin_allowed_hosts", HostPolicy::parse)?,
        })
    }
}

/// Bounds every request of `router` by `limits`: its body size, its whole duration, and
/// the names it may arrive for.
pub(super) fn bounded(router: Router, limits: &AdminLimits, metrics: Option<Metrics>) -> Router {
    let limit = limits.request_timeout;
    let hosts = limits.hosts.clone();
    let refused = metrics.clone();
    router
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let metrics = metrics.clone();
            async move {
                match tokio::time::timeout(limit, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        if let Some(metrics) = &metrics {
                            metrics.admin_refused(AdminRefusal::RequestTimeout);
                        }
                        (
                            StatusCode::REQUEST_TIMEOUT,
                            "the request took longer than admin_request_timeout\n",
                        )
                            .into_response()
                    }
                }
            }
        }))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let allowed = hosts.allows(
                request
                    .headers()
                    .get(axum::http::header::HOST)
                    .and_then(|value| value.to_str().ok()),
            );
            let refused = refused.clone();
            async move {
                if allowed {
                    return next.run(request).await;
                }
                if let Some(metrics) = &refused {
                    metrics.admin_refused(AdminRefusal::Host);
                }
                (
                    StatusCode::MISDIRECTED_REQUEST,
                    "this Host is not one the admin port answers; see admin_allowed_hosts\n",
                )
                    .into_response()
            }
        }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The admin connections being served, oldest first, each with the token that asks it to
/// close; an evicted connection leaves the table at once, its permit when it is closed.
#[derive(Default)]
struct Live {
    next: u64,
    connections: BTreeMap<u64, CancellationToken>,
}

/// Serves `router` on `listener` within `limits` until `stop`, then closes every admin
/// connection gracefully.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    metrics: Option<Metrics>,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let header_timeout = limits.header_timeout;
    let live = Arc::new(Mutex::new(Live::default()));
    let tracker = TaskTracker::new();
    let count = |reason| {
        if let Some(metrics) = &metrics {
            metrics.admin_refused(reason);
        }
    };
    let mut backoff = Backoff::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.reset();
                stream
            }
            Err(error) => {
                let pause = backoff.next();
                tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "admin accept failed; backing off");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let oldest = lock(&live).connections.pop_first();
                if let Some((_, close)) = oldest {
                    close.cancel();
                    count(AdminRefusal::Evicted);
                }
                match tokio::time::timeout(EVICTION_WAIT, Arc::clone(&permits).acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        // Every slot busy with a request in flight: refuse this one.
                        count(AdminRefusal::Cap);
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let close = CancellationToken::new();
        let id = {
            let mut live = lock(&live);
            let id = live.next;
            live.next += 1;
            live.connections.insert(id, close.clone());
            id
        };
        let peer = stream.peer_addr().ok();
        let (router, live, metrics, stop) = (
            match peer {
                Some(peer) => router.clone().layer(axum::Extension(super::Peer(peer))),
                None => router.clone(),
            },
            Arc::clone(&live),
            metrics.clone(),
            stop.clone(),
        );
        tracker.spawn(async move {
            let timed_out =
                serve_connection(stream, router, header_timeout, close, stop, permit).await;
            lock(&live).connections.remove(&id);
            if timed_out {
                if let Some(metrics) = &metrics {
                    metrics.admin_refused(AdminRefusal::HeaderTimeout);
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Serves one admin connection until it ends, is asked to `close`, or `stop`; returns
/// whether it ended on the header timeout.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    header_timeout: Duration,
    close: CancellationToken,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) -> bool {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                return result.is_err_and(|error| error.is_timeout());
            }
            _ = close.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stop.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The table is a few integer and token moves under the lock: a poisoned lock still
/// holds a consistent table.
fn lock(live: &Mutex<Live>) -> std::sync::MutexGuard<'_, Live> {
    live.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_names_that_cannot_be_public_are_answered() {
        let policy = HostPolicy::parse("admin.example.org").unwrap();
        for host in [
            "127.0.0.1:9007",
            "[::1]:9007",
            "10.1.2.3",
            "localhost:9007",
            "echod:9007",
            "echod.inetsvc.svc:9007",
            "echod.inetsvc.svc.cluster.local",
            "ADMIN.example.org:9007",
        ] {
            assert!(policy.allows(Some(host)), "{host}");
        }
        assert!(policy.allows(None), "HTTP/1.0 without Host");
        for host in [
            "evil.example.com",
            "evil.example.com:9007",
            "127.0.0.1.evil.example",
        ] {
            assert!(!policy.allows(Some(host)), "{host}");
        }
        assert!(HostPolicy::parse("*")
            .unwrap()
            .allows(Some("evil.example.com")));
        assert!(HostPolicy::parse("bad name").is_err());
    }
}
