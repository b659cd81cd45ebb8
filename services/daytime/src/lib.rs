//! DAYTIME (RFC 867), port 13: the current date and time as one ASCII line.
//!
//! The RFC fixes no syntax. The default is the BSD inetd form, ctime with CRLF
//! (`Tue Nov 24 21:14:53 2026\r\n`) in UTC; RFC 3339 and RFC 2822 and a time zone (IANA
//! name or fixed offset) are config choices.

use std::io::Write;
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
pub use inetsvc_proto::daytime::Format;
use inetsvc_proto::{daytime::LINE_END, time, Protocol};
use inetsvc_runtime::{
    ConfigError, Conn, ConnError, Key, Service, ServiceSpec, Settings, Shutdown,
};

/// The answer's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC, the default: a server's answer should not depend on where it runs.
    Utc,
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
    /// An IANA zone, with its daylight-saving rules built in (the `scratch` image has no
    /// zoneinfo files).
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses a `daytime_timezone` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(Zone::Utc);
        }
        if text.starts_with(['+', '-']) {
            return parse_offset(text)
                .map(Zone::Fixed)
                .ok_or_else(|| "an offset is +HH:MM or -HH:MM, at most 23:59".to_owned());
        }
        text.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            "expected UTC, an IANA zone name such as Europe/Berlin, or an offset such as +05:30"
                .to_owned()
        })
    }
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = text[1..].split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// RFC 867: the date and time at `now` as one line ending in CRLF, appended to `out`.
/// Writes straight into the buffer: no allocation per answer.
pub fn daytime_reply(now: SystemTime, format: Format, zone: Zone, out: &mut Vec<u8>) {
    let utc = to_utc(now);
    match zone {
        Zone::Utc => write_in(&utc, format, true, out),
        Zone::Fixed(offset) => write_in(&utc.with_timezone(&offset), format, false, out),
        Zone::Named(tz) => write_in(&utc.with_timezone(&tz), format, false, out),
    }
}

/// `now` as a calendar time, to the whole second (rounded down, also before 1970), clamped
/// to the calendar's range (about ±262,000 years) so that a wild clock cannot panic the
/// service.
fn to_utc(now: SystemTime) -> DateTime<Utc> {
    let seconds = time::unix_seconds(now);
    DateTime::from_timestamp(seconds, 0).unwrap_or(if seconds < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn write_in<Tz: TimeZone>(time: &DateTime<Tz>, format: Format, utc: bool, out: &mut Vec<u8>)
where
    Tz::Offset: std::fmt::Display,
{
    let pattern = format.pattern(utc);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}{LINE_END}", time.format(pattern));
}

/// The DAYTIME protocol with its configured format and zone.
#[derive(Debug, Clone, Copy)]
pub struct Daytime {
    /// Answer syntax.
    pub format: Format,
    /// Answer time zone.
    pub zone: Zone,
}

impl Daytime {
    fn answer(&self, now: SystemTime, out: &mut Vec<u8>) {
        daytime_reply(now, self.format, self.zone, out);
    }
}

impl Service for Daytime {
    const SPEC: ServiceSpec = ServiceSpec {
        name: "daytime",
        binary: "daytimed",
        about: "DAYTIME service (RFC 867) over TCP and UDP, with metrics, health and graceful drain",
        port: Protocol::Daytime.port(),
        admin_port: Protocol::Daytime.admin_port(),
        keys: &[
            Key::new("daytime_format", "ctime", "Answer format: `ctime` (Tue Nov 24 21:14:53 2026), `rfc3339` or `rfc2822`; always ends in CRLF"),
            Key::new("daytime_timezone", "UTC", "Time zone of the answer: `UTC`, an IANA name (Europe/Berlin) or an offset (+05:30)"),
        ],
        max_datagram: inetsvc_proto::MAX_DATAGRAM,
        clock_wrap_unix: Some(time::WRAP_UNIX),
        answers_on_connect: true,
    };

    fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Daytime {
            format: settings.parse("daytime_format", Format::parse)?,
            zone: settings.parse("daytime_timezone", Zone::parse)?,
        })
    }

    /// RFC 867: send the line and close, ignoring anything the client sends.
    async fn serve_tcp(&self, conn: Conn, _: Shutdown) -> Result<(), ConnError> {
        let mut answer = Vec::with_capacity(48);
        self.answer(conn.now(), &mut answer);
        conn.answer_and_close(&answer).await
    }

    /// RFC 867: any datagram gets one datagram with the line.
    fn answer_datagram(&self, _request: &[u8], now: SystemTime, reply: &mut Vec<u8>) {
        self.answer(now, reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-11-24T21:14:53Z, a Tuesday.
    fn example() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_554_893)
    }

    fn reply(now: SystemTime, format: Format, zone: &str) -> String {
        let mut out = Vec::new();
        daytime_reply(now, format, Zone::parse(zone).unwrap(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_is_ctime_with_crlf_in_utc() {
        assert_eq!(
            reply(example(), Format::Ctime, "UTC"),
            "Tue Nov 24 21:14:53 2026\r\n"
        );
    }

    #[test]
    fn ctime_pads_single_digit_days_with_a_space() {
        let fifth = example() - Duration::from_secs(19 * 86_400);
        assert_eq!(
            reply(fifth, Format::Ctime, "UTC"),
            "Thu Nov  5 21:14:53 2026\r\n"
        );
    }

    #[test]
    fn rfc3339_and_rfc2822_formats() {
        assert_eq!(
            reply(example(), Format::Rfc3339, "UTC"),
            "2026-11-24T21:14:53Z\r\n"
        );
        assert_eq!(
            reply(example(), Format::Rfc3339, "+05:30"),
            "2026-11-25T02:44:53+05:30\r\n"
        );
        assert_eq!(
            reply(example(), Format::Rfc2822, "UTC"),
            "Tue, 24 Nov 2026 21:14:53 +0000\r\n"
        );
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        assert_eq!(
            reply(example(), Format::Rfc3339, "Europe/Berlin"),
            "2026-11-24T22:14:53+01:00\r\n"
        );
        let july = example() - Duration::from_secs(140 * 86_400);
        assert_eq!(
            reply(july, Format::Rfc3339, "Europe/Berlin"),
            "2026-07-07T23:14:53+02:00\r\n"
        );
    }

    #[test]
    fn answers_are_ascii_lines() {
        for format in [Format::Ctime, Format::Rfc3339, Format::Rfc2822] {
            let text = reply(example(), format, "America/New_York");
            assert!(text.is_ascii() && text.ends_with("\r\n"));
            assert_eq!(text.matches('\n').count(), 1);
        }
    }

    #[test]
    fn bad_format_and_zone_are_explained() {
        assert!(Format::parse("iso").unwrap_err().contains("rfc3339"));
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("IANA"));
        assert!(Zone::parse("+25:00").unwrap_err().contains("+HH:MM"));
        assert!(Zone::parse("+5").is_err());
        assert_eq!(
            Zone::parse("-03:00").unwrap(),
            Zone::Fixed(FixedOffset::west_opt(3 * 3600).unwrap())
        );
    }

    #[test]
    fn every_datagram_gets_the_line() {
        let service = Daytime {
            format: Format::Ctime,
            zone: Zone::Utc,
        };
        let mut out = Vec::new();
        service.answer_datagram(b"", example(), &mut out);
        assert_eq!(out, b"Tue Nov 24 21:14:53 2026\r\n");
    }
}
