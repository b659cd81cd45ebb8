//! The load a scenario needs, run by `inetsvc gameday traffic` (started by the runner, as
//! a process on this machine or in a container inside the stack, so that an offender has
//! an address of its own). Every kind stops at its deadline.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Source port of a chargen peer (RFC 864).
pub const CHARGEN_PORT: u16 = 19;

/// How long a connection attempt or an answer may take.
const PATIENCE: Duration = Duration::from_secs(1);

/// A TCP connection to `target`, from `source` if given.
fn connect(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&target.into(), PATIENCE)?;
    Ok(socket.into())
}

/// Customers: one TCP connection (answer read to the end) or one datagram every `every`.
pub fn clients(target: SocketAddr, every: Duration, udp: bool, until: Instant) {
    let socket = udp.then(|| {
        let any: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(any).expect("an ephemeral UDP port");
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        socket
    });
    let mut buffer = [0u8; 512];
    while Instant::now() < until {
        match &socket {
            Some(socket) => {
                let _ = socket.send_to(b"gameday customer\n", target);
                let _ = socket.recv_from(&mut buffer);
            }
            None => {
                if let Ok(mut stream) = connect(target, None) {
                    let _ = stream.set_read_timeout(Some(PATIENCE));
                    let _ = stream.read_to_end(&mut Vec::new());
                }
            }
        }
        std::thread::sleep(every);
    }
}

/// Whether a held connection is still open: a peek that finds neither data nor the end.
fn still_open(stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1];
    let open =
        matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    let _ = stream.set_nonblocking(false);
    open
}

/// An offender: keeps `count` idle connections to `target` open from `source`, opening a
/// new one for each that closes (an idle timeout, a reset at the cap), every half second.
pub fn hold(target: SocketAddr, count: usize, source: Option<IpAddr>, until: Instant) {
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    while Instant::now() < until {
        held.retain(still_open);
        while held.len() < count && Instant::now() < until {
            match connect(target, source) {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        // A connection the server reset right after accepting it shows as closed on the
        // next round, and is tried again: the refusals go on as long as the hold does.
    }
}

/// A chargen peer: datagrams from `source`:19 to `target` every `every`.
pub fn chargen(
    target: SocketAddr,
    every: Duration,
    source: IpAddr,
    until: Instant,
) -> std::io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(source, CHARGEN_PORT))?;
    while Instant::now() < until {
        let _ = socket.send_to(
            b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n",
            target,
        );
        std::thread::sleep(every);
    }
    Ok(())
}
