//! ECHO (RFC 862), port 7: every byte received is sent back.
//!
//! TCP echoes until the client closes, reading only as fast as the client reads our
//! answers (bounded memory, backpressure instead of buffering); UDP answers each datagram
//! with its own data, byte-exact up to the largest datagram.

use inetsvc_runtime::{ConfigError, Conn, ConnError, Service, ServiceSpec, Settings};
use std::time::SystemTime;

/// The ECHO service's description for the runtime.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "echo",
    binary: "echod",
    about: "ECHO service (RFC 862) over TCP and UDP, with metrics, health and graceful drain",
    port: 7,
    admin_port: 9007,
    keys: &[],
};

/// RFC 862: the answer to a datagram is its own data.
pub fn echo_reply(request: &[u8], reply: &mut Vec<u8>) {
    reply.extend_from_slice(request);
}

/// The ECHO protocol.
#[derive(Debug, Default)]
pub struct Echo;

impl Service for Echo {
    fn from_settings(_: &Settings) -> Result<Self, ConfigError> {
        Ok(Echo)
    }

    /// RFC 862: "Once a connection is established any data received is sent back. This
    /// continues until the calling user terminates the connection." One buffer, refilled
    /// only after it has been written back: a client that never reads is held by
    /// backpressure and then the write timeout, never by memory.
    async fn serve_tcp(&self, mut conn: Conn) -> Result<(), ConnError> {
        let mut buf = Vec::new();
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                // The client half-closed: everything read has been written back.
                return conn.finish().await;
            }
            conn.write_all(&buf[..n]).await?;
        }
    }

    fn answer_datagram(&self, request: &[u8], _now: SystemTime, reply: &mut Vec<u8>) {
        echo_reply(request, reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reply_is_byte_exact_including_empty_and_largest() {
        for len in [0usize, 1, 2048, 4096, 65_507] {
            let request: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut reply = Vec::new();
            echo_reply(&request, &mut reply);
            assert_eq!(reply, request, "length {len}");
        }
    }
}
