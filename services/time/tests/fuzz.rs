//! Randomised robustness tests of the TIME protocol function: any time gives the RFC 868
//! value, modulo 2^32, without a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inetsvc_proto::time::SECONDS_1900_TO_1970;
use inetsvc_time::time_reply;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_time_gives_seconds_since_1900_mod_2_32(seconds in -(1i64 << 40)..(1i64 << 40)) {
        let now = if seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(seconds as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
        };
        let expected = (seconds + SECONDS_1900_TO_1970).rem_euclid(1 << 32) as u32;
        prop_assert_eq!(time_reply(now), expected.to_be_bytes());
    }

    #[test]
    fn fractions_never_round_up(seconds in 0u64..(1 << 34), nanos in 0u32..1_000_000_000) {
        let now = UNIX_EPOCH + Duration::new(seconds, nanos);
        prop_assert_eq!(time_reply(now), time_reply(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)));
    }
}
