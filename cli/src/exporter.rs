//! `inetsvc probe --listen`: the prober as a Prometheus exporter, in the manner of the
//! blackbox exporter. Each scrape of `/metrics` runs the probe once and answers with its
//! results, so a service's clock skew and end-to-end answers are watched from outside,
//! the way its clients see it (the `InetsvcProbeFailing` and `InetsvcClockSkew` alerts).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::sync::Mutex;

use crate::probe::{self, Plan};

/// Serves `/metrics` (one probe per scrape) and `/healthz` on `listen` until the process
/// is stopped.
pub async fn serve(listen: SocketAddr, plan: Plan) -> std::io::Result<()> {
    // One probe at a time: two Prometheus servers scraping at once must not double the
    // load the probe puts on what it checks.
    let plan = Arc::new(Mutex::new(plan));
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let plan = Arc::clone(&plan);
                async move {
                    let plan = plan.lock_owned().await;
                    let started = std::time::Instant::now();
                    let checks = tokio::task::spawn_blocking(move || probe::run(&plan)).await;
                    match checks {
                        Ok(checks) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                            format!(
                                "{}# HELP inetsvc_probe_run_seconds How long the whole probe took.\n# TYPE inetsvc_probe_run_seconds gauge\ninetsvc_probe_run_seconds {}\n",
                                probe::prometheus(&checks),
                                started.elapsed().as_secs_f64()
                            ),
                        ),
                        Err(error) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                            format!("probe failed: {error}\n"),
                        ),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "inetsvc probe: serving /metrics on {}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // SIGTERM from a container runtime, SIGINT from a terminal.
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        })
        .await
}
