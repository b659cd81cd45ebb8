//! The one seam between the runtime and a protocol (docs/architecture.md, "The seam").
//!
//! Like pingora's `ServerApp`, a service is handed an established connection (or one
//! datagram) and answers it; listening, limits, timeouts, metrics and shutdown stay in the
//! runtime. A new service implements [`Service`], with its [`ServiceSpec`] as the
//! associated constant, and nothing else.

use std::future::Future;
use std::time::SystemTime;

use crate::config::{ConfigError, Key, Settings};
use crate::net::{Conn, ConnError};
use crate::shutdown::Shutdown;

/// What the runtime needs to know about a service before it can load its configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Protocol name, used as the `service` metric label and in logs (`echo`).
    pub name: &'static str,
    /// Binary name, used in `--help` and error messages (`echod`).
    pub binary: &'static str,
    /// One line for `--help`, citing the RFC.
    pub about: &'static str,
    /// The IANA well-known port (RFC 862: 7, RFC 867: 13, RFC 868: 37), the default for
    /// both transports.
    pub port: u16,
    /// Default admin HTTP port; distinct per service so that all three can share a host.
    pub admin_port: u16,
    /// Settings only this service understands, on top of the runtime's own.
    pub keys: &'static [Key],
    /// The largest request datagram the protocol takes (the wire crate's largest UDP
    /// payload for all three): the receive buffer is one byte more.
    pub max_datagram: usize,
    /// The instant, in Unix seconds, the `clock_wrap` fault leads up to: the protocol's
    /// counter wrap (TIME's 2036 roll-over); `None` for a protocol without a clock, where
    /// the fault changes nothing.
    pub clock_wrap_unix: Option<u64>,
    /// Whether [`Service::serve_tcp`] answers with one write at accept and closes
    /// ([`Conn::answer_and_close`]: DAYTIME, TIME), so that the time to that answer is
    /// the TCP answer latency the runtime measures and the latency SLO reads.
    pub answers_on_connect: bool,
}

/// A protocol: what to answer over TCP and over UDP.
pub trait Service: Send + Sync + Sized + 'static {
    /// What the runtime needs to know before it can load the configuration: tied to the
    /// type, so that no binary can start a service with another one's ports or keys.
    const SPEC: ServiceSpec;

    /// Builds the service from its own keys (see [`ServiceSpec::keys`]); an invalid value
    /// is a [`ConfigError`] naming the key.
    fn from_settings(settings: &Settings) -> Result<Self, ConfigError>;

    /// Serves one accepted TCP connection. The runtime has already applied the connection
    /// caps, and bounds the whole call by `max_connection_time`; `conn` applies the idle and
    /// write timeouts and counts bytes. `shutdown` fires shortly before the shutdown
    /// deadline: a session that can last should then [`Conn::finish`] instead of being cut.
    fn serve_tcp(
        &self,
        conn: Conn,
        shutdown: Shutdown,
    ) -> impl Future<Output = Result<(), ConnError>> + Send;

    /// Writes the answer to one datagram into `reply` (empty on entry, capacity kept
    /// between calls so that the hot path does not allocate). `now` comes from the
    /// injected clock. The loop guard and rate limits have already been applied.
    fn answer_datagram(&self, request: &[u8], now: SystemTime, reply: &mut Vec<u8>);
}
