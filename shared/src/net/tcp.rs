//! The TCP accept loop, after mini-redis: a semaphore for the global cap, a per-source
//! count, the design's scheduling for each admitted connection, and exponential backoff on
//! accept errors so that EMFILE never spins a core.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::alarm::within;
use super::backoff::Backoff;
use super::conn::{Conn, ConnSettings, Socket};
use super::design::{self, BlockedSessions, TcpConcurrency};
use super::live::{Cached, Tunables};
use crate::limits::{RejectReason, SourceCounter};
use crate::metrics::{ErrorKind, Meter};
use crate::service::Service;
use crate::shutdown::Trigger;

/// Accept errors that concern one connection only, not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The caps shared by every TCP listener of a service.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionCaps {
    /// `max_connections` permits.
    global: Arc<Semaphore>,
    /// `max_connections_per_source` counts.
    per_source: SourceCounter,
}

impl ConnectionCaps {
    /// Caps of `max_connections` in all and `max_per_source` per address.
    pub(crate) fn new(max_connections: usize, max_per_source: usize) -> Self {
        ConnectionCaps {
            global: Arc::new(Semaphore::new(max_connections)),
            per_source: SourceCounter::new(max_per_source),
        }
    }

    /// The global cap's permits.
    pub(super) fn global(&self) -> &Arc<Semaphore> {
        &self.global
    }

    /// Changes the per-source cap for connections admitted from now on.
    pub(super) fn set_per_source(&self, max: usize) {
        self.per_source.set_max(max);
    }
}

/// One TCP accept loop; built by [`super::Datapath::tcp`].
pub(crate) struct TcpServer<S> {
    pub(super) listener: TcpListener,
    pub(super) service: Arc<S>,
    /// Limits, instruments and the shutdown signal handed to each connection.
    pub(super) conn: ConnSettings,
    pub(super) caps: ConnectionCaps,
    /// Timeouts and span sampling as the last reload left them.
    pub(super) tunables: Cached<Tunables>,
    /// Whether spans are exported, so that their trace and span ids are worth recording
    /// for the logs.
    pub(super) trace_ids: bool,
    /// The `service` name for spans.
    pub(super) name: &'static str,
    /// The listener's port, for spans (read once, not per connection).
    pub(super) port: u16,
    /// The threaded design's sessions, for the request to finish.
    pub(super) blocked: BlockedSessions,
}

impl<S: Service> TcpServer<S> {
    /// Accepts until `stop` fires; connection tasks go into `tracker` so that
    /// shutdown can wait for them.
    pub(crate) async fn run(mut self, stop: Trigger, tracker: TaskTracker) {
        if self.conn.options.concurrency == TcpConcurrency::Threaded {
            // Not tracked: the drain must not wait for it when every session has ended.
            tokio::spawn(self.blocked.clone().finish_on(self.conn.shutdown.clone()));
        }
        let mut backoff = Backoff::new();
        let stopped = stop.fired();
        tokio::pin!(stopped);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut stopped => {
                    self.accept_backlog(&tracker).await;
                    break;
                }
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    if let Some(connection) = self.admit(stream, peer) {
                        self.schedule(connection, &tracker).await;
                    }
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    self.conn.meter.error(ErrorKind::Accept);
                    let pause = backoff.next();
                    // One line per pause, so a long EMFILE spell logs at most once a second.
                    tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "accept failed; backing off");
                    tokio::select! {
                        () = &mut stopped => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// At stop: accepts and serves every connection the kernel has already completed, so
    /// that closing the listener resets none of them. (Clients still connecting after this
    /// are refused: the drain delay, with readiness false, is for them to stop coming.)
    async fn accept_backlog(&mut self, tracker: &TaskTracker) {
        // Straight to the kernel: the runtime's readiness for the listener may not yet
        // have seen the last handshakes, so an accept through it could stop early.
        while let Ok((accepted, peer)) = SockRef::from(&self.listener).accept() {
            let Some(peer) = peer.as_socket() else {
                continue;
            };
            let stream = std::net::TcpStream::from(accepted);
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let Ok(stream) = TcpStream::from_std(stream) else {
                continue;
            };
            if let Some(connection) = self.admit(stream, peer) {
                self.schedule(connection, tracker).await;
            }
        }
    }

    /// Runs one admitted connection the way the configured design says.
    async fn schedule(
        &self,
        connection: impl Future<Output = ()> + Send + 'static,
        tracker: &TaskTracker,
    ) {
        let design = self.conn.options.concurrency;
        if let Err(error) = design::schedule(design, connection, tracker).await {
            // The connection (moved into the failed thread's closure) is closed with it.
            self.conn.meter.error(ErrorKind::Accept);
            tracing::warn!(%error, "cannot start a connection thread; connection closed");
        }
    }

    /// Applies the caps and returns the connection's work, or refuses it with a reset.
    fn admit(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let meter = &self.conn.meter;
        if self.tunables.get().deny.denies(peer.ip()) {
            refuse(stream, meter, RejectReason::Denied);
            return None;
        }
        if self.conn.faults.refuse() {
            refuse(stream, meter, RejectReason::Fault);
            return None;
        }
        let Ok(permit) = self.caps.global.clone().try_acquire_owned() else {
            refuse(stream, meter, RejectReason::GlobalCap);
            return None;
        };
        let Some(slot) = self.caps.per_source.try_acquire(peer.ip()) else {
            refuse(stream, meter, RejectReason::PerSourceCap);
            return None;
        };
        let service = Arc::clone(&self.service);
        let tunables = self.tunables.get();
        let (options, spans) = (tunables.tcp, tunables.tcp_spans);
        let socket = match Socket::for_design(stream, options.concurrency, &options) {
            Ok(socket) => socket,
            Err(error) => {
                meter.error(ErrorKind::Accept);
                tracing::warn!(%error, "cannot make a blocking socket; connection closed");
                return None;
            }
        };
        let registration = match &socket {
            Socket::Blocking(stream) => match self.blocked.register(stream) {
                Ok(registration) => Some(registration),
                Err(error) => {
                    meter.error(ErrorKind::Accept);
                    tracing::warn!(%error, "cannot register a session; connection closed");
                    return None;
                }
            },
            Socket::Ready(_) => None,
        };
        let mut settings = self.conn.clone();
        settings.options = options;
        let max_time = settings.options.max_connection_time;
        let shutdown = settings.shutdown.clone();
        let span = if spans.sample() && super::span_wanted(self.trace_ids) {
            connection_span(self.name, self.port, peer, self.trace_ids)
        } else {
            tracing::Span::none()
        };
        // At accept, not when the task first runs: the answer latency includes any wait
        // for the scheduler.
        let started = Instant::now();
        // Boxed once, here: the connection's future holds the service's whole session
        // state machine (kilobytes), which every move into the scheduler and the task
        // would otherwise copy, per connection.
        let work = async move {
            let _held = (permit, slot, registration);
            let meter = settings.meter.clone();
            meter.request();
            meter.connection_opened();
            let conn = Conn::new(socket, peer, settings, started.into());
            let served = service.serve_tcp(conn, shutdown);
            let outcome = match within(started + max_time, served).await {
                Ok(Ok(())) => "ok",
                Ok(Err(error)) => {
                    meter.error(error.kind());
                    tracing::debug!(%peer, %error, "connection ended early");
                    error.kind().label()
                }
                Err(_) => {
                    meter.error(ErrorKind::MaxDuration);
                    tracing::debug!(%peer, "connection reached max_connection_time");
                    ErrorKind::MaxDuration.label()
                }
            };
            tracing::Span::current().record("inetsvc.outcome", outcome);
            tracing::debug!(outcome, "connection closed");
            meter.connection_closed(started.elapsed());
        }
        .instrument(span);
        Some(Box::pin(work))
    }
}

/// The span of one TCP connection, with OpenTelemetry semantic-convention attributes
/// (server side, transport, ports, client address); bytes and outcome are recorded when
/// it ends. With `trace_ids`, the OpenTelemetry ids are copied into fields so that JSON
/// log lines inside the connection carry them.
fn connection_span(
    service: &'static str,
    server_port: u16,
    peer: SocketAddr,
    trace_ids: bool,
) -> tracing::Span {
    let span = tracing::info_span!(
        "connection",
        otel.kind = "server",
        inetsvc.service = service,
        network.transport = "tcp",
        network.type = if peer.is_ipv4() { "ipv4" } else { "ipv6" },
        server.port = server_port,
        client.address = %peer.ip(),
        client.port = peer.port(),
        inetsvc.bytes_received = tracing::field::Empty,
        inetsvc.bytes_sent = tracing::field::Empty,
        inetsvc.outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if trace_ids {
        record_trace_ids(&span);
    }
    span
}

/// Copies the OpenTelemetry trace and span ids of `span` into its `trace_id` and
/// `span_id` fields.
fn record_trace_ids(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// Refuses a connection with a reset: unambiguous to the client (an empty answer could be
/// mistaken for a DAYTIME reply) and it leaves no TIME_WAIT behind under a flood.
fn refuse(stream: TcpStream, meter: &Meter, reason: RejectReason) {
    meter.rejected(reason);
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    tracing::debug!(reason = reason.label(), "connection refused");
}
