//! The one listener: binding, the TCP accept loop and the UDP receive loop.
//!
//! The accept loop follows mini-redis: a semaphore for the global cap, a per-source count,
//! a task per connection, and exponential backoff on accept errors so that EMFILE never
//! spins a core. The UDP loop is the book's iterative connectionless server (ch. 9) with the
//! loop guard and rate limits in front of the service.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::concurrency::{TcpConcurrency, UdpConcurrency};
use crate::config::ConfigError;
use crate::conn::{Conn, ConnSettings};
use crate::fault::Faults;
use crate::limits::{loop_guard, DropReason, RateLimiter, RejectReason, SourceCounter};
use crate::metrics::{ErrorKind, Meter};
use crate::service::Service;
use crate::telemetry::Sampler;

/// Largest UDP payload: 65,535 minus the 8-byte UDP header (IPv6 without jumbograms); the
/// IPv4 maximum, 65,507, fits too. Never truncate as inetd (4096) and xinetd (2048) do.
pub const MAX_DATAGRAM: usize = 65_535 - 8;

/// TCP accept queue length.
const BACKLOG: i32 = 1024;

/// First and longest pause after a failing `accept` or `recv`.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Which socket type a bind is for, for messages.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
}

/// Binds a TCP listener on `address`; errors name `key` and say how to fix them.
pub fn bind_tcp(key: &str, address: SocketAddr) -> Result<TcpListener, ConfigError> {
    let socket = bind_with_fallback(key, address, Kind::Tcp)?;
    socket
        .listen(BACKLOG)
        .map_err(|e| bind_error(key, address, &e))?;
    TcpListener::from_std(socket.into()).map_err(|e| bind_error(key, address, &e))
}

/// Binds a UDP socket on `address`; errors name `key` and say how to fix them.
pub fn bind_udp(key: &str, address: SocketAddr) -> Result<UdpSocket, ConfigError> {
    let socket = bind_with_fallback(key, address, Kind::Udp)?;
    UdpSocket::from_std(socket.into()).map_err(|e| bind_error(key, address, &e))
}

/// Binds `address`. `[::]` is made dual-stack explicitly (whatever the host's
/// `bindv6only`), and on a host or container without IPv6 it falls back to `0.0.0.0` with a
/// warning, so that the defaults work everywhere.
fn bind_with_fallback(key: &str, address: SocketAddr, kind: Kind) -> Result<Socket, ConfigError> {
    match bind_socket(address, kind) {
        Ok(socket) => Ok(socket),
        Err(e)
            if address.ip() == IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
                && matches!(e.raw_os_error(), Some(97) | Some(99)) =>
        {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port());
            tracing::warn!(%key, %address, fallback = %v4, error = %e, "no IPv6 here; serving IPv4 only");
            bind_socket(v4, kind).map_err(|e| bind_error(key, v4, &e))
        }
        Err(e) => Err(bind_error(key, address, &e)),
    }
}

fn bind_socket(address: SocketAddr, kind: Kind) -> io::Result<Socket> {
    let (ty, protocol) = match kind {
        Kind::Tcp => (Type::STREAM, Protocol::TCP),
        Kind::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(address), ty, Some(protocol))?;
    if address.is_ipv6() {
        socket.set_only_v6(!address.ip().is_unspecified())?;
    }
    if matches!(kind, Kind::Tcp) {
        // Restart at once even while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// A bind failure as a one-line configuration error with the fix.
fn bind_error(key: &str, address: SocketAddr, error: &io::Error) -> ConfigError {
    let flag = key.replace('_', "-");
    let reason = match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "cannot bind {address}: address already in use; stop the other server or choose another port with --{flag}"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot bind {address}: permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, so choose a port from 1024 up, e.g. --{flag} [::]:{}",
            address.port().max(1024) + 7000
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "cannot bind {address}: no such local address on this host; use one of its addresses, [::] or 0.0.0.0"
        ),
        _ => format!("cannot bind {address}: {error}"),
    };
    ConfigError::invalid(key, reason)
}

/// Exponential backoff for a failing `accept` or `recv`: never spin, never give up.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::ZERO)
    }

    fn reset(&mut self) {
        self.0 = Duration::ZERO;
    }

    /// The next pause, doubling up to [`BACKOFF_MAX`].
    fn next(&mut self) -> Duration {
        self.0 = (self.0 * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.0
    }
}

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
pub struct ConnectionCaps {
    /// `max_connections` permits.
    pub global: Arc<Semaphore>,
    /// `max_connections_per_source` counts.
    pub per_source: SourceCounter,
}

impl ConnectionCaps {
    /// Caps of `max_connections` in all and `max_per_source` per address.
    pub fn new(max_connections: usize, max_per_source: usize) -> Self {
        ConnectionCaps {
            global: Arc::new(Semaphore::new(max_connections)),
            per_source: SourceCounter::new(max_per_source),
        }
    }
}

/// Everything a TCP accept loop needs.
pub struct TcpServer<S> {
    /// The bound listener.
    pub listener: TcpListener,
    /// The protocol.
    pub service: Arc<S>,
    /// Limits and instruments handed to each connection.
    pub conn: ConnSettings,
    /// Connection caps.
    pub caps: ConnectionCaps,
    /// Bound on a whole connection.
    pub max_connection_time: Duration,
    /// Which connections get a span, decided before the span is built.
    pub spans: Sampler,
    /// Whether spans are exported, so that their trace and span ids are worth recording
    /// for the logs.
    pub trace_ids: bool,
    /// The `service` name for spans.
    pub name: &'static str,
    /// How connections are scheduled (book ch. 8-13).
    pub concurrency: TcpConcurrency,
}

impl<S: Service> TcpServer<S> {
    /// Accepts until `stop` is cancelled; connection tasks go into `tracker` so that
    /// shutdown can wait for them.
    pub async fn run(self, stop: CancellationToken, tracker: TaskTracker) {
        let mut backoff = Backoff::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => {
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
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// At stop: accepts and serves every connection the kernel has already completed, so
    /// that closing the listener resets none of them. (Clients still connecting after this
    /// are refused: the drain delay, with readiness false, is for them to stop coming.)
    async fn accept_backlog(&self, tracker: &TaskTracker) {
        // Straight to the kernel: the runtime's readiness for the listener may not yet
        // have seen the last handshakes, so an accept through it could stop early.
        let socket = SockRef::from(&self.listener);
        while let Ok((accepted, peer)) = socket.accept() {
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

    /// Runs one admitted connection the way the configured design says: the one place
    /// where the server designs differ.
    async fn schedule(
        &self,
        connection: impl Future<Output = ()> + Send + 'static,
        tracker: &TaskTracker,
    ) {
        match self.concurrency {
            // Book §8.13: serve this client to its end before accepting another. The
            // connection's own timeouts bound how long a stuck client holds the others.
            TcpConcurrency::Iterative => tracker.track_future(connection).await,
            // Book ch. 11 and 13: a task per connection, on many threads or on one.
            TcpConcurrency::Concurrent | TcpConcurrency::SingleThread => {
                tracker.spawn(connection);
            }
            // Book ch. 12: an OS thread per connection, blocking on its work; its I/O
            // and timers are still driven by the runtime.
            TcpConcurrency::Threaded => {
                let runtime = tokio::runtime::Handle::current();
                let token = tracker.token();
                let spawned = std::thread::Builder::new()
                    .name("connection".into())
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        runtime.block_on(connection);
                        drop(token);
                    });
                if let Err(error) = spawned {
                    // The connection (moved into the closure) is closed with it.
                    self.conn.meter.error(ErrorKind::Accept);
                    tracing::warn!(%error, "cannot start a connection thread; connection closed");
                }
            }
        }
    }

    /// Applies the caps and returns the connection's work, or refuses it with a reset.
    fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let meter = &self.conn.meter;
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
        let _ = stream.set_nodelay(true);
        let service = Arc::clone(&self.service);
        let settings = self.conn.clone();
        let max_time = self.max_connection_time;
        let span = if self.spans.sample() {
            connection_span(self.name, &stream, peer, self.trace_ids)
        } else {
            tracing::Span::none()
        };
        Some(
            async move {
                let _held = (permit, slot);
                let meter = settings.meter.clone();
                let started = Instant::now();
                meter.request();
                meter.connection_opened();
                let conn = Conn::new(stream, peer, settings);
                let outcome = match tokio::time::timeout(max_time, service.serve_tcp(conn)).await {
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
            .instrument(span),
        )
    }
}

/// The span of one TCP connection, with OpenTelemetry semantic-convention attributes
/// (server side, transport, ports, client address); bytes and outcome are recorded when
/// it ends. With `trace_ids`, the OpenTelemetry ids are copied into fields so that JSON
/// log lines inside the connection carry them.
fn connection_span(
    service: &'static str,
    stream: &TcpStream,
    peer: SocketAddr,
    trace_ids: bool,
) -> tracing::Span {
    let server_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
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

/// Everything a UDP receive loop needs.
pub struct UdpServer<S> {
    /// The bound socket, shared with the datagram tasks in the concurrent design.
    pub socket: Arc<UdpSocket>,
    /// The protocol.
    pub service: Arc<S>,
    /// Counters.
    pub meter: Meter,
    /// The injected clock.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Whether the loop guard is on.
    pub loop_guard: bool,
    /// Ports this service listens on, which the loop guard refuses as source ports.
    pub own_ports: Arc<[u16]>,
    /// Rate limits shared by the service's UDP sockets.
    pub limiter: Arc<Mutex<RateLimiter>>,
    /// Which datagrams get a span, decided before the span is built (default: none).
    pub spans: Sampler,
    /// The `service` name for spans.
    pub name: &'static str,
    /// How datagrams are scheduled.
    pub concurrency: UdpConcurrency,
    /// Datagrams answered at once in the concurrent design; reading waits when all are
    /// taken, so the kernel's buffer (not our memory) absorbs a burst.
    pub in_flight: Arc<Semaphore>,
    /// Injected faults (training).
    pub faults: Faults,
}

impl<S: Service> UdpServer<S> {
    /// Answers datagrams until `stop` is cancelled; datagram tasks (concurrent design) go
    /// into `tracker`. Iterative: one buffer for requests and one for replies, reused, no
    /// allocation per datagram.
    pub async fn run(self, stop: CancellationToken, tracker: TaskTracker) {
        let mut request = vec![0u8; MAX_DATAGRAM + 1];
        let mut reply = Vec::with_capacity(MAX_DATAGRAM);
        let mut backoff = Backoff::new();
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => break,
                received = self.socket.recv_from(&mut request) => received,
            };
            let (len, source) = match received {
                Ok(received) => {
                    backoff.reset();
                    received
                }
                Err(error) => {
                    self.meter.error(ErrorKind::Receive);
                    let pause = backoff.next();
                    tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "receive failed; backing off");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            self.meter.received(len);
            if self.loop_guard {
                if let Some(reason) = loop_guard(source, &self.own_ports) {
                    self.meter.dropped(reason);
                    continue;
                }
            }
            let verdict = {
                // A panic while holding the lock cannot corrupt the buckets (each update is
                // a few float stores), so a poisoned lock is still usable.
                let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
                limiter.check(source.ip().to_canonical(), Instant::now().into_std())
            };
            if let Err(reason) = verdict {
                self.meter.dropped(reason);
                continue;
            }
            if self.faults.udp_drop() {
                self.meter.dropped(DropReason::Fault);
                continue;
            }
            self.meter.request();
            let span = self.datagram_span(source, len);
            let now = self.clock.now();
            let answerer = Answerer {
                service: Arc::clone(&self.service),
                socket: Arc::clone(&self.socket),
                meter: self.meter.clone(),
                faults: self.faults.clone(),
            };
            match self.concurrency {
                // Book ch. 9: answer this datagram before reading the next; one reply
                // buffer, reused.
                UdpConcurrency::Iterative => {
                    reply.clear();
                    answerer
                        .answer(&request[..len], now, source, &span, &mut reply)
                        .await;
                }
                // A task per datagram, at most `in_flight` at once: the request is
                // copied, as the receive buffer is reused at once.
                UdpConcurrency::Concurrent => {
                    let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                        break;
                    };
                    let request = request[..len].to_vec();
                    tracker.spawn(async move {
                        let _permit = permit;
                        let mut reply = Vec::new();
                        answerer
                            .answer(&request, now, source, &span, &mut reply)
                            .await;
                    });
                }
            }
        }
    }

    /// The span of one datagram, if sampled.
    fn datagram_span(&self, source: SocketAddr, len: usize) -> tracing::Span {
        if !self.spans.sample() {
            return tracing::Span::none();
        }
        tracing::info_span!(
            "datagram",
            otel.kind = "server",
            inetsvc.service = self.name,
            network.transport = "udp",
            server.port = self.own_ports.first().copied().unwrap_or(0),
            client.address = %source.ip(),
            client.port = source.port(),
            inetsvc.bytes_received = len,
            inetsvc.bytes_sent = tracing::field::Empty,
        )
    }
}

/// What answering one datagram needs, cheap to clone into a datagram task.
struct Answerer<S> {
    service: Arc<S>,
    socket: Arc<UdpSocket>,
    meter: Meter,
    faults: Faults,
}

impl<S: Service> Answerer<S> {
    /// Computes the answer to `request` into `reply` and sends it to `source`.
    async fn answer(
        &self,
        request: &[u8],
        now: std::time::SystemTime,
        source: SocketAddr,
        span: &tracing::Span,
        reply: &mut Vec<u8>,
    ) {
        span.in_scope(|| self.service.answer_datagram(request, now, reply));
        if self.faults.any() {
            return self.answer_with_faults(source, span, reply).await;
        }
        self.send(reply, source, span).await;
    }

    async fn send(&self, reply: &[u8], to: SocketAddr, span: &tracing::Span) {
        send_datagram(&self.socket, &self.meter, reply, to, span).await;
    }

    /// Sends `reply` with the injected faults applied: latency, truncation, corruption,
    /// then late (delay), held back (reorder) or twice (duplicate).
    async fn answer_with_faults(&self, to: SocketAddr, span: &tracing::Span, reply: &mut Vec<u8>) {
        let faults = &self.faults;
        if let Some(wait) = faults.latency() {
            tokio::time::sleep(wait).await;
        }
        if let Some(max) = faults.truncate() {
            reply.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        faults.corrupt(reply);
        if let Some(wait) = faults.udp_delay() {
            // Late, but without holding up the answers behind it.
            let (socket, meter, reply) =
                (Arc::clone(&self.socket), self.meter.clone(), reply.clone());
            let span = span.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                send_datagram(&socket, &meter, &reply, to, &span).await;
            });
            return;
        }
        if faults.udp_reorder() {
            if let Some(generation) = faults.hold(reply, to) {
                // Released by the next answer, or after the hold time if none comes.
                let (socket, meter, faults) =
                    (Arc::clone(&self.socket), self.meter.clone(), faults.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(faults.hold_time()).await;
                    if let Some(held) = faults.take_held(Some(generation)) {
                        send_datagram(
                            &socket,
                            &meter,
                            &held.reply,
                            held.to,
                            &tracing::Span::none(),
                        )
                        .await;
                    }
                });
                return;
            }
        }
        self.send(reply, to, span).await;
        if let Some(held) = faults.take_held(None) {
            self.send(&held.reply, held.to, &tracing::Span::none())
                .await;
        }
        if faults.udp_duplicate() {
            self.send(reply, to, span).await;
        }
    }
}

/// Sends one answer, counting bytes or the error.
async fn send_datagram(
    socket: &UdpSocket,
    meter: &Meter,
    reply: &[u8],
    to: SocketAddr,
    span: &tracing::Span,
) {
    match socket.send_to(reply, to).await {
        Ok(sent) => {
            meter.sent(sent);
            span.record("inetsvc.bytes_sent", sent);
        }
        Err(error) => {
            meter.error(ErrorKind::Send);
            tracing::debug!(%to, %error, "send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next(), BACKOFF_MIN);
        assert_eq!(backoff.next(), BACKOFF_MIN * 2);
        for _ in 0..20 {
            backoff.next();
        }
        assert_eq!(backoff.next(), BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next(), BACKOFF_MIN);
    }

    #[tokio::test]
    async fn bind_errors_name_the_key_and_the_fix() {
        let taken = bind_tcp("tcp_listen", "127.0.0.1:0".parse().unwrap()).unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind_tcp("tcp_listen", address).unwrap_err().to_string();
        assert!(
            error.starts_with("tcp_listen: cannot bind 127.0.0.1:"),
            "{error}"
        );
        assert!(
            error.contains("already in use") && error.contains("--tcp-listen"),
            "{error}"
        );
        let error = bind_udp("udp_listen", "192.0.2.1:7007".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no such local address"), "{error}");
    }

    #[tokio::test]
    async fn unspecified_ipv6_is_dual_stack() {
        let listener = bind_tcp("tcp_listen", "[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await;
        assert!(client.is_ok(), "IPv4 client reaches the [::] listener");
    }
}
