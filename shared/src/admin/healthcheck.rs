//! The `healthcheck` subcommand: a tiny HTTP/1.0 client for the service's own `/readyz`,
//! so that container health checks need no shell and no curl in a `scratch` image.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The address to probe for an admin listener on `listen`: an unspecified address is
/// reached over the loopback of the same family.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Ok when `GET /readyz` on `admin` answers 200; otherwise a one-line reason.
pub fn check(admin: Option<SocketAddr>) -> Result<(), String> {
    let listen = admin.ok_or("admin_listen is off: there is no /readyz to check")?;
    let mut target = probe_address(listen);
    let mut stream = match TcpStream::connect_timeout(&target, TIMEOUT) {
        Ok(stream) => stream,
        // `[::]` falls back to IPv4 on hosts without IPv6 (see net/bind.rs): so does the probe.
        Err(_) if listen.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port());
            TcpStream::connect_timeout(&target, TIMEOUT)
                .map_err(|e| format!("cannot connect to {target}: {e}"))?
        }
        Err(e) => return Err(format!("cannot connect to {target}: {e}")),
    };
    let io = |e: std::io::Error| format!("{target}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(io)?;
    let mut response = Vec::new();
    stream.take(4096).read_to_end(&mut response).map_err(io)?;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("{target}/readyz: {status} {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        assert_eq!(
            probe_address("0.0.0.0:9007".parse().unwrap()),
            "127.0.0.1:9007".parse().unwrap()
        );
        assert_eq!(
            probe_address("[::]:9007".parse().unwrap()),
            "[::1]:9007".parse().unwrap()
        );
        assert_eq!(
            probe_address("10.1.2.3:9007".parse().unwrap()),
            "10.1.2.3:9007".parse().unwrap()
        );
    }

    #[test]
    fn nothing_listening_is_a_reason_not_a_panic() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = free.local_addr().unwrap();
        drop(free);
        let reason = check(Some(address)).unwrap_err();
        assert!(reason.contains("cannot connect"), "{reason}");
        assert!(check(None).unwrap_err().contains("admin_listen is off"));
    }
}
