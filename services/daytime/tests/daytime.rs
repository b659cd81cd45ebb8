//! `daytimed` end to end: `socat` reads the line over TCP and UDP, IPv4 and IPv6; formats
//! and time zones through the real binary.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use inetsvc_testkit::{promtool_check_metrics, run_tool, Server};

const DAYTIMED: &str = env!("CARGO_BIN_EXE_daytimed");

/// When an answer was asked for: it must name a time within this window (a second of
/// slack on each side for whole-second answers). socat waits out its `-t` after a UDP
/// answer, so "now" after it returns is not the time of the answer.
struct Window(DateTime<Utc>, DateTime<Utc>);

impl Window {
    fn assert_contains(&self, answer: DateTime<Utc>) {
        let slack = chrono::Duration::seconds(1);
        assert!(
            answer >= self.0 - slack && answer <= self.1 + slack,
            "{answer} is outside {} .. {}",
            self.0,
            self.1
        );
    }
}

fn socat(args: &[&str], input: &[u8]) -> (String, Window) {
    let before = Utc::now();
    let output = run_tool("socat", args, input, Duration::from_secs(20));
    let window = Window(before, Utc::now());
    assert!(
        output.status.success(),
        "socat {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).expect("ASCII answer"),
        window,
    )
}

/// Checks a default-format answer: one ctime line with CRLF, naming a time in `window`.
fn assert_ctime_in((answer, window): (String, Window)) {
    assert!(answer.ends_with("\r\n"), "{answer:?}");
    assert_eq!(answer.matches('\n').count(), 1, "{answer:?}");
    let parsed = NaiveDateTime::parse_from_str(answer.trim_end(), "%a %b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("{answer:?}: {e}"));
    window.assert_contains(parsed.and_utc());
}

#[test]
fn socat_reads_the_line_over_tcp_and_udp() {
    let server = Server::start(DAYTIMED, &[]);
    assert_ctime_in(socat(
        &["-t", "5", "-", &format!("TCP:{}", server.tcp())],
        b"",
    ));
    assert_ctime_in(socat(
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
    assert_ctime_in(socat(&["-t", "5", "-", &tcp], b""));
    let udp = format!("UDP6:[::1]:{}", server.udp().port());
    assert_ctime_in(socat(&["-t", "2", "-", &udp], b"\n"));
}

#[test]
fn an_empty_datagram_gets_the_line() {
    let server = Server::start(DAYTIMED, &[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let before = Utc::now();
    client.send_to(b"", server.udp()).unwrap();
    let mut buf = [0u8; 128];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    let answer = String::from_utf8(buf[..n].to_vec()).unwrap();
    assert_ctime_in((answer, Window(before, Utc::now())));
}

#[test]
fn input_is_ignored_and_the_answer_survives_it() {
    let server = Server::start(DAYTIMED, &[]);
    for _ in 0..20 {
        let before = Utc::now();
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
        assert_ctime_in((answer, Window(before, Utc::now())));
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
    let (answer, window) = socat(&["-t", "5", "-", &format!("TCP:{}", server.tcp())], b"");
    assert!(answer.ends_with("-03:00\r\n"), "{answer:?}");
    let parsed = DateTime::parse_from_rfc3339(answer.trim_end()).unwrap();
    window.assert_contains(parsed.with_timezone(&Utc));
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
    let (answer, window) = socat(&["-t", "2", "-", &format!("UDP:{}", server.udp())], b"\n");
    assert!(answer.ends_with("+0530\r\n"), "{answer:?}");
    let parsed = DateTime::parse_from_rfc2822(answer.trim_end()).unwrap();
    window.assert_contains(parsed.with_timezone(&Utc));
}

#[test]
fn daytime_metrics_pass_promtool() {
    let server = Server::start(DAYTIMED, &[]);
    socat(&["-t", "5", "-", &format!("TCP:{}", server.tcp())], b"");
    let (_, body) = server.get("/metrics");
    promtool_check_metrics(&body).unwrap();
    assert!(body.contains("inetsvc_bytes_sent_total{service=\"daytime\",transport=\"tcp\"} 26"));
}
