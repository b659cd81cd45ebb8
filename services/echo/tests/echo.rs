//! `echod` end to end: real sockets on loopback, real peers (`socat`, `promtool`), the
//! runtime's protections and its shutdown sequence.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use inetsvc_testkit::{
    connect_from, cpu_seconds, echoes_on, promtool_check_metrics, round_trip, run_tool, udp_ask,
    Server,
};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn socat(args: &[&str], input: &[u8]) -> Vec<u8> {
    let output = run_tool("socat", args, input, Duration::from_secs(20));
    assert!(
        output.status.success(),
        "socat {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn udp_exchange(client: &UdpSocket, target: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
    udp_ask(client, target, data, Duration::from_millis(500))
}

#[test]
fn socat_round_trips_tcp_from_1_byte_to_64_kib() {
    let server = Server::start(ECHOD, &[]);
    let target = format!("TCP:{}", server.tcp());
    for len in [1, 100, 4096, 65_536] {
        let data = pattern(len);
        assert_eq!(
            socat(&["-t", "5", "-", &target], &data),
            data,
            "{len} bytes"
        );
    }
    assert_eq!(
        server.metric("inetsvc_requests_total{service=\"echo\",transport=\"tcp\"}"),
        4.0
    );
}

#[test]
fn socat_round_trips_udp() {
    let server = Server::start(ECHOD, &[]);
    let target = format!("UDP:{}", server.udp());
    assert_eq!(
        socat(&["-t", "2", "-", &target], b"hello, echo\n"),
        b"hello, echo\n"
    );
}

#[test]
fn socat_round_trips_over_ipv6() {
    let server = Server::start(
        ECHOD,
        &["--tcp-listen", "[::1]:0", "--udp-listen", "[::1]:0"],
    );
    let port = server.tcp().port();
    let data = pattern(3000);
    assert_eq!(
        socat(&["-t", "5", "-", &format!("TCP6:[::1]:{port}")], &data),
        data
    );
    let port = server.udp().port();
    assert_eq!(
        socat(&["-t", "2", "-", &format!("UDP6:[::1]:{port}")], b"six\n"),
        b"six\n"
    );
}

#[test]
fn udp_echo_is_byte_exact_from_empty_to_the_largest_datagram() {
    let server = Server::start(ECHOD, &[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // xinetd truncates at 2048 and OpenBSD inetd at 4096: test across both and at the
    // IPv4 maximum, 65,507 bytes.
    for len in [0, 1, 2048, 2049, 4096, 4097, 65_507] {
        let data = pattern(len);
        assert_eq!(
            udp_exchange(&client, server.udp(), &data).as_deref(),
            Some(&data[..]),
            "{len} bytes"
        );
    }
}

#[test]
fn udp_echo_carries_the_largest_ipv6_datagram() {
    let server = Server::start(ECHOD, &["--udp-listen", "[::1]:0"]);
    let client = UdpSocket::bind("[::1]:0").unwrap();
    let data = pattern(65_527);
    assert_eq!(
        udp_exchange(&client, server.udp(), &data).as_deref(),
        Some(&data[..])
    );
}

#[test]
fn tcp_echo_is_full_duplex_and_answers_after_half_close() {
    let server = Server::start(ECHOD, &[]);
    // 4 MiB: far more than socket buffers hold, so sending and receiving must overlap.
    let data = pattern(4 << 20);
    assert_eq!(round_trip(server.tcp(), &data), data);
    // Interleaved small exchanges on one connection.
    let mut stream = TcpStream::connect(server.tcp()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for i in 0..20u8 {
        stream.write_all(&[i; 10]).unwrap();
        let mut back = [0u8; 10];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, [i; 10]);
    }
}

#[test]
fn a_client_that_never_reads_is_cut_off_by_the_write_timeout_and_others_are_served() {
    let server = Server::start(ECHOD, &["--write-timeout", "1s", "--buffer-size", "65536"]);
    let mut stuck = TcpStream::connect(server.tcp()).unwrap();
    stuck.set_nonblocking(true).unwrap();
    // Fill both directions' buffers: the server blocks writing back to us.
    let chunk = vec![7u8; 65_536];
    let mut sent = 0usize;
    let started = Instant::now();
    loop {
        match stuck.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if started.elapsed() > Duration::from_millis(300) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("write: {e}"),
        }
        assert!(
            sent < 256 << 20,
            "the server kept accepting data it cannot send back"
        );
    }
    // Another client is served while the stuck one is held.
    assert_eq!(round_trip(server.tcp(), b"still here"), b"still here");
    server.wait_metric(
        "inetsvc_errors_total{kind=\"write_timeout\",service=\"echo\",transport=\"tcp\"}",
        1.0,
        Duration::from_secs(5),
    );
    server.wait_metric(
        "inetsvc_connection_duration_seconds_count{service=\"echo\",transport=\"tcp\"}",
        2.0,
        Duration::from_secs(5),
    );
    assert_eq!(
        server.metric("inetsvc_connections_active{service=\"echo\",transport=\"tcp\"}"),
        0.0
    );
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(ECHOD, &["--idle-timeout", "1s"]);
    let mut idle = TcpStream::connect(server.tcp()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    // EOF (0) or a reset both mean the server closed it.
    let closed = matches!(idle.read(&mut buf), Ok(0) | Err(_));
    let waited = started.elapsed();
    assert!(closed);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(
        server.metric(
            "inetsvc_errors_total{kind=\"idle_timeout\",service=\"echo\",transport=\"tcp\"}"
        ),
        1.0
    );
}

/// True when the server refused the connection: reset (possibly before the connect call
/// even returned) or closed without echoing.
fn refused(connected: std::io::Result<TcpStream>) -> bool {
    let mut stream = match connected {
        Ok(stream) => stream,
        Err(error) => return error.kind() == ErrorKind::ConnectionReset,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"x");
    let mut buf = [0u8; 1];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

fn echoes(stream: &mut TcpStream) -> bool {
    echoes_on(stream, b"ping")
}

#[test]
fn a_client_beyond_the_global_cap_is_refused_and_counted_while_others_are_served() {
    let server = Server::start(ECHOD, &["--max-connections", "2"]);
    let mut first = TcpStream::connect(server.tcp()).unwrap();
    let mut second = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes(&mut first) && echoes(&mut second));
    assert!(refused(TcpStream::connect(server.tcp())));
    assert_eq!(
        server.metric("inetsvc_connections_rejected_total{reason=\"global_cap\",service=\"echo\",transport=\"tcp\"}"),
        1.0
    );
    assert!(echoes(&mut first) && echoes(&mut second));
    // A slot freed is a slot available again.
    drop(first);
    server.wait_metric(
        "inetsvc_connection_duration_seconds_count{service=\"echo\",transport=\"tcp\"}",
        1.0,
        Duration::from_secs(5),
    );
    let mut third = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes(&mut third));
}

#[test]
fn a_source_beyond_its_cap_is_refused_while_other_sources_are_served() {
    let server = Server::start(ECHOD, &["--max-connections-per-source", "1"]);
    let from = |ip: &str| connect_from(format!("{ip}:0").parse().unwrap(), server.tcp());
    let mut first = from("127.0.0.1").unwrap();
    assert!(echoes(&mut first));
    assert!(refused(from("127.0.0.1")));
    let mut other = from("127.0.0.2").unwrap();
    assert!(echoes(&mut other));
    assert_eq!(
        server.metric("inetsvc_connections_rejected_total{reason=\"per_source_cap\",service=\"echo\",transport=\"tcp\"}"),
        1.0
    );
}

#[test]
fn a_datagram_from_source_port_19_gets_no_reply_and_is_counted() {
    let server = Server::start(ECHOD, &[]);
    // Port 19 is chargen: answering it is the classic echo/chargen loop (CERT CA-1996-01).
    // Binding it needs root or CAP_NET_BIND_SERVICE, which the test command runs with.
    let chargen = UdpSocket::bind("127.0.0.1:19").expect(
        "binding UDP port 19 needs root or CAP_NET_BIND_SERVICE; run the README test command as root",
    );
    assert_eq!(udp_exchange(&chargen, server.udp(), b"loop?"), None);
    assert_eq!(
        server.metric("inetsvc_datagrams_dropped_total{reason=\"loop_port\",service=\"echo\",transport=\"udp\"}"),
        1.0
    );
    // A datagram from the service's own port is refused too (two echo servers on one
    // port number would answer each other forever).
    let own_port = UdpSocket::bind(("127.0.0.2", server.udp().port())).unwrap();
    assert_eq!(udp_exchange(&own_port, server.udp(), b"loop?"), None);
    assert_eq!(
        server.metric("inetsvc_datagrams_dropped_total{reason=\"loop_port\",service=\"echo\",transport=\"udp\"}"),
        2.0
    );
    // So is one from a port of another service of the set (daytimed on 7013 in compose
    // and Kubernetes): before, such a spoofed datagram looped ~1,000 times between them.
    let daytime_port = UdpSocket::bind("127.0.0.3:7013").unwrap();
    assert_eq!(udp_exchange(&daytime_port, server.udp(), b"loop?"), None);
    assert_eq!(
        server.metric("inetsvc_datagrams_dropped_total{reason=\"loop_port\",service=\"echo\",transport=\"udp\"}"),
        3.0
    );
    // An ordinary client is answered.
    let normal = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        udp_exchange(&normal, server.udp(), b"fine").as_deref(),
        Some(&b"fine"[..])
    );
}

#[test]
fn a_source_over_its_udp_rate_is_dropped_and_counted_while_others_are_answered() {
    let server = Server::start(
        ECHOD,
        &["--udp-rate-per-source", "1", "--udp-burst-per-source", "3"],
    );
    let noisy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answered = (0..6)
        .filter(|_| udp_exchange(&noisy, server.udp(), b"x").is_some())
        .count();
    assert!(
        (3..=4).contains(&answered),
        "burst of 3 then about 1/s: {answered} answered"
    );
    let quiet = UdpSocket::bind("127.0.0.2:0").unwrap();
    assert!(udp_exchange(&quiet, server.udp(), b"y").is_some());
    assert!(
        server.metric("inetsvc_datagrams_dropped_total{reason=\"rate_limit_source\",service=\"echo\",transport=\"udp\"}")
            >= 2.0
    );
}

#[test]
fn sigterm_turns_readiness_off_at_once_and_lets_the_session_finish() {
    let mut server = Server::start(ECHOD, &["--drain-delay", "1s", "--shutdown-timeout", "20s"]);
    assert_eq!(server.get("/readyz").0, 200);
    let mut session = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes(&mut session));
    let signalled = Instant::now();
    server.signal("TERM");
    // Readiness flips at once, well within the drain delay.
    let mut status = 0;
    while signalled.elapsed() < Duration::from_millis(900) {
        status = server.get("/readyz").0;
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status, 503, "/readyz during drain");
    assert_eq!(server.get("/healthz").0, 200, "still alive while draining");
    // After the drain delay, new connections are refused but the session goes on.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        TcpStream::connect(server.tcp()).is_err(),
        "stopped accepting"
    );
    for _ in 0..5 {
        assert!(
            echoes(&mut session),
            "the session in progress is still served"
        );
    }
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "waits for the session"
    );
    session.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    session.read_to_end(&mut rest).unwrap();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits once the session is done, before the deadline");
    assert_eq!(status.code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(20));
    let log = server.log().join("\n");
    assert!(
        log.contains("draining") && log.contains("\"message\":\"stopped\""),
        "{log}"
    );
}

#[test]
fn a_session_open_at_the_deadline_is_finished_gracefully_not_cut() {
    // shutdown_timeout 4 s: sessions are asked to finish 1 s before the deadline.
    let mut server = Server::start(ECHOD, &["--shutdown-timeout", "4s", "--close-linger", "5s"]);
    let mut session = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes(&mut session));
    let signalled = Instant::now();
    server.signal("TERM");
    // Served as usual until shortly before the deadline.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(echoes(&mut session), "still served after SIGTERM");
    session
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    session
        .read_to_end(&mut rest)
        .expect("the session ends in a FIN, not a reset");
    let ended = signalled.elapsed();
    assert!(rest.is_empty(), "nothing unexpected after the last echo");
    assert!(
        ended >= Duration::from_millis(2800) && ended < Duration::from_secs(4),
        "end of stream shortly before the 4 s deadline, not at it: {ended:?}"
    );
    drop(session);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits once the session is finished");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "before the deadline"
    );
    let log = server.log().join("\n");
    assert!(
        !log.contains("shutdown_timeout reached"),
        "nothing was cut: {log}"
    );
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_a_session_that_cannot_finish() {
    let mut server = Server::start(
        ECHOD,
        &["--shutdown-timeout", "1s", "--write-timeout", "30s"],
    );
    // A client that sends and never reads: the echo blocks in a write and never sees the
    // request to finish, so only the deadline ends it.
    let mut session = TcpStream::connect(server.tcp()).unwrap();
    session
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    while sent < 64 << 20 && session.write(&chunk).is_ok_and(|n| n > 0) {
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "the server's writes never blocked");
    let signalled = Instant::now();
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let log = server.log().join("\n");
    assert!(log.contains("shutdown_timeout reached"), "{log}");
}

#[test]
fn metrics_pass_promtool_after_traffic() {
    let server = Server::start(ECHOD, &["--max-connections", "1"]);
    let mut held = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes(&mut held));
    assert!(refused(TcpStream::connect(server.tcp())));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_exchange(&client, server.udp(), b"metrics").unwrap();
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200);
    promtool_check_metrics(&body).unwrap();
    for family in [
        "inetsvc_requests_total",
        "inetsvc_connections_active",
        "inetsvc_connection_duration_seconds",
        "inetsvc_bytes_received_total",
        "inetsvc_bytes_sent_total",
        "inetsvc_connections_rejected_total",
        "inetsvc_datagrams_dropped_total",
        "inetsvc_errors_total",
        "inetsvc_build_info",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "missing {family}"
        );
    }
    assert!(!body.contains("127.0.0.1"), "no peer addresses in labels");
}

#[test]
fn metrics_off_serves_without_a_metrics_endpoint() {
    let server = Server::start(ECHOD, &["--metrics", "false", "--tracing", "false"]);
    assert_eq!(round_trip(server.tcp(), b"bare"), b"bare");
    assert_eq!(server.get("/metrics").0, 404);
    assert_eq!(server.get("/readyz").0, 200);
}

#[test]
fn a_low_open_file_limit_lowers_the_cap_and_keeps_metrics_reachable() {
    // 132 descriptors: the runtime keeps 64 for itself and 32 for the admin port, so it
    // serves 36 connections at once and refuses the rest instead of running out.
    let server = Server::start_under(&["prlimit", "--nofile=132:132"], ECHOD, &[]);
    let log = server.log().join("\n");
    assert!(log.contains("max_connections lowered"), "{log}");
    let mut held: Vec<TcpStream> = (0..36)
        .map(|_| TcpStream::connect(server.tcp()).unwrap())
        .collect();
    for stream in held.iter_mut().step_by(7) {
        assert!(echoes(stream));
    }
    for _ in 0..30 {
        assert!(refused(TcpStream::connect(server.tcp())));
    }
    let before = cpu_seconds(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = cpu_seconds(server.pid()) - before;
    assert!(idle_cpu < 0.2, "{idle_cpu} s of CPU while full");
    assert_eq!(
        server.get("/metrics").0,
        200,
        "/metrics reachable while full"
    );
    assert_eq!(
        server.metric("inetsvc_connections_rejected_total{reason=\"global_cap\",service=\"echo\",transport=\"tcp\"}"),
        30.0
    );
    held.clear();
    server.wait_metric(
        "inetsvc_connection_duration_seconds_count{service=\"echo\",transport=\"tcp\"}",
        36.0,
        Duration::from_secs(5),
    );
    assert!(echoes(&mut TcpStream::connect(server.tcp()).unwrap()));
}
