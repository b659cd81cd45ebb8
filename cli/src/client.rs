//! The client library of the book's chapter 7 — connectTCP, connectUDP and one exchange
//! per service — with what an operator needs on top: timeouts, UDP retries, and a
//! one-line reason for every failure.
//!
//! Blocking sockets on purpose: one exchange needs no runtime, and the code reads like
//! the book's clients. The load generator ([`crate::bench`]) is the asynchronous one.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inetsvc_proto::{daytime as daytime_wire, time as time_wire, MAX_DATAGRAM};

use crate::target::Target;

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A connection per exchange.
    Tcp,
    /// A datagram per exchange.
    Udp,
}

impl Transport {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// How patient a client is.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bound on connecting, and on each wait for an answer.
    pub timeout: Duration,
    /// UDP only: how many times to send again after a timeout.
    pub retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(2),
            retries: 2,
        }
    }
}

/// Why an exchange failed. Each message is one line that says what happened.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The name did not resolve.
    #[error("{0}")]
    Resolve(String),
    /// Nothing listens there (TCP RST, or ICMP port unreachable for UDP).
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    /// No answer in time.
    #[error("no answer from {peer} within {timeout:?} ({tries} tries)")]
    Timeout {
        /// Who did not answer.
        peer: String,
        /// The wait per try.
        timeout: Duration,
        /// How many tries were made.
        tries: u32,
    },
    /// Any other socket error.
    #[error("{peer}: {error}")]
    Io {
        /// Who we were talking to.
        peer: String,
        /// What the socket said.
        error: io::Error,
    },
    /// A reply whose length the protocol forbids (e.g. TIME is exactly 4 bytes).
    #[error("wrong answer length from {peer}: expected {expected}, got {got} bytes")]
    WrongLength {
        /// Who answered.
        peer: SocketAddr,
        /// What the protocol requires.
        expected: &'static str,
        /// What came.
        got: usize,
    },
    /// The echo is not what was sent.
    #[error("the echo from {peer} differs: sent {sent} bytes, got {received} back, first difference at byte {at}")]
    EchoMismatch {
        /// Who answered.
        peer: SocketAddr,
        /// Bytes sent.
        sent: usize,
        /// Bytes received.
        received: usize,
        /// Index of the first differing byte.
        at: usize,
    },
    /// A DAYTIME answer that is not one ASCII line.
    #[error("the DAYTIME answer from {peer} is not one ASCII line: {text:?}")]
    NotALine {
        /// Who answered.
        peer: SocketAddr,
        /// What came, lossily decoded.
        text: String,
    },
}

/// An answer and how long it took.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The address that answered.
    pub peer: SocketAddr,
    /// The answer's bytes.
    pub bytes: Vec<u8>,
    /// From sending (or connecting) to the whole answer.
    pub rtt: Duration,
    /// Local clock when the exchange started; with `rtt`, it brackets the server's clock.
    pub sent_at: SystemTime,
}

fn io_error(peer: impl ToString, error: io::Error) -> ClientError {
    ClientError::Io {
        peer: peer.to_string(),
        error,
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// connectTCP (book §7.5): the first address of `target` that accepts within the timeout.
pub fn connect_tcp(target: &Target, options: &Options) -> Result<TcpStream, ClientError> {
    let mut last = None;
    for address in target.resolve().map_err(ClientError::Resolve)? {
        match TcpStream::connect_timeout(&address, options.timeout) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(options.timeout))
                    .and_then(|_| stream.set_write_timeout(Some(options.timeout)))
                    .map_err(|e| io_error(address, e))?;
                return Ok(stream);
            }
            Err(error) => last = Some((address, error)),
        }
    }
    Err(match last {
        Some((address, error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
            ClientError::Refused(address)
        }
        Some((address, error)) if is_timeout(&error) => ClientError::Timeout {
            peer: address.to_string(),
            timeout: options.timeout,
            tries: 1,
        },
        Some((address, error)) => io_error(address, error),
        None => ClientError::Resolve(format!("{} has no addresses", target.host)),
    })
}

/// connectUDP (book §7.6): a socket connected to the first address of `target`, so that
/// only its answers are received and an ICMP port-unreachable reads as "refused".
pub fn connect_udp(target: &Target) -> Result<UdpSocket, ClientError> {
    let address = target.resolve().map_err(ClientError::Resolve)?[0];
    let local: IpAddr = match address {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).map_err(|e| io_error(address, e))?;
    socket.connect(address).map_err(|e| io_error(address, e))?;
    Ok(socket)
}

/// One TCP exchange: send `request`, half-close, read until the server closes.
///
/// The request is written from a second thread so that a large ECHO payload cannot
/// deadlock against the server's answer (book §8.29).
pub fn tcp_exchange(
    target: &Target,
    request: &[u8],
    options: &Options,
) -> Result<Reply, ClientError> {
    let sent_at = SystemTime::now();
    let started = Instant::now();
    let mut stream = connect_tcp(target, options)?;
    let peer = stream.peer_addr().map_err(|e| io_error(target, e))?;
    let writer = if request.is_empty() {
        None
    } else {
        let mut half = stream.try_clone().map_err(|e| io_error(peer, e))?;
        let request = request.to_vec();
        Some(std::thread::spawn(move || {
            half.write_all(&request)?;
            half.shutdown(Shutdown::Write)
        }))
    };
    let mut bytes = Vec::new();
    let read = stream.read_to_end(&mut bytes);
    if let Some(writer) = writer {
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) if read.is_err() => return Err(io_error(peer, error)),
            // The server may close after answering without reading (DAYTIME, TIME).
            _ => {}
        }
    }
    match read {
        Ok(_) => Ok(Reply {
            peer,
            bytes,
            rtt: started.elapsed(),
            sent_at,
        }),
        Err(error) if is_timeout(&error) => Err(ClientError::Timeout {
            peer: peer.to_string(),
            timeout: options.timeout,
            tries: 1,
        }),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ClientError::Refused(peer))
        }
        Err(error) => Err(io_error(peer, error)),
    }
}

/// One UDP exchange: send `request` and wait for one datagram, sending again after each
/// timeout up to `retries` times.
pub fn udp_exchange(
    target: &Target,
    request: &[u8],
    options: &Options,
) -> Result<Reply, ClientError> {
    let socket = connect_udp(target)?;
    let peer = socket.peer_addr().map_err(|e| io_error(target, e))?;
    socket
        .set_read_timeout(Some(options.timeout))
        .map_err(|e| io_error(peer, e))?;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    for _ in 0..=options.retries {
        let sent_at = SystemTime::now();
        let started = Instant::now();
        socket.send(request).map_err(|e| io_error(peer, e))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                return Ok(Reply {
                    peer,
                    bytes: buf[..n].to_vec(),
                    rtt: started.elapsed(),
                    sent_at,
                })
            }
            Err(error) if is_timeout(&error) => continue,
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ClientError::Refused(peer))
            }
            Err(error) => return Err(io_error(peer, error)),
        }
    }
    Err(ClientError::Timeout {
        peer: peer.to_string(),
        timeout: options.timeout,
        tries: options.retries + 1,
    })
}

/// One exchange over `transport`.
pub fn exchange(
    target: &Target,
    transport: Transport,
    request: &[u8],
    options: &Options,
) -> Result<Reply, ClientError> {
    match transport {
        Transport::Tcp => tcp_exchange(target, request, options),
        Transport::Udp => udp_exchange(target, request, options),
    }
}

/// ECHO (RFC 862): sends `payload` and checks that exactly it comes back.
pub fn echo(
    target: &Target,
    transport: Transport,
    payload: &[u8],
    options: &Options,
) -> Result<Reply, ClientError> {
    let reply = exchange(target, transport, payload, options)?;
    check_echo(payload, &reply)?;
    Ok(reply)
}

/// Whether `reply` is the echo of `sent`.
pub fn check_echo(sent: &[u8], reply: &Reply) -> Result<(), ClientError> {
    if reply.bytes == sent {
        return Ok(());
    }
    let at = sent
        .iter()
        .zip(&reply.bytes)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(reply.bytes.len()));
    Err(ClientError::EchoMismatch {
        peer: reply.peer,
        sent: sent.len(),
        received: reply.bytes.len(),
        at,
    })
}

/// What to send to ask DAYTIME or TIME: nothing over TCP; over UDP, where any datagram is
/// a request, one newline rather than an empty datagram, which the RFCs allow but some
/// relays (Docker's userland proxy among them) silently drop.
fn question(transport: Transport) -> &'static [u8] {
    match transport {
        Transport::Tcp => b"",
        Transport::Udp => b"\n",
    }
}

/// DAYTIME (RFC 867): the answer line, without its line ending.
pub fn daytime(
    target: &Target,
    transport: Transport,
    options: &Options,
) -> Result<(String, Reply), ClientError> {
    let reply = exchange(target, transport, question(transport), options)?;
    let line = daytime_line(&reply)?;
    Ok((line, reply))
}

/// The DAYTIME answer as text: one ASCII line (the wire crate says what a line is).
pub fn daytime_line(reply: &Reply) -> Result<String, ClientError> {
    match daytime_wire::answer_line(&reply.bytes) {
        Some(line) => Ok(line.to_owned()),
        None => Err(ClientError::NotALine {
            peer: reply.peer,
            text: String::from_utf8_lossy(&reply.bytes).into_owned(),
        }),
    }
}

/// TIME (RFC 868): the server's clock.
pub fn time(
    target: &Target,
    transport: Transport,
    options: &Options,
) -> Result<(SystemTime, Reply), ClientError> {
    let reply = exchange(target, transport, question(transport), options)?;
    let answer = time_wire::answer(&reply.bytes).ok_or(ClientError::WrongLength {
        peer: reply.peer,
        expected: "exactly 4",
        got: reply.bytes.len(),
    })?;
    Ok((time_wire::decode(answer, reply.sent_at), reply))
}

/// The server's clock minus ours, in seconds: the server's whole second is taken at its
/// middle (+0.5 s) and compared with the middle of the exchange, so the estimate is off by
/// at most half a second plus half the round trip.
pub fn clock_offset(server: SystemTime, reply: &Reply) -> f64 {
    let midpoint = reply.sent_at + reply.rtt / 2;
    let server = server
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        + 0.5;
    let local = midpoint
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    server - local
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn reply(bytes: &[u8]) -> Reply {
        Reply {
            peer: "127.0.0.1:7".parse().unwrap(),
            bytes: bytes.to_vec(),
            rtt: Duration::from_millis(2),
            sent_at: unix(1000),
        }
    }

    #[test]
    fn check_echo_finds_the_first_difference() {
        assert!(check_echo(b"abc", &reply(b"abc")).is_ok());
        let error = check_echo(b"abcd", &reply(b"abXd"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("first difference at byte 2"), "{error}");
        let error = check_echo(b"abcd", &reply(b"ab")).unwrap_err().to_string();
        assert!(error.contains("got 2 back"), "{error}");
    }

    #[test]
    fn daytime_line_accepts_one_ascii_line() {
        assert_eq!(
            daytime_line(&reply(b"Tue Nov 24 21:14:53 2026\r\n")).unwrap(),
            "Tue Nov 24 21:14:53 2026"
        );
        assert_eq!(daytime_line(&reply(b"no newline")).unwrap(), "no newline");
        for bad in [&b""[..], b"\r\n", b"two\nlines\n", "caf\u{e9}\n".as_bytes()] {
            assert!(daytime_line(&reply(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clock_offset_compares_middles() {
        // Sent at 1000.000, answered in 2 ms: midpoint 1000.001; server said 1000 (its
        // second's middle is 1000.5).
        let offset = clock_offset(unix(1000), &reply(b""));
        assert!((offset - 0.499).abs() < 1e-6, "{offset}");
    }
}
