//! Naming a server: `HOST[:PORT]`, where PORT is a number or a service name from a
//! built-in table, so that the clients work without /etc/services (a `scratch` container
//! has none). The book's connectTCP/connectUDP take a host and a service the same way
//! (ch. 7).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use inetsvc_proto::Protocol;

/// The services this tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// RFC 862.
    Echo,
    /// RFC 867.
    Daytime,
    /// RFC 868.
    Time,
}

impl Service {
    /// Every service, in probe order.
    pub const ALL: [Service; 3] = [Service::Echo, Service::Daytime, Service::Time];

    /// The protocol's wire facts.
    pub fn protocol(self) -> Protocol {
        match self {
            Service::Echo => Protocol::Echo,
            Service::Daytime => Protocol::Daytime,
            Service::Time => Protocol::Time,
        }
    }

    /// The well-known port.
    pub fn port(self) -> u16 {
        self.protocol().port()
    }

    /// The service name, as in /etc/services.
    pub fn name(self) -> &'static str {
        self.protocol().name()
    }
}

/// A port number or a service name from the built-in table.
pub fn port_by_name(text: &str) -> Option<u16> {
    if let Ok(port) = text.parse::<u16>() {
        return (port != 0).then_some(port);
    }
    Protocol::from_name(text).map(Protocol::port)
}

/// A server to talk to: a host name or address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Target {
    /// Parses `HOST`, `HOST:PORT`, `HOST:SERVICE`, `[V6]:PORT` or a bare IPv6 address;
    /// without a port, `default_port`. The error is one line whatever `text` holds.
    pub fn parse(text: &str, default_port: u16) -> Result<Target, String> {
        Target::parse_text(text, default_port).map_err(|reason| reason.escape_default().to_string())
    }

    fn parse_text(text: &str, default_port: u16) -> Result<Target, String> {
        let bad_port =
            |p: &str| format!("`{p}` is not a port number or one of echo, daytime, time");
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => port_by_name(p).ok_or_else(|| bad_port(p))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{text}`: expected `:PORT` after `]`")),
            };
            return Ok(Target {
                host: host.to_owned(),
                port,
            });
        }
        match text.matches(':').count() {
            0 => Ok(Target {
                host: text.to_owned(),
                port: default_port,
            }),
            1 => {
                let (host, port) = text.split_once(':').unwrap_or((text, ""));
                Ok(Target {
                    host: host.to_owned(),
                    port: port_by_name(port).ok_or_else(|| bad_port(port))?,
                })
            }
            // A bare IPv6 address: no port can follow it without brackets.
            _ => Ok(Target {
                host: text.to_owned(),
                port: default_port,
            }),
        }
        .and_then(|t: Target| {
            if t.host.is_empty() {
                Err(format!("`{text}`: the host is missing"))
            } else {
                Ok(t)
            }
        })
    }

    /// Every address the host resolves to, in resolver order.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let addresses: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        if addresses.is_empty() {
            return Err(format!("{} has no addresses", self.host));
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn targets_take_hosts_ports_and_service_names() {
        assert_eq!(Target::parse("example", 7), Ok(t("example", 7)));
        assert_eq!(Target::parse("127.0.0.1:7007", 7), Ok(t("127.0.0.1", 7007)));
        assert_eq!(Target::parse("host:daytime", 7), Ok(t("host", 13)));
        assert_eq!(Target::parse("host:TIME", 7), Ok(t("host", 37)));
        assert_eq!(Target::parse("[::1]:7007", 7), Ok(t("::1", 7007)));
        assert_eq!(Target::parse("[::1]", 37), Ok(t("::1", 37)));
        assert_eq!(Target::parse("::1", 13), Ok(t("::1", 13)));
    }

    #[test]
    fn bad_targets_say_why() {
        assert!(Target::parse("host:chargen", 7)
            .unwrap_err()
            .contains("chargen"));
        assert!(Target::parse("host:0", 7).is_err());
        assert!(Target::parse("[::1", 7).unwrap_err().contains("]"));
        assert!(Target::parse(":7", 7).unwrap_err().contains("host"));
        // Found by the cargo-fuzz target cli_target: a newline in the text was quoted as
        // it came, so the error spread over two lines.
        let quoted = Target::parse("[`\n", 7).unwrap_err();
        assert!(!quoted.contains('\n') && quoted.contains("\\n"), "{quoted}");
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(t("::1", 7).to_string(), "[::1]:7");
        assert_eq!(t("localhost", 7).to_string(), "localhost:7");
    }

    #[test]
    fn resolve_works_without_etc_services() {
        let addresses = Target::parse("127.0.0.1:echo", 7)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(addresses, vec!["127.0.0.1:7".parse().unwrap()]);
    }
}
