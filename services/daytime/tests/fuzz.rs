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
    fn any_zone_or_format_text_parses_or_says_why(text in ".{0,40}") {
        if let Err(reason) = Zone::parse(&text) {
            prop_assert!(!reason.is_empty());
        }
        if let Err(reason) = Format::parse(&text) {
            prop_assert!(!reason.is_empty());
        }
    }
}
