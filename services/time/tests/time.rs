//! `timed` end to end: Debian's `rdate` as the real peer over TCP and UDP, IPv4 and IPv6,
//! and the raw four bytes checked against the system clock.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inetsvc_testkit::{promtool_check_metrics, read_to_close, run_tool, udp_ask, Server};

const TIMED: &str = env!("CARGO_BIN_EXE_timed");

/// The current RFC 868 value from the system clock, computed here from the RFC's own
/// figure (2,208,988,800 s from 1900 to 1970) as an oracle independent of the wire crate.
fn now_rfc868() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ((unix + 2_208_988_800) % (1 << 32)) as u32
}

fn assert_close(answer: u32, what: &str) {
    let skew = i64::from(answer.wrapping_sub(now_rfc868()) as i32);
    assert!(skew.abs() <= 2, "{what}: {skew} s from the system clock");
}

/// Runs `rdate -p` (print only, never set the clock) and returns its skew in seconds.
fn rdate(args: &[&str]) -> i64 {
    let mut full = vec!["TZ=UTC", "rdate", "-p"];
    full.extend_from_slice(args);
    let output = run_tool("env", &full, b"", Duration::from_secs(20));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "rdate {args:?}: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // rdate prints ctime-like text in the given zone: `Wed Nov 25 12:07:40 UTC 2026`.
    let parsed = chrono::NaiveDateTime::parse_from_str(text.trim(), "%a %b %e %H:%M:%S UTC %Y")
        .unwrap_or_else(|e| panic!("rdate printed {text:?}: {e}"));
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    parsed.and_utc().timestamp() - unix
}

#[test]
fn rdate_reads_the_time_over_tcp_and_udp_within_2_seconds() {
    let server = Server::start(TIMED, &[]);
    let port = server.tcp().port().to_string();
    let skew = rdate(&["-4", "-o", &port, "127.0.0.1"]);
    assert!(skew.abs() <= 2, "TCP skew {skew} s");
    let port = server.udp().port().to_string();
    let skew = rdate(&["-4", "-u", "-o", &port, "127.0.0.1"]);
    assert!(skew.abs() <= 2, "UDP skew {skew} s");
    assert_eq!(
        server.metric("inetsvc_requests_total{service=\"time\",transport=\"udp\"}"),
        1.0
    );
}

#[test]
fn rdate_reads_the_time_over_ipv6() {
    let server = Server::start(
        TIMED,
        &["--tcp-listen", "[::1]:0", "--udp-listen", "[::1]:0"],
    );
    let port = server.tcp().port().to_string();
    assert!(rdate(&["-6", "-o", &port, "::1"]).abs() <= 2);
    let port = server.udp().port().to_string();
    assert!(rdate(&["-6", "-u", "-o", &port, "::1"]).abs() <= 2);
}

fn read_answer(stream: TcpStream) -> Vec<u8> {
    read_to_close(stream).expect("answer and a clean close, not a reset")
}

#[test]
fn tcp_answer_is_exactly_four_bytes_then_close() {
    let server = Server::start(TIMED, &[]);
    let answer = read_answer(TcpStream::connect(server.tcp()).unwrap());
    assert_eq!(answer.len(), 4, "never sizeof(long) bytes");
    assert_close(u32::from_be_bytes(answer.try_into().unwrap()), "TCP");
}

#[test]
fn a_client_that_sends_first_still_gets_the_answer_not_a_reset() {
    let server = Server::start(TIMED, &[]);
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.tcp()).unwrap();
        // Unread input at close would make the kernel send a reset; the runtime half-closes
        // and drains first.
        stream.write_all(&[b'x'; 100_000]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let answer = read_answer(stream);
        assert_eq!(answer.len(), 4);
    }
}

fn udp_answer(client: &UdpSocket, target: SocketAddr, request: &[u8]) -> Vec<u8> {
    udp_ask(client, target, request, Duration::from_secs(2)).expect("an answer")
}

#[test]
fn any_datagram_empty_included_gets_the_four_bytes() {
    let server = Server::start(TIMED, &[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for request in [&b""[..], b"\n", &[0u8; 1400]] {
        let answer = udp_answer(&client, server.udp(), request);
        assert_eq!(answer.len(), 4);
        assert_close(u32::from_be_bytes(answer.try_into().unwrap()), "UDP");
    }
}

#[test]
fn time_metrics_pass_promtool() {
    let server = Server::start(TIMED, &[]);
    read_answer(TcpStream::connect(server.tcp()).unwrap());
    let (_, body) = server.get("/metrics");
    promtool_check_metrics(&body).unwrap();
    assert!(body.contains("inetsvc_bytes_sent_total{service=\"time\",transport=\"tcp\"} 4"));
}

/// `close_linger` as the close it says: by default the connection lingers after the
/// answer (half-closed, reading what the client still sends) until the client closes; at
/// `0s` it closes at once, dropping only input already queued, so it is gone while the
/// client still holds its end. Either way the client reads the whole answer, then EOF.
#[test]
fn close_linger_zero_closes_at_once_and_the_default_waits_for_the_client() {
    const ACTIVE: &str = "inetsvc_connections_active{service=\"time\",transport=\"tcp\"}";
    for (linger, held_open) in [("2s", true), ("0s", false)] {
        let server = Server::start(TIMED, &["--close-linger", linger]);
        let mut client = TcpStream::connect(server.tcp()).unwrap();
        client.write_all(b"hello\r\n").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut answer).unwrap();
        assert_eq!(answer.len(), 4, "linger {linger}: the answer, then EOF");
        // The client still holds its end open.
        std::thread::sleep(Duration::from_millis(300));
        let active = server.metric(ACTIVE);
        assert_eq!(active, f64::from(u8::from(held_open)), "linger {linger}");
        drop(client);
        server.wait_metric(ACTIVE, 0.0, Duration::from_secs(5));
    }
}
