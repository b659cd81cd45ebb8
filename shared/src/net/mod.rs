//! The datapath: sockets, the TCP accept loop, the UDP receive loop, the connection a
//! service writes to, and the server designs (docs/architecture.md, "A connection's path"
//! and "A datagram's path").
//!
//! - `bind`: binding, with errors that name the key and the fix;
//! - `tcp`: the accept loop, caps and the connection's span;
//! - `conn`: [`Conn`], the connection with its timeouts, counters and graceful close;
//! - `udp`: the receive loop, loop guard and rate limits;
//! - `design`: the one place that decides the server design;
//! - `backoff`: pauses after a failing accept or receive;
//! - `alarm`: timers that the hot path polls without touching the timer wheel.
//!
//! [`Datapath`] is built once from the configuration and hands every listener what it
//! needs, so that a new setting is read in one place and no caller fills a struct by hand.

mod alarm;
mod backoff;
mod bind;
mod conn;
mod design;
mod live;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

pub(crate) use backoff::Backoff;
pub use bind::{bind_tcp, bind_udp};
pub use conn::{Conn, ConnError};
pub use design::{runtime, TcpConcurrency, UdpConcurrency};

use crate::clock::Clock;
use crate::fault::Faults;
use crate::limits::RateLimiter;
use crate::metrics::{Meter, Metrics, Transport};
use crate::options::{TcpOptions, UdpOptions};
use crate::service::{Service, ServiceSpec};
use crate::shutdown::Shutdown;
use crate::telemetry::{Sampler, TraceConfig};
use conn::ConnSettings;
use live::{Live, Tunables};
use tcp::{ConnectionCaps, TcpServer};
use udp::UdpServer;

/// How the datapath is observed: metrics (if on), spans (if tracing is on) and faults.
pub(crate) struct Instruments<'a> {
    /// `None` when metrics are off.
    pub metrics: Option<&'a Metrics>,
    /// `None` when tracing is off.
    pub traces: Option<&'a TraceConfig>,
    /// Whether spans are exported (so that their ids are worth copying into logs).
    pub exporting: bool,
    /// The service's faults, which are also its clock.
    pub faults: &'a Faults,
}

/// What every listener of one service shares.
pub(crate) struct Datapath<S> {
    service: Arc<S>,
    name: &'static str,
    max_datagram: usize,
    conn: ConnSettings,
    trace_ids: bool,
    udp_meter: Meter,
    udp_concurrency: UdpConcurrency,
    faults: Faults,
    clock: Arc<dyn Clock>,
    controls: Controls,
}

/// What a reload changes in a running datapath, without knowing the service.
#[derive(Clone)]
pub(crate) struct Controls {
    tunables: Arc<Live<Tunables>>,
    caps: ConnectionCaps,
    limiter: Arc<Mutex<RateLimiter>>,
    /// Datagrams answered at once in the concurrent UDP design; sized like the TCP cap.
    in_flight: Arc<Semaphore>,
    /// The TCP cap in force, which both semaphores hold as permits.
    cap: Arc<Mutex<usize>>,
    /// Whether spans are on at all (`tracing`), which a reload cannot change.
    tracing: bool,
}

impl<S: Service> Datapath<S> {
    /// The datapath of `service`, with `tcp.max_connections` already fitted to the
    /// open-file limit; `shutdown` is the signal its sessions get.
    pub(crate) fn new(
        service: S,
        spec: &ServiceSpec,
        tcp: TcpOptions,
        udp: UdpOptions,
        deny: crate::limits::DenyList,
        instruments: Instruments<'_>,
        shutdown: Shutdown,
    ) -> Self {
        let meter = |transport| match instruments.metrics {
            Some(metrics) => metrics.transport(transport),
            None => Meter::off(),
        };
        let faults = instruments.faults.clone();
        // Every reply's time comes through the faults, so clock faults reach DAYTIME and
        // TIME; with none set this is the system clock behind one atomic load.
        let clock: Arc<dyn Clock> = Arc::new(faults.clone());
        let tunables = Tunables {
            tcp,
            udp: udp.clone(),
            deny,
            tcp_spans: sampler(instruments.traces, |traces| traces.tcp_ratio),
            udp_spans: sampler(instruments.traces, |traces| traces.udp_ratio),
        };
        let controls = Controls {
            tunables: Live::new(tunables),
            caps: ConnectionCaps::new(tcp.max_connections, tcp.max_connections_per_source),
            limiter: Arc::new(Mutex::new(RateLimiter::new(
                udp.rate_per_source,
                udp.burst_per_source,
                udp.rate_global,
                udp.limiter_sources,
                std::time::Instant::now(),
            ))),
            in_flight: Arc::new(Semaphore::new(tcp.max_connections)),
            cap: Arc::new(Mutex::new(tcp.max_connections)),
            tracing: instruments.traces.is_some(),
        };
        Datapath {
            service: Arc::new(service),
            name: spec.name,
            max_datagram: spec.max_datagram,
            conn: ConnSettings::new(
                meter(Transport::Tcp),
                Arc::clone(&clock),
                tcp,
                faults.clone(),
                shutdown,
            ),
            trace_ids: instruments.exporting,
            udp_meter: meter(Transport::Udp),
            udp_concurrency: udp.concurrency,
            faults,
            clock,
            controls,
        }
    }

    /// What a reload changes.
    pub(crate) fn controls(&self) -> Controls {
        self.controls.clone()
    }

    /// The accept loop of one TCP listener.
    pub(crate) fn tcp(&self, listener: TcpListener) -> TcpServer<S> {
        TcpServer {
            port: listener.local_addr().map_or(0, |a| a.port()),
            blocked: Default::default(),
            listener,
            service: Arc::clone(&self.service),
            conn: self.conn.clone(),
            caps: self.controls.caps.clone(),
            tunables: self.controls.tunables.reader(),
            trace_ids: self.trace_ids,
            name: self.name,
        }
    }

    /// The receive loop of one UDP socket; `own_ports` are every UDP port this service
    /// serves, which the loop guard refuses as source ports (as `udp_loop_guard_ports`).
    pub(crate) fn udp(&self, socket: UdpSocket, own_ports: &[u16]) -> UdpServer<S> {
        UdpServer {
            socket: Arc::new(socket),
            service: Arc::clone(&self.service),
            meter: self.udp_meter.clone(),
            clock: Arc::clone(&self.clock),
            own_ports: own_ports.into(),
            tunables: self.controls.tunables.reader(),
            limiter: Arc::clone(&self.controls.limiter),
            name: self.name,
            concurrency: self.udp_concurrency,
            in_flight: Arc::clone(&self.controls.in_flight),
            faults: self.faults.clone(),
            max_datagram: self.max_datagram,
            exporting: self.trace_ids,
        }
    }
}
/// Whether a sampled connection or datagram gets a span at all: only when something
/// reads it, the exporter or a debug log line inside it. A span nobody reads still costs
/// its allocation and fields on every connection (docs/architecture.md, "A connection's path").
#[inline]
pub(super) fn span_wanted(exporting: bool) -> bool {
    exporting || tracing::enabled!(tracing::Level::DEBUG)
}

/// The sampler for one transport: never with tracing off.
fn sampler(traces: Option<&TraceConfig>, ratio: fn(&TraceConfig) -> f64) -> Sampler {
    match traces {
        Some(traces) => Sampler::new(ratio(traces)),
        None => Sampler::never(),
    }
}

impl Controls {
    /// Applies reloaded options to new work: connections and datagrams from now on get
    /// them, those in progress keep theirs. The design never changes live.
    pub(crate) fn apply(
        &self,
        mut tcp: TcpOptions,
        mut udp: UdpOptions,
        deny: crate::limits::DenyList,
        traces: &TraceConfig,
    ) {
        let old = self.tunables.reader().get().clone();
        tcp.concurrency = old.tcp.concurrency;
        udp.concurrency = old.udp.concurrency;
        {
            let mut cap = self.cap.lock().unwrap_or_else(|p| p.into_inner());
            resize(self.caps.global(), *cap, tcp.max_connections);
            resize(&self.in_flight, *cap, tcp.max_connections);
            *cap = tcp.max_connections;
        }
        self.caps.set_per_source(tcp.max_connections_per_source);
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reconfigure(
                udp.rate_per_source,
                udp.burst_per_source,
                udp.rate_global,
                udp.limiter_sources,
            );
        let traces = self.tracing.then_some(traces);
        self.tunables.set(Tunables {
            tcp,
            udp,
            deny,
            tcp_spans: sampler(traces, |traces| traces.tcp_ratio),
            udp_spans: sampler(traces, |traces| traces.udp_ratio),
        });
    }
}

/// Grows or shrinks a cap held as semaphore permits. Shrinking takes the surplus permits
/// as they come free, so connections already served are never cut.
fn resize(permits: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        permits.add_permits(to - from);
    } else if to < from {
        let permits = Arc::clone(permits);
        let surplus = (from - to) as u32;
        tokio::spawn(async move {
            if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                taken.forget();
            }
        });
    }
}

/// The local ports of `sockets`, for the loop guard.
pub(crate) fn own_ports(sockets: &[UdpSocket]) -> Vec<u16> {
    sockets
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a: SocketAddr| a.port()))
        .collect()
}
