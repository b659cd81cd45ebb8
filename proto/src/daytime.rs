//! DAYTIME, RFC 867, port 13.
//!
//! Request: over TCP, the connection itself (anything the client sends is ignored); over
//! UDP, any datagram. Answer: the date and time as one ASCII line. The RFC fixes no
//! syntax ("there is no specific syntax for the daytime"): the set's servers send one of
//! the [`Format`]s ending in [`LINE_END`], and readers accept any one ASCII line
//! ([`answer_line`]), parsing it with the patterns below where they can.

/// RFC 867: "Daytime Service … on TCP port 13", and the same for UDP.
pub const PORT: u16 = 13;

/// Every answer of the set's servers ends in CRLF, as BSD inetd's does.
pub const LINE_END: &str = "\r\n";

/// The syntax of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ctime(3) as BSD inetd sends it: `Tue Nov 24 21:14:53 2026`.
    Ctime,
    /// RFC 3339: `2026-11-24T21:14:53Z`.
    Rfc3339,
    /// RFC 2822: `Tue, 24 Nov 2026 21:14:53 +0000`.
    Rfc2822,
}

/// xinetd's internal DAYTIME server's form, `24 NOV 2026 21:14:53 UTC` (strftime
/// pattern): not one the set's servers send, but one a reader meets.
pub const XINETD_PATTERN: &str = "%d %b %Y %H:%M:%S UTC";

impl Format {
    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 3] = [Format::Ctime, Format::Rfc3339, Format::Rfc2822];

    /// The name a `daytime_format` setting uses.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Ctime => "ctime",
            Format::Rfc3339 => "rfc3339",
            Format::Rfc2822 => "rfc2822",
        }
    }

    /// Parses a format's name (case-insensitive).
    pub fn parse(text: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| "expected `ctime`, `rfc3339` or `rfc2822`".to_owned())
    }

    /// The strftime pattern of this format; `utc` writes RFC 3339's offset as `Z`.
    pub const fn pattern(self, utc: bool) -> &'static str {
        match self {
            Format::Ctime => "%a %b %e %H:%M:%S %Y",
            Format::Rfc3339 if utc => "%Y-%m-%dT%H:%M:%SZ",
            Format::Rfc3339 => "%Y-%m-%dT%H:%M:%S%:z",
            Format::Rfc2822 => "%a, %d %b %Y %H:%M:%S %z",
        }
    }
}

/// An answer as a reader takes it: ASCII, not empty, at most one line, ending in LF, CRLF
/// or nothing (which the RFC allows); the line without its ending, or `None`.
pub fn answer_line(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok().filter(|t| t.is_ascii())?;
    let line = text.trim_end_matches(['\r', '\n']);
    (!line.contains('\n') && !line.trim().is_empty()).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_say_what_is_accepted() {
        for format in Format::ALL {
            assert_eq!(Format::parse(format.name()), Ok(format));
        }
        assert_eq!(Format::parse("RFC3339"), Ok(Format::Rfc3339));
        assert!(Format::parse("iso").unwrap_err().contains("rfc3339"));
    }

    #[test]
    fn a_reader_takes_one_ascii_line() {
        assert_eq!(
            answer_line(b"Tue Nov 24 21:14:53 2026\r\n"),
            Some("Tue Nov 24 21:14:53 2026")
        );
        assert_eq!(answer_line(b"no newline"), Some("no newline"));
        assert_eq!(answer_line(b"lf only\n"), Some("lf only"));
        for bad in [
            &b""[..],
            b"\r\n",
            b"  \r\n",
            b"two\nlines\n",
            "caf\u{e9}\n".as_bytes(),
            b"\xff\n",
        ] {
            assert_eq!(answer_line(bad), None, "{bad:?}");
        }
    }
}
