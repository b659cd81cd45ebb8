//! `daytimed` end to end: `socat` reads the line over TCP and UDP, IPv4 and IPv6; formats
//! and time zones through the real binary.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use inetsvc_testkit::{promtool_check_metrics, run_tool, Server};

const DAYTIMED: &str = env!("CARGO_BIN_EXE_daytimed");

fn socat(args: &[&str], input: &[u8]) -> String {
    let output = run_tool("socat", args, input, Duration::from_secs(20));
    assert!(
        output.status.success(),
        "socat {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("ASCII answer")
}

/// Checks a default-format answer: one ctime line with CRLF, within 2 s of the clock.
fn assert_ctime_now(answer: &str) {
    assert!(answer.ends_with("\r\n"), "{answer:?}");
    assert_eq!(answer.matches('\n').count(), 1, "{answer:?}");
    let parsed = NaiveDateTime::parse_from_str(answer.trim_end(), "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("{answer:?}: {e}"));
    let skew = (parsed.and_utc() - Utc::now()).num_seconds();
    assert!(skew.abs() <= 2, "{skew} s from the clock");
}

#[test]
fn socat_reads_the_line_over_tcp_and_udp() {
    let server = Server::start(DAYTIMED, &[]);
    assert_ctime_now(&socat(
        &["-t", "5", "-", &format!("TCP:{}", server.tcp())],
        b"",
    ));
    assert_ctime_now(&socat(
        &["-t", "2", "-", &format!("UDP:{}", server.udp())],
        b"\n",
    ));
}

#[test]
fn socat_reads_the_line_over_ipv6() {
    let server = Server::start(
        DAYTIMED,
        &["--tcp-listen", "[::1]:0", "--udp-listen", "[::1]:0"],
    );
    let tcp = format!("TCP6:[::1]:{}", server.tcp().port());
    assert_ctime_now(&socat(&["-t", "5", "-", &tcp], b""));
    let udp = format!("UDP6:[::1]:{}", server.udp().port());
    assert_ctime_now(&socat(&["-t", "2", "-", &udp], b"\n"));
}

#[test]
fn an_empty_datagram_gets_the_line() {
    let server = Server::start(DAYTIMED, &[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.send_to(b"", server.udp()).unwrap();
    let mut buf = [0u8; 128];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_ctime_now(std::str::from_utf8(&buf[..n]).unwrap());
}

#[test]
fn input_is_ignored_and_the_answer_survives_it() {
    let server = Server::start(DAYTIMED, &[]);
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.tcp()).unwrap();
        stream.write_all(&[b'?'; 100_000]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("the answer and a clean close, not a reset");
        assert_ctime_now(&answer);
    }
}

#[test]
fn rfc3339_in_a_fixed_offset_is_a_config_choice() {
    let server = Server::start(
        DAYTIMED,
        &[
            "--daytime-format",
            "rfc3339",
            "--daytime-timezone",
            "-03:00",
        ],
    );
    let answer = socat(&["-t", "5", "-", &format!("TCP:{}", server.tcp())], b"");
    assert!(answer.ends_with("-03:00\r\n"), "{answer:?}");
    let parsed = DateTime::parse_from_rfc3339(answer.trim_end()).unwrap();
    assert!(
        (parsed.with_timezone(&Utc) - Utc::now())
            .num_seconds()
            .abs()
            <= 2
    );
}

#[test]
fn rfc2822_in_a_named_zone_is_a_config_choice() {
    let server = Server::start(
        DAYTIMED,
        &[
            "--daytime-format",
            "rfc2822",
            "--daytime-timezone",
            "Asia/Kolkata",
        ],
    );
    let answer = socat(&["-t", "2", "-", &format!("UDP:{}", server.udp())], b"\n");
    assert!(answer.ends_with("+0530\r\n"), "{answer:?}");
    let parsed = DateTime::parse_from_rfc2822(answer.trim_end()).unwrap();
    assert!(
        (parsed.with_timezone(&Utc) - Utc::now())
            .num_seconds()
            .abs()
            <= 2
    );
}

#[test]
fn daytime_metrics_pass_promtool() {
    let server = Server::start(DAYTIMED, &[]);
    socat(&["-t", "5", "-", &format!("TCP:{}", server.tcp())], b"");
    let (_, body) = server.get("/metrics");
    promtool_check_metrics(&body).unwrap();
    assert!(body.contains("inetsvc_bytes_sent_total{service=\"daytime\",transport=\"tcp\"} 26"));
}
