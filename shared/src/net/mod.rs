//! The datapath: sockets, the TCP accept loop, the UDP receive loop, the connection a
//! service writes to, and the server designs (docs/architecture.md, "A connection's path"
//! and "A datagram's path").
//!
//! - `bind`: binding, with errors that name the key and the fix;
//! - `tcp`: the accept loop, caps and the connection's span;
//! - `conn`: [`Conn`], the connection with its timeouts, counters and graceful close;
//! - `udp`: the receive loop, loop guard and rate limits;
//! - `design`: the one place that decides the server design;
//! - `backoff`: pauses after a failing accept or receive.
//!
//! [`Datapath`] is built once from the configuration and hands every listener what it
//! needs, so that a new setting is read in one place and no caller fills a struct by hand.

mod backoff;
mod bind;
mod conn;
mod design;
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
    caps: ConnectionCaps,
    tcp_spans: Sampler,
    trace_ids: bool,
    udp: UdpOptions,
    udp_meter: Meter,
    udp_spans: Sampler,
    limiter: Arc<Mutex<RateLimiter>>,
    in_flight: Arc<Semaphore>,
    faults: Faults,
    clock: Arc<dyn Clock>,
}

impl<S: Service> Datapath<S> {
    /// The datapath of `service`, with `tcp.max_connections` already fitted to the
    /// open-file limit; `shutdown` is the signal its sessions get.
    pub(crate) fn new(
        service: S,
        spec: &ServiceSpec,
        tcp: TcpOptions,
        udp: UdpOptions,
        instruments: Instruments<'_>,
        shutdown: Shutdown,
    ) -> Self {
        let meter = |transport| match instruments.metrics {
            Some(metrics) => metrics.transport(transport),
            None => Meter::off(),
        };
        let sampler = |ratio: fn(&TraceConfig) -> f64| match instruments.traces {
            Some(traces) => Sampler::new(ratio(traces)),
            None => Sampler::never(),
        };
        let faults = instruments.faults.clone();
        // Every reply's time comes through the faults, so clock faults reach DAYTIME and
        // TIME; with none set this is the system clock behind one atomic load.
        let clock: Arc<dyn Clock> = Arc::new(faults.clone());
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
            caps: ConnectionCaps::new(tcp.max_connections, tcp.max_connections_per_source),
            tcp_spans: sampler(|traces| traces.tcp_ratio),
            trace_ids: instruments.exporting,
            udp: udp.clone(),
            udp_meter: meter(Transport::Udp),
            udp_spans: sampler(|traces| traces.udp_ratio),
            limiter: Arc::new(Mutex::new(RateLimiter::new(
                udp.rate_per_source,
                udp.burst_per_source,
                udp.rate_global,
                udp.limiter_sources,
                std::time::Instant::now(),
            ))),
            in_flight: Arc::new(Semaphore::new(tcp.max_connections)),
            faults,
            clock,
        }
    }

    /// The accept loop of one TCP listener.
    pub(crate) fn tcp(&self, listener: TcpListener) -> TcpServer<S> {
        TcpServer {
            listener,
            service: Arc::clone(&self.service),
            conn: self.conn.clone(),
            caps: self.caps.clone(),
            spans: self.tcp_spans,
            trace_ids: self.trace_ids,
            name: self.name,
        }
    }

    /// The receive loop of one UDP socket; `own_ports` are every UDP port this service
    /// serves, which the loop guard refuses as source ports (with `udp_loop_guard_ports`).
    pub(crate) fn udp(&self, socket: UdpSocket, own_ports: &[u16]) -> UdpServer<S> {
        let refused: Arc<[u16]> = own_ports
            .iter()
            .chain(&self.udp.loop_guard_ports)
            .copied()
            .collect();
        UdpServer {
            socket: Arc::new(socket),
            service: Arc::clone(&self.service),
            meter: self.udp_meter.clone(),
            clock: Arc::clone(&self.clock),
            loop_guard: self.udp.loop_guard,
            own_ports: refused,
            limiter: Arc::clone(&self.limiter),
            spans: self.udp_spans,
            name: self.name,
            concurrency: self.udp.concurrency,
            in_flight: Arc::clone(&self.in_flight),
            faults: self.faults.clone(),
            max_datagram: self.max_datagram,
        }
    }
}

/// The local ports of `sockets`, for the loop guard.
pub(crate) fn own_ports(sockets: &[UdpSocket]) -> Vec<u16> {
    sockets
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a: SocketAddr| a.port()))
        .collect()
}
