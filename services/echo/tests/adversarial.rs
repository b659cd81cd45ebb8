//! Hostile and unlucky clients against `echod`, bounded in count and time, on loopback
//! only: floods beyond the caps, slowloris, half-closed and reset connections, many UDP
//! sources over their rate, SIGTERM under load (nothing accepted may be lost), and
//! `/metrics` scraped hard under load. Each test prints the figures it measured.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inetsvc_testkit::{echoes_on, http_get, round_trip, sample, Server};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

fn echoes(address: SocketAddr) -> bool {
    TcpStream::connect(address).is_ok_and(|mut stream| echoes_on(&mut stream, b"ping"))
}

#[test]
fn a_flood_beyond_the_cap_is_refused_and_counted_while_held_clients_are_served() {
    let server = Server::start(
        ECHOD,
        &[
            "--max-connections",
            "50",
            "--max-connections-per-source",
            "1000",
        ],
    );
    let held: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(server.tcp()).unwrap())
        .collect();
    server.wait_metric(
        "inetsvc_connections_active{service=\"echo\",transport=\"tcp\"}",
        50.0,
        Duration::from_secs(5),
    );
    let flood = 300;
    for _ in 0..flood {
        let _ = TcpStream::connect(server.tcp());
    }
    server.wait_metric(
        "inetsvc_connections_rejected_total{reason=\"global_cap\",service=\"echo\",transport=\"tcp\"}",
        flood as f64,
        Duration::from_secs(10),
    );
    // The held connections are still served.
    for mut stream in held.into_iter().step_by(10) {
        assert!(echoes_on(&mut stream, b"held"));
    }
    println!(
        "flood: {flood} connections beyond a cap of 50 refused and counted; held clients served"
    );
}

#[test]
fn slowloris_clients_are_cut_by_the_maximum_connection_time() {
    let server = Server::start(
        ECHOD,
        &["--idle-timeout", "1s", "--max-connection-time", "2s"],
    );
    // One byte every 300 ms: never idle, never done.
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let address = server.tcp();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(address).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let started = Instant::now();
                let mut sink = [0u8; 16];
                while started.elapsed() < Duration::from_secs(6) {
                    if stream.write_all(b".").is_err() {
                        return started.elapsed();
                    }
                    match stream.read(&mut sink) {
                        Ok(0) => return started.elapsed(),
                        Err(e)
                            if e.kind() != ErrorKind::WouldBlock
                                && e.kind() != ErrorKind::TimedOut =>
                        {
                            return started.elapsed()
                        }
                        _ => {}
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    // Meanwhile a normal client is served at once.
    assert!(echoes(server.tcp()));
    for client in clients {
        let lasted = client.join().unwrap();
        assert!(
            lasted >= Duration::from_millis(1800) && lasted < Duration::from_secs(5),
            "a slowloris client lasted {lasted:?}"
        );
    }
    assert_eq!(
        server.metric(
            "inetsvc_errors_total{kind=\"max_duration\",service=\"echo\",transport=\"tcp\"}"
        ),
        10.0
    );
    println!("slowloris: 10 trickling clients cut at max_connection_time (2 s)");
}

#[test]
fn half_closed_and_reset_connections_leave_the_service_serving() {
    let server = Server::start(ECHOD, &[]);
    // Half-closed at once, sending nothing: a clean, empty echo.
    let mut quiet = TcpStream::connect(server.tcp()).unwrap();
    quiet.shutdown(Shutdown::Write).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    quiet.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // Reset in the middle of a large reply: send 4 MiB, read a little, then abort.
    for _ in 0..20 {
        let stream = TcpStream::connect(server.tcp()).unwrap();
        let socket = socket2::SockRef::from(&stream);
        let mut writer = stream.try_clone().unwrap();
        let _ = writer.write_all(&vec![9u8; 256 * 1024]);
        let mut some = [0u8; 1024];
        let _ = (&stream).read(&mut some);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        drop(writer);
        drop(stream);
    }
    assert_eq!(round_trip(server.tcp(), b"still fine"), b"still fine");
    server.wait_metric(
        "inetsvc_connections_active{service=\"echo\",transport=\"tcp\"}",
        0.0,
        Duration::from_secs(1),
    );
    let errors = server
        .metric("inetsvc_errors_total{kind=\"read\",service=\"echo\",transport=\"tcp\"}")
        + server.metric("inetsvc_errors_total{kind=\"write\",service=\"echo\",transport=\"tcp\"}");
    assert!(errors >= 1.0, "resets are counted");
    println!("resets: 20 clients aborted mid-reply, {errors} I/O errors counted, service serving");
}

#[test]
fn many_udp_sources_over_their_rate_are_limited_each() {
    let server = Server::start(
        ECHOD,
        &["--udp-rate-per-source", "1", "--udp-burst-per-source", "5"],
    );
    let mut answered_total = 0;
    for source in 1..=20u8 {
        let client = UdpSocket::bind((std::net::Ipv4Addr::new(127, 0, 0, source), 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        for _ in 0..12 {
            client.send_to(b"x", server.udp()).unwrap();
        }
        let mut answered = 0;
        let mut buf = [0u8; 8];
        while client.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        assert!(
            (5..=7).contains(&answered),
            "source 127.0.0.{source}: {answered} answered"
        );
        answered_total += answered;
    }
    let dropped = server.metric(
        "inetsvc_datagrams_dropped_total{reason=\"rate_limit_source\",service=\"echo\",transport=\"udp\"}",
    );
    assert_eq!(dropped as usize, 20 * 12 - answered_total);
    println!("udp: 20 sources × 12 datagrams, {answered_total} answered (burst 5 each), {dropped} dropped and counted");
}

/// Runs 8 clients doing whole ECHO exchanges while `echod` gets SIGTERM. Like a load
/// balancer, the clients stop opening connections once `/readyz` says 503 if
/// `heed_readiness`. Returns (accepted, answered in full, lost).
fn exchanges_across_sigterm(heed_readiness: bool) -> (u64, u64, u64) {
    let mut server = Server::start(
        ECHOD,
        &["--drain-delay", "500ms", "--shutdown-timeout", "20s"],
    );
    let (address, admin) = (server.tcp(), server.admin.unwrap());
    let draining = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (draining, stop) = (draining.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if TcpStream::connect(admin).is_ok() && http_get(admin, "/readyz").0 == 503 {
                    draining.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (stop, draining, accepted, completed, lost) = (
                stop.clone(),
                draining.clone(),
                accepted.clone(),
                completed.clone(),
                lost.clone(),
            );
            std::thread::spawn(move || {
                let payload = vec![worker as u8; 32 * 1024];
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if heed_readiness && draining.load(Ordering::Relaxed) {
                        return;
                    }
                    // A refused connect was never accepted: it is not a loss.
                    let Ok(mut stream) = TcpStream::connect(address) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::Relaxed);
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut back = Vec::new();
                    let done = stream.write_all(&payload).is_ok()
                        && stream.shutdown(Shutdown::Write).is_ok()
                        && stream.read_to_end(&mut back).is_ok()
                        && back == payload;
                    if done {
                        completed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(25)).expect("exits");
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    watcher.join().unwrap();
    assert_eq!(status.code(), Some(0));
    (
        accepted.load(Ordering::Relaxed),
        completed.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
    )
}

#[test]
fn sigterm_under_load_loses_nothing_accepted() {
    let (accepted, completed, lost) = exchanges_across_sigterm(true);
    println!("sigterm under load, clients heeding /readyz: {accepted} connections, {completed} answered in full, {lost} lost");
    assert!(completed > 50, "the load ran: {completed}");
    assert_eq!(lost, 0, "{lost} of {accepted} exchanges were lost");
    // Clients that ignore readiness and keep connecting until the listener closes: the
    // backlog is accepted and served at stop, so losses are at most the few handshakes
    // completed in the instant between that last accept and the close.
    let (accepted, completed, lost) = exchanges_across_sigterm(false);
    println!("sigterm under load, clients ignoring /readyz: {accepted} connections, {completed} answered in full, {lost} lost");
    assert!(
        lost <= 8,
        "{lost} of {accepted} lost although the backlog is served"
    );
}

/// What this checks: scrapes stay correct (the connection count exact, the byte counters
/// never going backwards) and the load keeps being served while they hammer the admin
/// port. What it costs the load is a benchmark's question (bench/run), not a test's.
#[test]
fn metrics_scraped_hard_under_load_stay_correct_and_the_load_keeps_being_served() {
    let server = Server::start(ECHOD, &[]);
    let admin = server.admin.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, address) = (stop.clone(), served.clone(), server.tcp());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(address).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut back = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&[1u8; 512]).unwrap();
                    stream.read_exact(&mut back).unwrap();
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    server.wait_metric(
        "inetsvc_requests_total{service=\"echo\",transport=\"tcp\"}",
        4.0,
        Duration::from_secs(5),
    );
    let started = Instant::now();
    let mut scrapes = 0;
    let mut last_received = 0.0;
    while scrapes < 500 && started.elapsed() < Duration::from_secs(20) {
        let (status, body) = http_get(admin, "/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("inetsvc_requests_total{service=\"echo\",transport=\"tcp\"} 4"));
        let received = sample(
            &body,
            "inetsvc_bytes_received_total{service=\"echo\",transport=\"tcp\"}",
        )
        .expect("bytes received are exposed");
        assert!(
            received >= last_received,
            "a counter went backwards: {received} < {last_received}"
        );
        last_received = received;
        scrapes += 1;
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for worker in load {
        worker.join().unwrap();
    }
    let served = served.load(Ordering::Relaxed);
    println!(
        "scrapes: {scrapes} in {took:?} ({:.0}/s) under load; {served} echoes served meanwhile",
        scrapes as f64 / took.as_secs_f64()
    );
    assert_eq!(scrapes, 500);
    assert!(served > 1000, "the load kept running: {served}");
}
