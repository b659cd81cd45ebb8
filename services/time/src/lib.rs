//! TIME (RFC 868), port 37: four bytes, big-endian, the seconds since
//! 1900-01-01T00:00:00Z modulo 2^32.
//!
//! The counter wraps on 2036-02-07T06:28:16Z and the server keeps serving across the wrap;
//! unlike an old GNU inetutils, the answer is always exactly four bytes.

use inetsvc_proto::{time, Protocol};
use inetsvc_runtime::{ConfigError, Conn, ConnError, Service, ServiceSpec, Settings, Shutdown};
use std::time::SystemTime;

/// RFC 868: `now` as seconds since 1900, mod 2^32, big-endian (the encoding lives in
/// the wire crate, which the clients share).
pub fn time_reply(now: SystemTime) -> [u8; 4] {
    time::encode(now)
}

/// The TIME protocol.
#[derive(Debug, Default)]
pub struct Time;

impl Service for Time {
    const SPEC: ServiceSpec = ServiceSpec {
        name: "time",
        binary: "timed",
        about: "TIME service (RFC 868) over TCP and UDP, with metrics, health and graceful drain",
        port: Protocol::Time.port(),
        admin_port: Protocol::Time.admin_port(),
        keys: &[],
        max_datagram: inetsvc_proto::MAX_DATAGRAM,
        clock_wrap_unix: Some(time::WRAP_UNIX),
        answers_on_connect: true,
    };

    fn from_settings(_: &Settings) -> Result<Self, ConfigError> {
        Ok(Time)
    }

    /// RFC 868: send the time and close; the runtime half-closes and drains first.
    async fn serve_tcp(&self, conn: Conn, _: Shutdown) -> Result<(), ConnError> {
        let answer = time_reply(conn.now());
        conn.answer_and_close(&answer).await
    }

    /// RFC 868: any datagram, empty included, gets the four bytes.
    fn answer_datagram(&self, _request: &[u8], now: SystemTime, reply: &mut Vec<u8>) {
        reply.extend_from_slice(&time_reply(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inetsvc_proto::time::from_unix_seconds;

    #[test]
    fn every_datagram_gets_the_four_bytes() {
        let mut reply = Vec::new();
        Time.answer_datagram(b"", from_unix_seconds(0), &mut reply);
        assert_eq!(reply, 2_208_988_800u32.to_be_bytes());
        reply.clear();
        Time.answer_datagram(&[0u8; 1000], from_unix_seconds(0), &mut reply);
        assert_eq!(reply.len(), time::ANSWER_LEN);
    }
}
