//! The wire facts of the inetsvc service set, in one place: each protocol's port, what a
//! request and an answer are, TIME's encoding and its era-aware decoding across the 2036
//! wrap, DAYTIME's formats, and the largest datagram.
//!
//! The servers (through their service crates) and the clients of the `inetsvc` command both
//! depend on this crate, and nothing else defines these facts (docs/architecture.md,
//! "Rules"). It has no dependencies and does no I/O: every function is pure.

pub mod daytime;
pub mod echo;
pub mod time;

/// Largest UDP payload: 65,535 minus the 8-byte UDP header (IPv6 without jumbograms); the
/// IPv4 maximum, 65,507, fits too. Servers never truncate below it, as OpenBSD inetd
/// (4,096) and xinetd (2,048) do; clients accept answers up to it.
pub const MAX_DATAGRAM: usize = 65_535 - 8;

/// The protocols of the service set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// ECHO, RFC 862.
    Echo,
    /// DAYTIME, RFC 867.
    Daytime,
    /// TIME, RFC 868.
    Time,
}

impl Protocol {
    /// Every protocol, in the order the set lists them.
    pub const ALL: [Protocol; 3] = [Protocol::Echo, Protocol::Daytime, Protocol::Time];

    /// The name in /etc/services, metric labels and logs (`echo`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Echo => "echo",
            Protocol::Daytime => "daytime",
            Protocol::Time => "time",
        }
    }

    /// The IANA well-known port, for TCP and UDP alike.
    pub const fn port(self) -> u16 {
        match self {
            Protocol::Echo => echo::PORT,
            Protocol::Daytime => daytime::PORT,
            Protocol::Time => time::PORT,
        }
    }

    /// The default admin HTTP port of this protocol's server: not a fact of the RFCs but
    /// of the service set (9000 + the well-known port, so that all three share a host),
    /// which the servers' defaults and the CLI's `fault echo` shortcut both use.
    pub const fn admin_port(self) -> u16 {
        9000 + self.port()
    }

    /// The protocol called `name` (case-insensitive), as in `HOST:echo`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_the_iana_ports_and_the_set_admin_ports() {
        let table: Vec<(&str, u16, u16)> = Protocol::ALL
            .iter()
            .map(|p| (p.name(), p.port(), p.admin_port()))
            .collect();
        assert_eq!(
            table,
            [("echo", 7, 9007), ("daytime", 13, 9013), ("time", 37, 9037)]
        );
        assert_eq!(Protocol::from_name("TIME"), Some(Protocol::Time));
        assert_eq!(Protocol::from_name("chargen"), None);
    }

    #[test]
    fn the_largest_datagram_is_the_ipv6_udp_payload_limit() {
        assert_eq!(MAX_DATAGRAM, 65_527);
        const { assert!(MAX_DATAGRAM >= 65_507, "the IPv4 maximum fits") };
    }
}
