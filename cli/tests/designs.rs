//! The book's server designs (ch. 8-13), each run through the full protocol set, a
//! stuck client, and a drain.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use inetsvc_testkit::{read_to_close, round_trip, run_binary, workspace_binary, Server};

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

/// Each TCP design with the UDP design it is tested beside.
const DESIGNS: [(&str, &str); 4] = [
    ("iterative", "iterative"),
    ("concurrent", "concurrent"),
    ("threaded", "iterative"),
    ("single-thread", "concurrent"),
];

fn start(binary: &str, tcp: &str, udp: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--tcp-concurrency", tcp, "--udp-concurrency", udp];
    args.extend_from_slice(extra);
    let server = Server::start(&workspace_binary(binary), &args);
    let log = server.log().join("\n");
    assert!(
        log.contains(&format!("\"tcp_concurrency\":\"{tcp}\"")),
        "{log}"
    );
    server
}

#[test]
fn every_design_serves_the_full_protocol_set() {
    for (tcp, udp) in DESIGNS {
        let echo = start("echod", tcp, udp, &[]);
        let daytime = start("daytimed", tcp, udp, &[]);
        let time = start("timed", tcp, udp, &[]);
        let probe = run_binary(
            INETSVC,
            &[
                "probe",
                "--echo",
                &echo.tcp().port().to_string(),
                "--daytime",
                &daytime.tcp().port().to_string(),
                "--time",
                &time.tcp().port().to_string(),
            ],
            &[],
        );
        assert_eq!(
            probe.status.code(),
            Some(0),
            "{tcp}/{udp}: {}",
            String::from_utf8_lossy(&probe.stdout)
        );
        // Large payloads both ways.
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(echo.tcp(), &data), data, "{tcp}: 1 MiB echo");
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let datagram = vec![7u8; 65_507];
        client.send_to(&datagram, echo.udp()).unwrap();
        let mut buf = vec![0u8; 70_000];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &datagram[..], "{udp}: largest datagram");
        // Several clients at once are all served (one after another when iterative).
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let address = time.tcp();
                std::thread::spawn(move || {
                    read_to_close(TcpStream::connect(address).unwrap())
                        .unwrap()
                        .len()
                })
            })
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), 4, "{tcp}: TIME answer");
        }
        assert!(
            echo.metric("inetsvc_requests_total{service=\"echo\",transport=\"udp\"}") >= 2.0,
            "{udp}: counted"
        );
    }
}

/// Connects a client that never sends, then times how long a normal client waits for
/// its echo.
fn wait_behind_a_stuck_client(server: &Server) -> Duration {
    let _stuck = TcpStream::connect(server.tcp()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(round_trip(server.tcp(), b"next"), b"next");
    started.elapsed()
}

#[test]
fn a_stuck_client_holds_the_iterative_design_only_until_its_timeout() {
    for (tcp, udp) in DESIGNS {
        let server = start("echod", tcp, udp, &["--idle-timeout", "1s"]);
        let waited = wait_behind_a_stuck_client(&server);
        if tcp == "iterative" {
            // Book §8.29: the iterative server is held; the idle timeout frees it.
            assert!(
                waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
                "{tcp}: waited {waited:?}"
            );
            assert!(
                server.metric(
                    "inetsvc_errors_total{kind=\"idle_timeout\",service=\"echo\",transport=\"tcp\"}"
                ) >= 1.0
            );
        } else {
            assert!(
                waited < Duration::from_millis(500),
                "{tcp}: waited {waited:?}"
            );
        }
    }
}

#[test]
fn every_design_drains_on_sigterm() {
    for (tcp, udp) in DESIGNS {
        let mut server = start("echod", tcp, udp, &["--shutdown-timeout", "10s"]);
        let mut session = TcpStream::connect(server.tcp()).unwrap();
        session
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        session.write_all(b"before").unwrap();
        let mut buf = [0u8; 6];
        session.read_exact(&mut buf).unwrap();
        server.signal("TERM");
        std::thread::sleep(Duration::from_millis(300));
        // The session in progress is still served, then the process exits 0.
        session.write_all(b"during").unwrap();
        session.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"during", "{tcp}");
        drop(session);
        let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
        assert_eq!(status.code(), Some(0), "{tcp}");
    }
}

/// The OS threads of process `pid` by name (`comm`, at most 15 characters), counted.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Told apart by what the process does, not by what it logs: eight sessions open at once,
/// then the threads in /proc. `threaded` runs a thread per session (named `connection`),
/// `single-thread` no runtime worker at all (everything on the main thread), `concurrent`
/// and `iterative` the multi-threaded runtime's workers and no thread per session.
#[test]
fn each_design_runs_on_the_threads_it_promises() {
    const SESSIONS: usize = 8;
    const WORKER: &str = "tokio-rt-worker";
    for (tcp, udp) in DESIGNS {
        let server = start("echod", tcp, udp, &[]);
        let pid = server.pid();
        let mut sessions: Vec<TcpStream> = Vec::new();
        // Iterative serves one session at a time: keep only one open, echoing.
        let open = if tcp == "iterative" { 1 } else { SESSIONS };
        for _ in 0..open {
            let mut session = TcpStream::connect(server.tcp()).unwrap();
            assert!(inetsvc_testkit::echoes_on(&mut session, b"on"), "{tcp}");
            sessions.push(session);
        }
        let (per_session, workers) = (threads_named(pid, "connection"), threads_named(pid, WORKER));
        match tcp {
            "threaded" => {
                assert_eq!(per_session, SESSIONS, "{tcp}: one thread per session");
            }
            "single-thread" => {
                assert_eq!((per_session, workers), (0, 0), "{tcp}: all on one thread");
            }
            _ => {
                assert_eq!(per_session, 0, "{tcp}: no thread per session");
                assert!(workers >= 1, "{tcp}: runtime workers");
            }
        }
        drop(sessions);
        if tcp == "threaded" {
            // Each session's thread ends with it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while threads_named(pid, "connection") > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(threads_named(pid, "connection"), 0, "{tcp}: threads ended");
        }
    }
}

/// The sockets a thread of `pid` is blocked on: for each thread named `name`, the first
/// argument of the syscall it sleeps in, if that is one of the process's sockets. Read
/// from /proc/PID/task/TID/syscall, so it holds on every architecture: a thread parked
/// by a runtime sleeps on a futex (an address), one in a blocking read on its socket.
fn blocked_on_sockets(pid: u32, name: &str) -> (usize, usize) {
    let (mut threads, mut on_socket) = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        threads += 1;
        let syscall = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
        let fd = syscall
            .split_whitespace()
            .nth(1)
            .and_then(|arg| u64::from_str_radix(arg.trim_start_matches("0x"), 16).ok());
        let target = fd.and_then(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok());
        if target.is_some_and(|t| t.to_string_lossy().starts_with("socket:")) {
            on_socket += 1;
        }
    }
    (threads, on_socket)
}

/// Book ch. 12 as it is: each session's thread blocks in the kernel on its own socket,
/// not on a runtime's futex; the kernel's timeouts (SO_RCVTIMEO, SO_SNDTIMEO) and the
/// connection's life bound it; a client that stops reading is cut by the write timeout.
#[test]
fn threaded_sessions_block_on_their_sockets_within_their_timeouts() {
    let server = start(
        "echod",
        "threaded",
        "iterative",
        &["--idle-timeout", "1s", "--write-timeout", "1s"],
    );
    let mut sessions: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut session = TcpStream::connect(server.tcp()).unwrap();
            assert!(inetsvc_testkit::echoes_on(&mut session, b"on"));
            session
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (threads, on_socket) = blocked_on_sockets(server.pid(), "connection");
    assert_eq!(
        (threads, on_socket),
        (4, 4),
        "each thread blocks on its socket"
    );
    // Silent for longer than the idle timeout: each is closed and counted.
    let begun = Instant::now();
    for session in &mut sessions {
        session
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            session.read(&mut buf).unwrap(),
            0,
            "closed at the idle timeout"
        );
    }
    let waited = begun.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(4),
        "idle sessions closed after {waited:?}"
    );
    server.wait_metric(
        "inetsvc_errors_total{kind=\"idle_timeout\",service=\"echo\",transport=\"tcp\"}",
        4.0,
        Duration::from_secs(5),
    );
    // A client that sends and never reads: the echo fills both buffers, then the blocked
    // write gives up after the write timeout.
    let mut flooder = TcpStream::connect(server.tcp()).unwrap();
    flooder
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while flooder.write_all(&chunk).is_ok() && Instant::now() < deadline {}
    server.wait_metric(
        "inetsvc_errors_total{kind=\"write_timeout\",service=\"echo\",transport=\"tcp\"}",
        1.0,
        Duration::from_secs(10),
    );
}

/// The connection's life bounds a threaded session that never pauses, and the request
/// to finish reaches a thread blocked in a read: at SIGTERM the session still open is
/// answered to its last byte, then reads end of stream before the shutdown deadline.
#[test]
fn threaded_sessions_end_at_their_max_time_and_finish_at_shutdown() {
    let server = start(
        "echod",
        "threaded",
        "iterative",
        &["--max-connection-time", "1s"],
    );
    let mut busy = TcpStream::connect(server.tcp()).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let begun = Instant::now();
    let mut buf = [0u8; 4];
    let ended = loop {
        if busy.write_all(b"ping").is_err() {
            break begun.elapsed();
        }
        match busy.read_exact(&mut buf) {
            Ok(()) => assert_eq!(&buf, b"ping"),
            Err(_) => break begun.elapsed(),
        }
        assert!(begun.elapsed() < Duration::from_secs(8), "never cut");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ended >= Duration::from_millis(900), "cut after {ended:?}");
    server.wait_metric(
        "inetsvc_errors_total{kind=\"max_duration\",service=\"echo\",transport=\"tcp\"}",
        1.0,
        Duration::from_secs(5),
    );
    drop(server);

    let mut server = start(
        "echod",
        "threaded",
        "iterative",
        &["--shutdown-timeout", "2s", "--drain-delay", "0s"],
    );
    let mut session = TcpStream::connect(server.tcp()).unwrap();
    session
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    session.write_all(b"last").unwrap();
    session.read_exact(&mut buf).unwrap();
    let signalled = Instant::now();
    server.signal("TERM");
    // Silent from here: the thread sits in its blocking read until it is asked to finish.
    let mut rest = Vec::new();
    session.read_to_end(&mut rest).unwrap();
    let finished = signalled.elapsed();
    assert!(rest.is_empty(), "nothing but end of stream: {rest:?}");
    assert!(
        finished < Duration::from_secs(2),
        "finished before the deadline, after {finished:?}"
    );
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0));
}
