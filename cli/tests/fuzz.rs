//! Randomised robustness tests of everything the CLI reads from the network or the user:
//! server names, DAYTIME answers, TIME answers. Never a panic; TIME always decodes to a
//! time within half an era of the local clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inetsvc_cli::client::{daytime_line, decode_time, Reply};
use inetsvc_cli::probe::parse_daytime;
use inetsvc_cli::target::Target;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_target_text_parses_or_says_why(text in ".{0,60}", port in 1u16..) {
        if let Err(reason) = Target::parse(&text, port) {
            prop_assert!(!reason.is_empty() && !reason.contains('\n'));
        }
    }

    #[test]
    fn any_daytime_answer_is_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let reply = Reply {
            peer: "127.0.0.1:13".parse().unwrap(),
            bytes,
            rtt: Duration::from_millis(1),
            sent_at: SystemTime::now(),
        };
        if let Ok(line) = daytime_line(&reply) {
            let _ = parse_daytime(&line);
        }
    }

    #[test]
    fn any_time_answer_decodes_near_the_local_clock(bytes in any::<[u8; 4]>(), local in 0u64..(1 << 36)) {
        let local = UNIX_EPOCH + Duration::from_secs(local);
        let decoded = decode_time(bytes, local);
        let distance = match decoded.duration_since(local) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        prop_assert!(distance <= Duration::from_secs(1 << 31));
    }
}
