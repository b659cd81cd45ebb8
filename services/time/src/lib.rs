//! TIME (RFC 868), port 37: four bytes, big-endian, the seconds since
//! 1900-01-01T00:00:00Z modulo 2^32.
//!
//! The counter wraps on 2036-02-07T06:28:16Z and the server keeps serving across the wrap;
//! unlike an old GNU inetutils, the answer is always exactly four bytes.

use inetsvc_runtime::{ConfigError, Conn, ConnError, Service, ServiceSpec, Settings};
use std::time::{SystemTime, UNIX_EPOCH};

/// The TIME service's description for the runtime.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "time",
    binary: "timed",
    about: "TIME service (RFC 868) over TCP and UDP, with metrics, health and graceful drain",
    port: 37,
    admin_port: 9037,
    keys: &[],
};

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868: 2,208,988,800).
pub const SECONDS_1900_TO_1970: i64 = 2_208_988_800;

/// Whole seconds since the Unix epoch, rounded down (also before 1970).
fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => {
            let before = before.duration();
            -(before.as_secs() as i64) - i64::from(before.subsec_nanos() > 0)
        }
    }
}

/// RFC 868: seconds since 1900, mod 2^32, big-endian.
pub fn time_reply(now: SystemTime) -> [u8; 4] {
    let since_1900 = unix_seconds(now) + SECONDS_1900_TO_1970;
    (since_1900.rem_euclid(1 << 32) as u32).to_be_bytes()
}

/// The TIME protocol.
#[derive(Debug, Default)]
pub struct Time;

impl Service for Time {
    fn from_settings(_: &Settings) -> Result<Self, ConfigError> {
        Ok(Time)
    }

    /// RFC 868: send the time and close; the runtime half-closes and drains first.
    async fn serve_tcp(&self, conn: Conn) -> Result<(), ConnError> {
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
    use std::time::Duration;

    fn at(unix: i64) -> SystemTime {
        if unix >= 0 {
            UNIX_EPOCH + Duration::from_secs(unix as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
        }
    }

    #[test]
    fn time_reply_examples_from_rfc_868() {
        // RFC 868: 2,208,988,800 is 00:00 1 Jan 1970 GMT; 2,398,291,200 is 1 Jan 1976.
        assert_eq!(time_reply(at(0)), 2_208_988_800u32.to_be_bytes());
        assert_eq!(time_reply(at(189_302_400)), 2_398_291_200u32.to_be_bytes());
    }

    #[test]
    fn time_reply_is_big_endian_four_bytes() {
        assert_eq!(time_reply(at(0)), [0x83, 0xaa, 0x7e, 0x80]);
    }

    #[test]
    fn time_reply_wraps_after_2036() {
        // 2036-02-07T06:28:16Z is Unix 2,085,978,496: the 32-bit counter reaches 2^32.
        let wrap = 2_085_978_496;
        assert_eq!(time_reply(at(wrap - 1)), u32::MAX.to_be_bytes());
        assert_eq!(time_reply(at(wrap)), [0, 0, 0, 0]);
        assert_eq!(time_reply(at(wrap + 1)), [0, 0, 0, 1]);
        // And again a full era later.
        assert_eq!(time_reply(at(wrap + (1 << 32))), [0, 0, 0, 0]);
    }

    #[test]
    fn time_reply_ignores_fractions_and_handles_pre_1970() {
        assert_eq!(
            time_reply(at(0) + Duration::from_millis(999)),
            time_reply(at(0))
        );
        assert_eq!(
            time_reply(at(0) - Duration::from_millis(1)),
            2_208_988_799u32.to_be_bytes()
        );
        assert_eq!(time_reply(at(-SECONDS_1900_TO_1970)), [0, 0, 0, 0]);
    }

    #[test]
    fn every_datagram_gets_the_four_bytes() {
        let mut reply = Vec::new();
        Time.answer_datagram(b"", at(0), &mut reply);
        assert_eq!(reply, time_reply(at(0)));
        reply.clear();
        Time.answer_datagram(&[0u8; 1000], at(0), &mut reply);
        assert_eq!(reply.len(), 4);
    }
}
