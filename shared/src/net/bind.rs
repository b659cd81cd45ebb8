//! Binding listeners: every address a service serves is bound before anything is served,
//! and a failure is a one-line configuration error naming the key and the fix.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::ConfigError;

/// TCP accept queue length.
const BACKLOG: i32 = 1024;

/// Which socket type a bind is for, for messages.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Udp,
}

/// Binds a TCP listener on `address`; errors name `key` and say how to fix them.
pub fn bind_tcp(key: &str, address: SocketAddr) -> Result<TcpListener, ConfigError> {
    let socket = bind_with_fallback(key, address, Kind::Tcp)?;
    socket
        .listen(BACKLOG)
        .map_err(|e| bind_error(key, address, &e))?;
    TcpListener::from_std(socket.into()).map_err(|e| bind_error(key, address, &e))
}

/// Binds a UDP socket on `address`; errors name `key` and say how to fix them.
pub fn bind_udp(key: &str, address: SocketAddr) -> Result<UdpSocket, ConfigError> {
    let socket = bind_with_fallback(key, address, Kind::Udp)?;
    UdpSocket::from_std(socket.into()).map_err(|e| bind_error(key, address, &e))
}

/// Binds `address`. `[::]` is made dual-stack explicitly (whatever the host's
/// `bindv6only`), and on a host or container without IPv6 it falls back to `0.0.0.0` with a
/// warning, so that the defaults work everywhere.
fn bind_with_fallback(key: &str, address: SocketAddr, kind: Kind) -> Result<Socket, ConfigError> {
    match bind_socket(address, kind) {
        Ok(socket) => Ok(socket),
        Err(e)
            if address.ip() == IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
                && matches!(e.raw_os_error(), Some(97) | Some(99)) =>
        {
            let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port());
            tracing::warn!(%key, %address, fallback = %v4, error = %e, "no IPv6 here; serving IPv4 only");
            bind_socket(v4, kind).map_err(|e| bind_error(key, v4, &e))
        }
        Err(e) => Err(bind_error(key, address, &e)),
    }
}

fn bind_socket(address: SocketAddr, kind: Kind) -> io::Result<Socket> {
    let (ty, protocol) = match kind {
        Kind::Tcp => (Type::STREAM, Protocol::TCP),
        Kind::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(address), ty, Some(protocol))?;
    if address.is_ipv6() {
        socket.set_only_v6(!address.ip().is_unspecified())?;
    }
    if matches!(kind, Kind::Tcp) {
        // Restart at once even while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        // Every reply is written whole: Nagle would only hold an ECHO answer back for the
        // client's delayed ACK. Accepted sockets inherit this from the listener (Linux),
        // which saves a setsockopt per connection.
        socket.set_tcp_nodelay(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// A bind failure as a one-line configuration error with the fix.
fn bind_error(key: &str, address: SocketAddr, error: &io::Error) -> ConfigError {
    let flag = key.replace('_', "-");
    let reason = match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "cannot bind {address}: address already in use; stop the other server or choose another port with --{flag}"
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot bind {address}: permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, so choose a port from 1024 up, e.g. --{flag} [::]:{}",
            address.port().max(1024) + 7000
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "cannot bind {address}: no such local address on this host; use one of its addresses, [::] or 0.0.0.0"
        ),
        _ => format!("cannot bind {address}: {error}"),
    };
    ConfigError::invalid(key, reason)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = super::bind_tcp("tcp_listen", "127.0.0.1:0".parse().unwrap()).unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, _) = tokio::join!(listener.accept(), client);
        assert!(accepted.unwrap().0.nodelay().unwrap());
    }

    use super::*;
    use tokio::net::TcpStream;

    #[tokio::test]
    async fn bind_errors_name_the_key_and_the_fix() {
        let taken = bind_tcp("tcp_listen", "127.0.0.1:0".parse().unwrap()).unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind_tcp("tcp_listen", address).unwrap_err().to_string();
        assert!(
            error.starts_with("tcp_listen: cannot bind 127.0.0.1:"),
            "{error}"
        );
        assert!(
            error.contains("already in use") && error.contains("--tcp-listen"),
            "{error}"
        );
        let error = bind_udp("udp_listen", "192.0.2.1:7007".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("no such local address"), "{error}");
    }

    /// `[::]` serves IPv4 and IPv6 clients alike; on a host without IPv6 it falls back to
    /// `0.0.0.0`, which this test then proves instead.
    #[tokio::test]
    async fn unspecified_ipv6_is_dual_stack_or_falls_back_to_ipv4() {
        let listener = bind_tcp("tcp_listen", "[::]:0".parse().unwrap()).unwrap();
        let local = listener.local_addr().unwrap();
        let port = local.port();
        let v4 = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await;
        assert!(v4.is_ok(), "an IPv4 client reaches the [::] listener");
        let (_, seen) = listener.accept().await.unwrap();
        assert!(
            seen.ip().to_canonical().is_loopback() && seen.ip().to_canonical().is_ipv4(),
            "{seen}"
        );
        if local.is_ipv6() {
            // Bound on IPv6: the same socket must take an IPv6 client too.
            let v6 = TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).await;
            assert!(
                v6.is_ok(),
                "an IPv6 client reaches the [::] listener: {v6:?}"
            );
            let (_, seen) = listener.accept().await.unwrap();
            assert!(
                seen.is_ipv6() && seen.ip().to_canonical().is_ipv6(),
                "{seen}"
            );
        } else {
            assert_eq!(
                local.ip(),
                IpAddr::from(Ipv4Addr::UNSPECIFIED),
                "fallback to 0.0.0.0"
            );
        }
    }
}
