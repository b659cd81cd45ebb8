//! Randomised robustness tests of the DAYTIME protocol functions: any time (far past and
//! future included), any format, any zone text — never a panic, always one ASCII line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inetsvc_daytime::{daytime_reply, Format, Zone};
use proptest::prelude::*;

fn time(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

proptest! {
    #[test]
    fn any_time_gives_one_ascii_line(seconds in any::<i64>(), format in 0..3u8, zone in prop_oneof![
        Just("UTC".to_owned()), Just("Europe/Berlin".to_owned()), Just("+05:30".to_owned()),
        Just("-12:00".to_owned()), Just("Pacific/Kiritimati".to_owned())]) {
        let format = [Format::Ctime, Format::Rfc3339, Format::Rfc2822][format as usize];
        let mut out = Vec::new();
        daytime_reply(time(seconds), format, Zone::parse(&zone).unwrap(), &mut out);
        prop_assert!(out.is_ascii());
        prop_assert!(out.ends_with(b"\r\n"));
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn a_format_is_taken_exactly_when_it_is_one_of_the_three_names(text in prop_oneof![
        Just("ctime".to_owned()), Just("RFC3339".to_owned()), Just("rfc2822".to_owned()), ".{0,12}"]) {
        let named = ["ctime", "rfc3339", "rfc2822"].contains(&text.to_ascii_lowercase().as_str());
        match Format::parse(&text) {
            Ok(format) => {
                prop_assert!(named, "took {text:?}");
                prop_assert!(format.name().eq_ignore_ascii_case(&text));
            }
            Err(reason) => {
                prop_assert!(!named, "refused {text:?}");
                prop_assert!(reason.contains("rfc3339"), "{reason}");
            }
        }
    }

    #[test]
    fn any_zone_text_is_taken_with_the_offset_it_says_or_refused_with_the_forms(
        text in prop_oneof![
            "[+-][0-9]{2}:[0-9]{2}",
            "(Europe|America|Asia)/[A-Z][a-z]{2,10}",
            ".{0,20}",
        ],
    ) {
        match Zone::parse(&text) {
            // Whatever was taken answers a real line for any time, and a fixed offset is
            // the one written.
            Ok(zone) => {
                let mut out = Vec::new();
                daytime_reply(time(1_795_554_893), Format::Rfc3339, zone, &mut out);
                let line = String::from_utf8(out).unwrap();
                prop_assert!(line.ends_with("\r\n") && line.is_ascii(), "{line:?}");
                if text.starts_with(['+', '-']) {
                    prop_assert!(line.trim_end().ends_with(&text), "{text}: {line:?}");
                }
            }
            Err(reason) => {
                prop_assert!(
                    reason.contains("+HH:MM") || reason.contains("IANA"),
                    "{text:?}: {reason}"
                );
            }
        }
    }
}
