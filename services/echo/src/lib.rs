//! ECHO (RFC 862), port 7: every byte received is sent back.
//!
//! TCP echoes until the client closes, reading only as fast as the client reads our
//! answers (bounded memory, backpressure instead of buffering); UDP answers each datagram
//! with its own data, byte-exact up to the largest datagram.

use inetsvc_proto::{echo, Protocol};
use inetsvc_runtime::{ConfigError, Conn, ConnError, Service, ServiceSpec, Settings, Shutdown};
use std::time::SystemTime;

/// The ECHO protocol.
#[derive(Debug, Default)]
pub struct Echo;

impl Service for Echo {
    const SPEC: ServiceSpec = ServiceSpec {
        name: "echo",
        binary: "echod",
        about: "ECHO service (RFC 862) over TCP and UDP, with metrics, health and graceful drain",
        port: Protocol::Echo.port(),
        admin_port: Protocol::Echo.admin_port(),
        keys: &[],
        max_datagram: inetsvc_proto::MAX_DATAGRAM,
        clock_wrap_unix: None,
        answers_on_connect: false,
    };

    fn from_settings(_: &Settings) -> Result<Self, ConfigError> {
        Ok(Echo)
    }

    /// RFC 862: "Once a connection is established any data received is sent back. This
    /// continues until the calling user terminates the connection." One buffer, refilled
    /// only after it has been written back: a client that never reads is held by
    /// backpressure and then the write timeout, never by memory. A session still open
    /// when the service shuts down is finished gracefully (the client reads end of
    /// stream) instead of being cut at the deadline. The request is pinned once and
    /// checked first on every turn (an atomic load), so that a client that never pauses
    /// is finished too.
    async fn serve_tcp(&self, mut conn: Conn, shutdown: Shutdown) -> Result<(), ConnError> {
        let mut buf = Vec::new();
        let requested = shutdown.requested();
        tokio::pin!(requested);
        loop {
            let n = tokio::select! {
                biased;
                // Everything read so far has been written back: nothing is lost.
                () = &mut requested => return conn.finish().await,
                read = conn.read(&mut buf) => read?,
            };
            if n == 0 {
                // The client half-closed: everything read has been written back.
                return conn.finish().await;
            }
            conn.write_all(&buf[..n]).await?;
        }
    }

    fn answer_datagram(&self, request: &[u8], _now: SystemTime, reply: &mut Vec<u8>) {
        echo::answer(request, reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datagram_gets_its_own_data_back() {
        let mut reply = Vec::new();
        Echo.answer_datagram(b"ping", SystemTime::UNIX_EPOCH, &mut reply);
        assert_eq!(reply, b"ping");
        reply.clear();
        Echo.answer_datagram(b"", SystemTime::UNIX_EPOCH, &mut reply);
        assert!(reply.is_empty(), "an empty datagram is echoed empty");
    }
}
