//! The admin plane against a hostile client and a careless operator: held and slow admin
//! connections cannot take the service down, and no common signal kills it unasked.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use inetsvc_testkit::{echoes_on, http_get, round_trip, udp_ask, Server, ADMIN_TOKEN};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

/// Reads until the server closes the connection (end of stream or a reset), at most
/// `limit`; returns how long that took, or `None` if it stayed open.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn held_admin_connections_under_a_low_descriptor_limit_leave_the_service_up() {
    // 300 descriptors, 400 admin connections held idle: before the admin budget, 286 of
    // them used every descriptor and ECHO, /healthz and accept all failed.
    let server = Server::start_under(&["prlimit", "--nofile=300:300"], ECHOD, &[]);
    let admin = server.admin.unwrap();
    let held: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(admin).ok())
        .collect();
    assert_eq!(held.len(), 400, "the kernel completed every handshake");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(round_trip(server.tcp(), b"still echoing"), b"still echoing");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        udp_ask(&client, server.udp(), b"udp too", Duration::from_secs(2)).as_deref(),
        Some(&b"udp too"[..])
    );
    assert_eq!(http_get(admin, "/healthz").0, 200, "liveness still answers");
    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200, "metrics still answer");
    let evicted = inetsvc_testkit::sample(
        &metrics,
        "inetsvc_admin_refused_total{reason=\"evicted\",service=\"echo\"}",
    )
    .unwrap();
    // 32 slots: every connection beyond them closed an older idle one.
    assert!(evicted >= 400.0 - 32.0, "{evicted} evictions counted");
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    assert!(open_fds < 120, "{open_fds} descriptors open in the service");
    drop(held);
}

#[test]
fn a_slowloris_and_an_idle_keep_alive_are_closed_within_the_header_timeout() {
    let server = Server::start(ECHOD, &["--admin-header-timeout", "1s"]);
    let admin = server.admin.unwrap();
    // One header byte every 300 ms: the head is never complete.
    let mut slow = TcpStream::connect(admin).unwrap();
    let started = Instant::now();
    let dribble = std::thread::spawn({
        let mut writer = slow.try_clone().unwrap();
        move || {
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
                if writer.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    });
    let closed =
        closed_within(&mut slow, Duration::from_secs(10)).expect("the slowloris is closed");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "closed after {closed:?}, past the 1 s header timeout"
    );
    dribble.join().unwrap();
    // One request answered, then idle on a kept-alive connection.
    let mut idle = TcpStream::connect(admin).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let closed =
        closed_within(&mut idle, Duration::from_secs(10)).expect("the idle connection is closed");
    assert!(
        closed < Duration::from_millis(2500),
        "idle closed after {closed:?}"
    );
    assert!(
        server.metric("inetsvc_admin_refused_total{reason=\"header_timeout\",service=\"echo\"}")
            >= 2.0
    );
}

#[test]
fn a_body_that_never_comes_is_refused_within_the_request_timeout() {
    let server = Server::start_training(ECHOD, &["--admin-request-timeout", "1s"]);
    let admin = server.admin.unwrap();
    let mut stream = TcpStream::connect(admin).unwrap();
    let started = Instant::now();
    write!(
        stream,
        "PUT /admin/faults/latency HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 1000000000\r\n\r\ndelay="
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408", "answered at the request timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!server.fault_active("latency"), "nothing was set");
}

#[test]
fn refused_admin_requests_are_counted_each_and_logged_once_a_second() {
    let server = Server::start_training(ECHOD, &[]);
    let admin = server.admin.unwrap();
    for _ in 0..200 {
        assert_eq!(http_get(admin, "/admin/faults").0, 401);
    }
    assert_eq!(
        server.metric("inetsvc_admin_refused_total{reason=\"unauthorized\",service=\"echo\"}"),
        200.0
    );
    let lines = server
        .log()
        .iter()
        .filter(|line| line.contains("admin API request refused"))
        .count();
    assert!(
        (1..=5).contains(&lines),
        "{lines} log lines for 200 refusals"
    );
}

#[test]
fn sighup_reloads_and_sigusr_are_logged_and_none_of_them_stops_the_service() {
    let mut server = Server::start(ECHOD, &[]);
    let mut session = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes_on(&mut session, b"before"));
    for signal in ["HUP", "USR1", "USR2"] {
        server.signal(signal);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.wait_exit(Duration::from_millis(200)).is_none(),
        "still running"
    );
    assert!(echoes_on(&mut session, b"after"), "the session was not cut");
    assert_eq!(server.get("/readyz").0, 200, "still ready");
    let log = server.log().join("\n");
    for signal in ["SIGUSR1", "SIGUSR2"] {
        assert!(
            log.contains(&format!("\"signal\":\"{signal}\"")) && log.contains("signal ignored"),
            "{signal} not logged: {log}"
        );
    }
    assert!(
        log.contains("\"cause\":\"SIGHUP\"") && log.contains("configuration reloaded"),
        "SIGHUP reloads: {log}"
    );
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut server = Server::start(ECHOD, &["--shutdown-timeout", "30s"]);
    let mut session = TcpStream::connect(server.tcp()).unwrap();
    assert!(echoes_on(&mut session, b"held"));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.wait_exit(Duration::from_millis(100)).is_none(),
        "the first one drains"
    );
    let second = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits on the second signal");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(143), "128 + SIGTERM says why");
}

#[test]
fn a_page_on_a_rebound_public_name_cannot_read_the_admin_port() {
    let server = Server::start(ECHOD, &[]);
    let admin = server.admin.unwrap();
    let rebound = inetsvc_testkit::http_request(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: attacker.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(
        !rebound.contains("inetsvc_requests_total"),
        "nothing leaked"
    );
    for host in [
        "127.0.0.1",
        "localhost:9007",
        "echod:9007",
        "echod.inetsvc.svc.cluster.local",
    ] {
        let answer = inetsvc_testkit::http_request(
            admin,
            &format!("GET /version HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    assert_eq!(
        server.metric("inetsvc_admin_refused_total{reason=\"host\",service=\"echo\"}"),
        1.0
    );
    // The guard can be widened by name, or turned off.
    let open = Server::start(ECHOD, &["--admin-allowed-hosts", "*"]);
    let answer = inetsvc_testkit::http_request(
        open.admin.unwrap(),
        "GET /version HTTP/1.1\r\nHost: attacker.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
