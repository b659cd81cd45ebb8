//! The UDP receive loop: the book's connectionless server (ch. 9), iterative or a task per
//! datagram, with the loop guard, rate limits and faults in front of the service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::backoff::Backoff;
use super::design::UdpConcurrency;
use super::live::{Cached, Tunables};
use crate::clock::Clock;
use crate::fault::hooks::DatagramOut;
use crate::fault::Faults;
use crate::limits::{loop_guard, DropReason, RateLimiter};
use crate::metrics::{ErrorKind, Meter};
use crate::service::Service;
use crate::shutdown::Trigger;
use crate::telemetry::Sampler;

/// One UDP receive loop; built by [`super::Datapath::udp`].
pub(crate) struct UdpServer<S> {
    /// The bound socket, shared with the datagram tasks in the concurrent design.
    pub(super) socket: Arc<UdpSocket>,
    pub(super) service: Arc<S>,
    pub(super) meter: Meter,
    /// The injected clock.
    pub(super) clock: Arc<dyn Clock>,
    /// Ports this service listens on, which the loop guard refuses as source ports.
    pub(super) own_ports: Arc<[u16]>,
    /// The loop guard's switch and extra ports, and span sampling, as the last reload
    /// left them.
    pub(super) tunables: Cached<Tunables>,
    /// Rate limits shared by the service's UDP sockets.
    pub(super) limiter: Arc<Mutex<RateLimiter>>,
    /// The `service` name for spans.
    pub(super) name: &'static str,
    pub(super) concurrency: UdpConcurrency,
    /// Datagrams answered at once in the concurrent design; reading waits when all are
    /// taken, so the kernel's buffer (not our memory) absorbs a burst.
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) faults: Faults,
    /// The largest datagram the service takes ([`crate::ServiceSpec::max_datagram`]).
    pub(super) max_datagram: usize,
    /// Whether spans are exported.
    pub(super) exporting: bool,
}

impl<S: Service> UdpServer<S> {
    /// Answers datagrams until `stop` fires; datagram tasks (concurrent design) go
    /// into `tracker`. Iterative: one buffer for requests and one for replies, reused, no
    /// allocation per datagram.
    pub(crate) async fn run(mut self, stop: Trigger, tracker: TaskTracker) {
        // One byte more than the largest datagram, so that nothing is ever cut unseen
        // (inetd cuts at 4096, xinetd at 2048).
        let mut request = vec![0u8; self.max_datagram + 1];
        let mut reply = Vec::with_capacity(self.max_datagram);
        let mut backoff = Backoff::new();
        // Made once: a datagram costs no reference-count traffic for what every answer
        // shares; only its arrival time changes.
        let mut answerer = Answerer {
            service: Arc::clone(&self.service),
            out: Out {
                socket: Arc::clone(&self.socket),
                meter: self.meter.clone(),
                received_at: std::time::Instant::now(),
            },
            faults: self.faults.clone(),
        };
        // The limiter's table size as last published, so the gauge is set when it moves.
        let mut sources = 0;
        let stopped = stop.fired();
        tokio::pin!(stopped);
        loop {
            let received = tokio::select! {
                biased;
                () = &mut stopped => break,
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
            let received_at = std::time::Instant::now();
            self.meter.received(len);
            let tunables = self.tunables.get();
            let spans = tunables.udp_spans;
            if tunables.deny.denies(source.ip()) {
                self.meter.dropped(DropReason::Denied);
                continue;
            }
            if tunables.udp.loop_guard {
                let verdict = loop_guard(source, &self.own_ports, &tunables.udp.loop_guard_ports);
                if let Some(reason) = verdict {
                    self.meter.dropped(reason);
                    continue;
                }
            }
            // With both rates 0 (a benchmark, or limits left to a firewall) the limiter
            // is not consulted at all.
            if tunables.udp.rate_per_source > 0 || tunables.udp.rate_global > 0 {
                // A panic while holding the lock cannot corrupt the buckets (each update
                // is a few float stores), so a poisoned lock is still usable.
                let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
                let verdict = limiter.check(source.ip().to_canonical(), received_at);
                let tracked = limiter.tracked();
                drop(limiter);
                if tracked != sources {
                    sources = tracked;
                    self.meter.limiter_sources(tracked);
                }
                if let Err(reason) = verdict {
                    self.meter.dropped(reason);
                    continue;
                }
            }
            if self.faults.udp_drop() {
                self.meter.dropped(DropReason::Fault);
                continue;
            }
            self.meter.request();
            let span = self.datagram_span(spans, source, len);
            let now = self.clock.now();
            answerer.out.received_at = received_at;
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
                    let answerer = answerer.clone();
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
    fn datagram_span(&self, spans: Sampler, source: SocketAddr, len: usize) -> tracing::Span {
        if !(spans.sample() && super::span_wanted(self.exporting)) {
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

/// What answering one datagram needs, cloned into a datagram task in the concurrent
/// design.
struct Answerer<S> {
    service: Arc<S>,
    out: Out,
    faults: Faults,
}

impl<S> Clone for Answerer<S> {
    fn clone(&self) -> Self {
        Answerer {
            service: Arc::clone(&self.service),
            out: self.out.clone(),
            faults: self.faults.clone(),
        }
    }
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
            return self.faults.udp_answer(&self.out, source, span, reply).await;
        }
        self.out.send(reply, source, span).await;
    }
}

/// The socket answers leave by, counted.
#[derive(Clone)]
struct Out {
    socket: Arc<UdpSocket>,
    meter: Meter,
    /// When the request arrived: an answer's latency runs from here to its send. (An
    /// answer the `udp_reorder` fault held back leaves with a later request's and counts
    /// from that one's arrival.)
    received_at: std::time::Instant,
}

impl DatagramOut for Out {
    fn dropped(&self) {
        self.meter.dropped(DropReason::Fault);
    }

    /// Sends one answer, counting bytes or the error.
    async fn send(&self, reply: &[u8], to: SocketAddr, span: &tracing::Span) {
        match self.socket.send_to(reply, to).await {
            Ok(sent) => {
                self.meter.sent(sent);
                self.meter.answered(self.received_at.elapsed());
                span.record("inetsvc.bytes_sent", sent);
            }
            Err(error) => {
                self.meter.error(ErrorKind::Send);
                tracing::debug!(%to, %error, "send failed");
            }
        }
    }
}
