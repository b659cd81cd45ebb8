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
];

/// Largest request head, bytes: a path or header beyond it is refused (hyper's smallest
/// allowed buffer is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Largest request body, bytes: fault parameters are a line.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a new connection at the cap waits for the connection closed for it.
const EVICTION_WAIT: Duration = Duration::from_millis(200);

/// The checked admin budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// Bound on reading request headers, and on idling between requests.
    pub header_timeout: Duration,
    /// Bound on one request, body included.
    pub request_timeout: Duration,
}

impl AdminLimits {
    /// Reads and checks the admin server's keys.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        Ok(AdminLimits {
            max_connections: settings.number("admin_max_connections", 2, 4096)? as usize,
            header_timeout: settings.duration("admin_header_timeout", MS)?,
            request_timeout: settings.duration("admin_request_timeout", MS)?,
        })
    }
}

/// Bounds every request of `router` by `limits`: its body size and its whole duration.
pub(super) fn bounded(router: Router, limits: AdminLimits, metrics: Option<Metrics>) -> Router {
    let limit = limits.request_timeout;
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
        let (router, live, metrics, stop) = (
            router.clone(),
            Arc::clone(&live),
            metrics.clone(),
            stop.clone(),
        );
        tracker.spawn(async move {
            let timed_out = serve_connection(stream, router, limits, close, stop, permit).await;
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
    limits: AdminLimits,
    close: CancellationToken,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) -> bool {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
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
