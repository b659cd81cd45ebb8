//! TIME, RFC 868, port 37.
//!
//! Request: over TCP, the connection itself; over UDP, any datagram, empty included.
//! Answer: exactly [`ANSWER_LEN`] bytes, big-endian, the seconds since
//! 1900-01-01T00:00:00Z modulo 2^32. The counter wraps to zero at [`WRAP_UNIX`]
//! (2036-02-07T06:28:16Z) and servers keep answering across the wrap; a reader tells the
//! 136-year eras apart by its own clock ([`decode`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 868: "The Time service … on TCP port 37", and the same for UDP.
pub const PORT: u16 = 37;

/// The answer's length. Unlike an old GNU inetutils (which wrote `sizeof(long)`, 8 bytes
/// on 64-bit machines), always exactly four.
pub const ANSWER_LEN: usize = 4;

/// Seconds from 1900-01-01 to 1970-01-01 (RFC 868: "2,208,988,800 corresponds to 00:00
/// 1 Jan 1970 GMT").
pub const SECONDS_1900_TO_1970: i64 = 2_208_988_800;

/// Seconds in one era of the 32-bit counter.
pub const ERA_SECONDS: i64 = 1 << 32;

/// The Unix second at which the counter first wraps to zero: 2036-02-07T06:28:16Z.
pub const WRAP_UNIX: u64 = (ERA_SECONDS - SECONDS_1900_TO_1970) as u64;

/// Whole seconds since the Unix epoch, rounded down — also before 1970, so that the
/// second just before the epoch is -1, not 0.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    }
}

/// The time `seconds` after (or, negative, before) the Unix epoch.
pub fn from_unix_seconds(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// RFC 868: `now` as seconds since 1900, mod 2^32, big-endian.
pub fn encode(now: SystemTime) -> [u8; ANSWER_LEN] {
    let since_1900 = i128::from(unix_seconds(now)) + i128::from(SECONDS_1900_TO_1970);
    (since_1900.rem_euclid(i128::from(ERA_SECONDS)) as u32).to_be_bytes()
}

/// Reads an answer: exactly [`ANSWER_LEN`] bytes, or `None`.
pub fn answer(bytes: &[u8]) -> Option<[u8; ANSWER_LEN]> {
    bytes.try_into().ok()
}

/// An answer as a time: of the eras the counter cannot tell apart, the one nearest
/// `local_now`, so that a reader keeps working after the 2036 wrap (and after any later
/// one).
pub fn decode(answer: [u8; ANSWER_LEN], local_now: SystemTime) -> SystemTime {
    let counter = i64::from(u32::from_be_bytes(answer));
    let now = unix_seconds(local_now);
    let base = counter - SECONDS_1900_TO_1970;
    // The era whose reading lies within half an era of the local clock, whatever the date
    // (a fixed list of eras fails after the year 2172).
    let nearest = base + (now - base + ERA_SECONDS / 2).div_euclid(ERA_SECONDS) * ERA_SECONDS;
    from_unix_seconds(nearest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_gives_the_examples_of_rfc_868() {
        // RFC 868: 2,208,988,800 is 00:00 1 Jan 1970 GMT; 2,398,291,200 is 1 Jan 1976.
        assert_eq!(encode(from_unix_seconds(0)), 2_208_988_800u32.to_be_bytes());
        assert_eq!(
            encode(from_unix_seconds(189_302_400)),
            2_398_291_200u32.to_be_bytes()
        );
        assert_eq!(encode(from_unix_seconds(0)), [0x83, 0xaa, 0x7e, 0x80]);
    }

    #[test]
    fn encode_wraps_after_2036() {
        let wrap = WRAP_UNIX as i64;
        assert_eq!(wrap, 2_085_978_496, "2036-02-07T06:28:16Z");
        assert_eq!(encode(from_unix_seconds(wrap - 1)), u32::MAX.to_be_bytes());
        assert_eq!(encode(from_unix_seconds(wrap)), [0, 0, 0, 0]);
        assert_eq!(encode(from_unix_seconds(wrap + 1)), [0, 0, 0, 1]);
        assert_eq!(encode(from_unix_seconds(wrap + ERA_SECONDS)), [0, 0, 0, 0]);
    }

    #[test]
    fn unix_seconds_rounds_down_before_1970() {
        let epoch = from_unix_seconds(0);
        assert_eq!(unix_seconds(epoch), 0);
        assert_eq!(unix_seconds(epoch + Duration::from_millis(999)), 0);
        assert_eq!(unix_seconds(epoch - Duration::from_millis(1)), -1);
        assert_eq!(unix_seconds(epoch - Duration::from_secs(1)), -1);
        assert_eq!(
            unix_seconds(epoch - Duration::from_millis(1_001)),
            -2,
            "floor, not truncation"
        );
        assert_eq!(unix_seconds(from_unix_seconds(-86_400)), -86_400);
    }

    #[test]
    fn encode_ignores_fractions_and_handles_pre_1970() {
        let epoch = from_unix_seconds(0);
        assert_eq!(encode(epoch + Duration::from_millis(999)), encode(epoch));
        assert_eq!(
            encode(epoch - Duration::from_millis(1)),
            2_208_988_799u32.to_be_bytes()
        );
        assert_eq!(encode(from_unix_seconds(-SECONDS_1900_TO_1970)), [0; 4]);
    }

    #[test]
    fn decode_reads_rfc_868_values() {
        let epoch = from_unix_seconds(0);
        assert_eq!(decode(2_208_988_800u32.to_be_bytes(), epoch), epoch);
        let now = from_unix_seconds(1_795_554_893);
        assert_eq!(decode(encode(now), now), now);
    }

    #[test]
    fn decode_keeps_working_across_the_2036_wrap() {
        let wrap = WRAP_UNIX as i64;
        let just_after = from_unix_seconds(wrap + 10);
        assert_eq!(decode([0, 0, 0, 10], just_after), just_after);
        assert_eq!(decode([0xff; 4], just_after), from_unix_seconds(wrap - 1));
        // Before 1970 too: the era nearest the reader's clock.
        let before = from_unix_seconds(-1);
        assert_eq!(decode(encode(before), from_unix_seconds(0)), before);
    }

    #[test]
    fn answers_are_exactly_four_bytes() {
        assert_eq!(answer(&[1, 2, 3, 4]), Some([1, 2, 3, 4]));
        for bad in [&[][..], &[1, 2, 3], &[0; 8]] {
            assert_eq!(answer(bad), None, "{bad:?}");
        }
    }
}
