//! Randomised robustness tests of everything the CLI reads from the network or the user:
//! server names, DAYTIME answers, TIME answers. Never a panic; TIME always decodes to a
//! time within half an era of the local clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inetsvc_cli::client::{daytime_line, Reply};
use inetsvc_cli::probe::parse_daytime;
use inetsvc_cli::target::Target;
use inetsvc_proto::daytime::Format;
use inetsvc_proto::time::decode as decode_time;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_target_text_parses_or_says_why(text in ".{0,60}", port in 1u16..) {
        if let Err(reason) = Target::parse(&text, port) {
            prop_assert!(!reason.is_empty() && !reason.contains('\n'));
        }
    }

    #[test]
    fn any_daytime_answer_is_taken_exactly_when_it_is_one_ascii_line(
        bytes in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), any::<u8>()], 0..60)
    ) {
        let reply = Reply {
            peer: "127.0.0.1:13".parse().unwrap(),
            bytes: bytes.clone(),
            rtt: Duration::from_millis(1),
            sent_at: SystemTime::now(),
        };
        // The rule, written out independently of the reader: ASCII, and once the line
        // ending is cut, no newline left and something besides blanks.
        let mut body = bytes.as_slice();
        while let [rest @ .., b'\r' | b'\n'] = body {
            body = rest;
        }
        let one_line = bytes.is_ascii()
            && !body.contains(&b'\n')
            && body.iter().any(|b| !b.is_ascii_whitespace());
        match daytime_line(&reply) {
            Ok(line) => {
                prop_assert!(one_line, "took {bytes:?}");
                prop_assert_eq!(line.as_bytes(), body);
            }
            Err(error) => {
                prop_assert!(!one_line, "refused {bytes:?}: {error}");
            }
        }
    }

    #[test]
    fn every_server_format_reads_back_as_the_time_it_says(seconds in 0i64..(1 << 35), format in 0..3usize) {
        // What the set's DAYTIME servers send (UTC, whole seconds) the probe reads back
        // to the same second, whatever the date.
        let format = Format::ALL[format];
        let time = chrono::DateTime::from_timestamp(seconds, 0).unwrap();
        let line = time.format(format.pattern(true)).to_string();
        let read = parse_daytime(&line);
        prop_assert_eq!(read, Some(SystemTime::from(time)), "{}", line);
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
