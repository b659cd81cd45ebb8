//! One test per injectable fault, on real services over loopback, driven by the real
//! `inetsvc fault` command: the effect is there while the fault is set, shows in
//! `inetsvc_fault_active`, and is gone once it is cleared or expires. Plus the admin API's
//! guard: absent when disabled, refused without the right token.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inetsvc_testkit::{
    cpu_seconds, http_get, read_to_close, round_trip, run_binary, udp_answers, udp_collect,
    workspace_binary, Server, ADMIN_TOKEN,
};

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

fn start(name: &str) -> Server {
    Server::start_training(&workspace_binary(name), &[])
}

/// Sets `fault` with `params` and checks it shows as active.
fn set(server: &Server, fault: &str, params: &[&str]) {
    let mut args = vec!["set", fault];
    args.extend_from_slice(params);
    server.fault(INETSVC, &args);
    assert!(server.fault_active(fault), "{fault} shows as active");
}

/// Clears `fault` and checks it no longer shows as active.
fn clear(server: &Server, fault: &str) {
    server.fault(INETSVC, &["clear", fault]);
    assert!(!server.fault_active(fault), "{fault} shows as cleared");
}

/// One datagram's answer(s) within `wait`, each with when it arrived.
/// A TIME answer over UDP as Unix seconds (the wrap era resolved to the era after 2036
/// when the number is small and a wrap was asked for, else this era).
fn time_answer(server: SocketAddr) -> u32 {
    let answers = udp_answers(server, b"\n", Duration::from_millis(500));
    let (bytes, _) = answers.first().expect("a TIME answer");
    u32::from_be_bytes(bytes[..4].try_into().unwrap())
}

/// How far a TIME answer is from our clock, in seconds.
fn time_offset(server: SocketAddr) -> i64 {
    let reported = i64::from(time_answer(server)) - inetsvc_proto::time::SECONDS_1900_TO_1970;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    reported - now
}

/// Everything a DAYTIME/TIME TCP server sends until it closes, and how long that took.
fn tcp_answer(server: SocketAddr) -> (std::io::Result<Vec<u8>>, Duration) {
    let started = Instant::now();
    let result = read_to_close(TcpStream::connect(server).unwrap());
    (result, started.elapsed())
}

#[test]
fn admin_api_is_absent_when_disabled() {
    let server = Server::start(&workspace_binary("echod"), &[]);
    let admin = server.admin.unwrap();
    assert_eq!(http_get(admin, "/admin/faults").0, 404);
    let output = run_binary(
        INETSVC,
        &["fault", "--admin", &admin.to_string(), "list"],
        &[("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin_api = false"));
}

#[test]
fn admin_api_refuses_without_the_token() {
    let server = start("echod");
    let admin = server.admin.unwrap().to_string();
    let attempt = |token: Option<&str>| {
        let env: Vec<(&str, &str)> = token
            .map(|t| ("INETSVC_ADMIN_TOKEN", t))
            .into_iter()
            .collect();
        run_binary(
            INETSVC,
            &["fault", "--admin", &admin, "set", "not_live"],
            &env,
        )
    };
    for token in [
        None,
        Some("wrong-token-0123456789abcd"),
        Some(&ADMIN_TOKEN[1..]),
    ] {
        let output = attempt(token);
        assert_eq!(output.status.code(), Some(1), "token {token:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
    }
    assert_eq!(http_get(server.admin.unwrap(), "/admin/faults").0, 401);
    assert_eq!(server.get("/healthz").0, 200, "nothing was set");
    assert!(!server.fault_active("not_live"));
    assert!(server
        .log()
        .iter()
        .any(|l| l.contains("missing or wrong bearer token")));
    assert!(attempt(Some(ADMIN_TOKEN)).status.success());
    assert_eq!(server.get("/healthz").0, 503);
}

#[test]
fn admin_api_needs_a_real_token_to_start() {
    let echod = workspace_binary("echod");
    let output = run_binary(&echod, &["--admin-api", "true"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("admin_api: the admin API needs a bearer token"));
    let output = run_binary(
        &echod,
        &["--admin-api", "true"],
        &[("INETSVC_ADMIN_TOKEN", "short")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("admin_token: the token must be at least 16"));
    let output = run_binary(
        &echod,
        &[
            "--admin-api",
            "true",
            "--admin-token-file",
            "/nonexistent/token",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin_token_file: cannot read"));
    let output = run_binary(&echod, &["--faults", "latency:delai=1s"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("faults: invalid value"));
    // The token never shows in the printed configuration.
    let output = run_binary(
        &echod,
        &["--print-config"],
        &[("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!printed.contains(ADMIN_TOKEN) && printed.contains("<redacted>"));
}

#[test]
fn bad_fault_requests_are_usage_errors() {
    let server = start("echod");
    let admin = server.admin.unwrap().to_string();
    for args in [
        vec!["set", "nosuch"],
        vec!["set", "latency", "delai=1s"],
        vec!["set", "udp_drop", "probability=1.5"],
        vec!["set", "memory_load", "mib=999999"],
    ] {
        let mut full = vec!["fault", "--admin", &admin];
        full.extend(args.iter().copied());
        let output = run_binary(INETSVC, &full, &[("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN)]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
    assert!(server.fault(INETSVC, &["list"]).contains("no fault set"));
}

#[test]
fn faults_from_the_config_are_set_at_start_and_listed() {
    let server = Server::start_training(
        &workspace_binary("timed"),
        &["--faults", "clock_offset:offset=1h; not_ready:for=1s"],
    );
    let offset = time_offset(server.udp());
    assert!((3599..=3601).contains(&offset), "{offset}");
    let listing = server.fault(INETSVC, &["list"]);
    assert!(
        listing.contains("clock_offset") && listing.contains("set by config"),
        "{listing}"
    );
    assert_eq!(server.get("/readyz").0, 503);
    assert!(server.log().iter().any(|l| l.contains("fault set")
        && l.contains("clock_offset")
        && l.contains("offset=1h")
        && l.contains("config")));
    // not_ready expires by itself; its gauge and log follow.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(server.get("/readyz").0, 200);
    assert!(!server.fault_active("not_ready"));
    assert!(server
        .log()
        .iter()
        .any(|l| l.contains("fault cleared") && l.contains("expired") && l.contains("not_ready")));
    assert!(server.fault_active("clock_offset"));
}

#[test]
fn latency_delays_tcp_and_udp_replies() {
    let server = start("echod");
    set(&server, "latency", &["delay=800ms", "jitter=50ms"]);
    let started = Instant::now();
    assert_eq!(round_trip(server.tcp(), b"slow"), b"slow");
    assert!(started.elapsed() >= Duration::from_millis(800));
    let answers = udp_answers(server.udp(), b"slow", Duration::from_secs(2));
    assert!(
        answers[0].1 >= Duration::from_millis(800),
        "{:?}",
        answers[0].1
    );
    clear(&server, "latency");
    let started = Instant::now();
    assert_eq!(round_trip(server.tcp(), b"fast"), b"fast");
    assert!(started.elapsed() < Duration::from_millis(400));
    let answers = udp_answers(server.udp(), b"fast", Duration::from_secs(1));
    assert!(answers[0].1 < Duration::from_millis(400));
}

#[test]
fn tcp_refuse_resets_new_connections() {
    let server = start("daytimed");
    set(&server, "tcp_refuse", &["probability=1"]);
    for _ in 0..3 {
        let (answer, _) = tcp_answer(server.tcp());
        match answer {
            Ok(bytes) => assert!(bytes.is_empty(), "no answer while refused"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        }
    }
    assert!(server.metric("inetsvc_connections_rejected_total{reason=\"fault\",service=\"daytime\",transport=\"tcp\"}") >= 3.0);
    clear(&server, "tcp_refuse");
    let (answer, _) = tcp_answer(server.tcp());
    assert!(answer.unwrap().ends_with(b"\r\n"));
}

#[test]
fn tcp_reset_cuts_a_stream_after_some_bytes() {
    let server = start("echod");
    set(&server, "tcp_reset", &["after_bytes=10"]);
    let mut stream = TcpStream::connect(server.tcp()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&[b'x'; 100]).unwrap();
    let mut back = Vec::new();
    let error = stream.read_to_end(&mut back).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    assert!(
        back.len() <= 10,
        "at most after_bytes before the reset: {}",
        back.len()
    );
    assert!(
        server.metric("inetsvc_errors_total{kind=\"reset\",service=\"echo\",transport=\"tcp\"}")
            >= 1.0
    );
    clear(&server, "tcp_reset");
    assert_eq!(round_trip(server.tcp(), &[b'y'; 100]), vec![b'y'; 100]);
}

#[test]
fn slow_close_holds_connections_open() {
    let server = start("timed");
    set(&server, "slow_close", &["delay=1s"]);
    let (answer, took) = tcp_answer(server.tcp());
    assert_eq!(answer.unwrap().len(), 4, "the answer still comes at once");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    clear(&server, "slow_close");
    let (_, took) = tcp_answer(server.tcp());
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn bandwidth_limits_the_reply_rate() {
    let server = start("echod");
    set(&server, "bandwidth", &["bytes_per_second=2000"]);
    let started = Instant::now();
    assert_eq!(round_trip(server.tcp(), &[7u8; 1000]), vec![7u8; 1000]);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    clear(&server, "bandwidth");
    let started = Instant::now();
    assert_eq!(round_trip(server.tcp(), &[7u8; 1000]), vec![7u8; 1000]);
    assert!(started.elapsed() < Duration::from_millis(350));
}

#[test]
fn truncate_cuts_replies() {
    let server = start("timed");
    set(&server, "truncate", &["max_bytes=3"]);
    let (answer, _) = tcp_answer(server.tcp());
    assert_eq!(answer.unwrap().len(), 3);
    let answers = udp_answers(server.udp(), b"\n", Duration::from_millis(500));
    assert_eq!(answers[0].0.len(), 3);
    clear(&server, "truncate");
    assert_eq!(tcp_answer(server.tcp()).0.unwrap().len(), 4);
    assert_eq!(
        udp_answers(server.udp(), b"\n", Duration::from_millis(500))[0]
            .0
            .len(),
        4
    );
}

#[test]
fn truncate_ends_an_echo_stream_early() {
    let server = start("echod");
    set(&server, "truncate", &["max_bytes=5"]);
    assert_eq!(round_trip(server.tcp(), b"0123456789"), b"01234");
    clear(&server, "truncate");
    assert_eq!(round_trip(server.tcp(), b"0123456789"), b"0123456789");
}

#[test]
fn corrupt_changes_one_byte() {
    let server = start("echod");
    set(&server, "corrupt", &["probability=1"]);
    let sent = b"the quick brown fox";
    let answers = udp_answers(server.udp(), sent, Duration::from_millis(500));
    let differing = answers[0]
        .0
        .iter()
        .zip(sent)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 1);
    let back = round_trip(server.tcp(), sent);
    assert_eq!(back.len(), sent.len());
    assert_ne!(back, sent);
    clear(&server, "corrupt");
    assert_eq!(
        udp_answers(server.udp(), sent, Duration::from_millis(500))[0].0,
        sent
    );
    assert_eq!(round_trip(server.tcp(), sent), sent);
}

#[test]
fn udp_drop_leaves_requests_unanswered() {
    let server = start("echod");
    set(&server, "udp_drop", &["probability=1"]);
    for _ in 0..3 {
        assert!(udp_answers(server.udp(), b"lost", Duration::from_millis(300)).is_empty());
    }
    assert_eq!(
        server.metric(
            "inetsvc_datagrams_dropped_total{reason=\"fault\",service=\"echo\",transport=\"udp\"}"
        ),
        3.0
    );
    clear(&server, "udp_drop");
    assert_eq!(
        udp_answers(server.udp(), b"back", Duration::from_millis(500)).len(),
        1
    );
}

#[test]
fn udp_duplicate_answers_twice() {
    let server = start("echod");
    set(&server, "udp_duplicate", &[]);
    let answers = udp_answers(server.udp(), b"twice", Duration::from_millis(500));
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|(a, _)| a == b"twice"));
    clear(&server, "udp_duplicate");
    assert_eq!(
        udp_answers(server.udp(), b"once", Duration::from_millis(500)).len(),
        1
    );
}

#[test]
fn udp_delay_under_a_datagram_flood_stays_bounded_and_clearing_discards_the_late() {
    let server = Server::start_training(
        &workspace_binary("echod"),
        &["--udp-rate-per-source", "0", "--udp-rate-global", "0"],
    );
    let base = peak_rss_mib(server.pid());
    set(&server, "udp_delay", &["delay=2s"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server.udp()).unwrap();
    let datagram = vec![7u8; 60_000];
    // 2,000 × 60 kB (120 MB) paced so that the service reads most of them: before, each
    // became its own task holding its answer (5,000 took RSS from 11 to 297 MiB).
    for i in 0..2_000 {
        socket.send(&datagram).unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let peak = peak_rss_mib(server.pid());
    let dropped = server.metric(
        "inetsvc_datagrams_dropped_total{reason=\"fault\",service=\"echo\",transport=\"udp\"}",
    );
    println!("peak RSS {base:.0} → {peak:.0} MiB, {dropped} late answers dropped");
    assert!(peak - base < 48.0, "peak RSS {base} → {peak} MiB");
    assert!(
        dropped >= 1.0,
        "the late queue filled and counted its drops"
    );
    clear(&server, "udp_delay");
    // Nothing that waited is sent after the clear.
    let late = udp_collect(&socket, Instant::now(), Duration::from_millis(2500));
    assert!(
        late.is_empty(),
        "{} answers sent after the clear",
        late.len()
    );
}

#[test]
fn udp_delay_sends_late_without_holding_others() {
    let server = start("echod");
    set(&server, "udp_delay", &["probability=1", "delay=600ms"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server.udp()).unwrap();
    let sent = Instant::now();
    socket.send(b"first").unwrap();
    socket.send(b"second").unwrap();
    let answers = udp_collect(&socket, sent, Duration::from_secs(2));
    assert_eq!(answers.len(), 2);
    assert!(answers
        .iter()
        .all(|(_, at)| *at >= Duration::from_millis(600)));
    // Both were delayed in parallel, not one after the other.
    assert!(
        answers[1].1 < Duration::from_millis(1100),
        "{:?}",
        answers[1].1
    );
    clear(&server, "udp_delay");
    assert!(
        udp_answers(server.udp(), b"now", Duration::from_millis(500))[0].1
            < Duration::from_millis(200)
    );
}

#[test]
fn udp_reorder_lets_a_later_answer_overtake() {
    let server = start("echod");
    set(&server, "udp_reorder", &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server.udp()).unwrap();
    let sent = Instant::now();
    socket.send(b"A").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    socket.send(b"B").unwrap();
    let order: Vec<Vec<u8>> = udp_collect(&socket, sent, Duration::from_millis(600))
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(order, vec![b"B".to_vec(), b"A".to_vec()]);
    // A lone held answer still goes out after the hold time.
    let answers = udp_answers(server.udp(), b"alone", Duration::from_secs(2));
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1 >= Duration::from_millis(900));
    clear(&server, "udp_reorder");
    socket.send(b"C").unwrap();
    socket.send(b"D").unwrap();
    let order: Vec<Vec<u8>> = udp_collect(&socket, Instant::now(), Duration::from_millis(300))
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(order, vec![b"C".to_vec(), b"D".to_vec()]);
}

#[test]
fn clock_offset_shifts_time_and_daytime() {
    let timed = start("timed");
    set(&timed, "clock_offset", &["offset=-90s"]);
    let offset = time_offset(timed.udp());
    assert!((-91..=-89).contains(&offset), "{offset}");
    clear(&timed, "clock_offset");
    assert!(time_offset(timed.udp()).abs() <= 1);

    let daytimed = Server::start_training(
        &workspace_binary("daytimed"),
        &["--daytime-format", "rfc3339"],
    );
    set(&daytimed, "clock_offset", &["offset=1h"]);
    let (answer, _) = tcp_answer(daytimed.tcp());
    let answer = String::from_utf8(answer.unwrap()).unwrap();
    let reported = chrono::DateTime::parse_from_rfc3339(answer.trim()).unwrap();
    let ahead = reported.timestamp() - chrono::Utc::now().timestamp();
    assert!((3599..=3601).contains(&ahead), "{answer}");
    clear(&daytimed, "clock_offset");
}

#[test]
fn clock_drift_grows_from_when_it_is_set() {
    let server = start("timed");
    // A second per second: easy to see with TIME's one-second resolution.
    set(&server, "clock_drift", &["ppm=1000000"]);
    std::thread::sleep(Duration::from_secs(3));
    let offset = time_offset(server.udp());
    assert!((2..=4).contains(&offset), "{offset}");
    clear(&server, "clock_drift");
    assert!(time_offset(server.udp()).abs() <= 1);
}

#[test]
fn clock_freeze_stops_the_reported_time() {
    let server = start("timed");
    set(&server, "clock_freeze", &[]);
    let first = time_answer(server.udp());
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(time_answer(server.udp()), first);
    clear(&server, "clock_freeze");
    assert!(time_offset(server.udp()).abs() <= 1);
}

#[test]
fn clock_wrap_crosses_the_2036_wrap_and_keeps_serving() {
    let server = start("timed");
    set(&server, "clock_wrap", &["before=2s"]);
    let before = time_answer(server.udp());
    assert!(before >= u32::MAX - 2, "{before}");
    std::thread::sleep(Duration::from_millis(2500));
    let after = time_answer(server.udp());
    assert!(after <= 2, "wrapped to the start of the next era: {after}");
    let (answer, _) = tcp_answer(server.tcp());
    assert_eq!(answer.unwrap().len(), 4, "TCP still answers four bytes");
    clear(&server, "clock_wrap");
    assert!(time_offset(server.udp()).abs() <= 1);
}

#[test]
fn not_ready_and_not_live_fail_the_health_endpoints() {
    let server = start("echod");
    let health = |check: &str| {
        server.metric(&format!(
            "inetsvc_health{{check=\"{check}\",service=\"echo\"}}"
        ))
    };
    set(&server, "not_ready", &[]);
    assert_eq!(server.get("/readyz").0, 503);
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(health("readiness"), 0.0);
    assert_eq!(round_trip(server.tcp(), b"still serving"), b"still serving");
    set(&server, "not_live", &["for=1s"]);
    assert_eq!(server.get("/healthz").0, 503);
    assert_eq!(health("liveness"), 0.0);
    clear(&server, "not_ready");
    assert_eq!(server.get("/readyz").0, 200);
    assert_eq!(health("readiness"), 1.0);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(server.get("/healthz").0, 200, "not_live expired");
    assert_eq!(health("liveness"), 1.0);
    assert!(!server.fault_active("not_live"));
}

fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    cpu_seconds(pid) - before
}

#[test]
fn cpu_load_burns_cpu_until_cleared() {
    let server = start("echod");
    set(&server, "cpu_load", &["threads=1", "duty=1", "for=1m"]);
    let busy = cpu_over(server.pid(), Duration::from_secs(1));
    assert!(busy >= 0.3, "{busy} CPU seconds in 1 s");
    clear(&server, "cpu_load");
    std::thread::sleep(Duration::from_millis(100));
    let idle = cpu_over(server.pid(), Duration::from_secs(1));
    assert!(idle < 0.2, "{idle} CPU seconds in 1 s after clearing");
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The most memory the process has ever held resident (its high-water mark).
fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024.0
}

#[test]
fn memory_load_holds_memory_until_cleared() {
    let server = start("echod");
    let base = rss_mib(server.pid());
    set(&server, "memory_load", &["mib=64"]);
    let loaded = rss_mib(server.pid());
    assert!(loaded - base >= 60.0, "{base} MiB → {loaded} MiB");
    clear(&server, "memory_load");
    let after = rss_mib(server.pid());
    assert!(
        after - base < 16.0,
        "{base} MiB → {after} MiB after clearing"
    );
}

#[test]
fn racing_memory_loads_hold_one_load_not_one_per_request() {
    let server = start("echod");
    let base = rss_mib(server.pid());
    // Eight requests at once, 128 MiB each: before, each allocated its own (1 GiB held).
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let admin = server.admin.unwrap();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(admin).unwrap();
                write!(
                    stream,
                    "PUT /admin/faults/memory_load HTTP/1.0\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 8\r\n\r\nmib=128\n"
                )
                .unwrap();
                read_to_close(stream).unwrap()
            })
        })
        .collect();
    for racer in racers {
        let answer = racer.join().unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.0 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let (loaded, peak) = (rss_mib(server.pid()), peak_rss_mib(server.pid()));
    println!("RSS {base:.0} MiB → {loaded:.0} MiB, peak {peak:.0} MiB");
    assert!(
        loaded - base >= 120.0,
        "{base} MiB → {loaded} MiB: the load is held"
    );
    assert!(
        peak - base < 200.0,
        "{base} MiB → peak {peak} MiB: one 128 MiB load at a time, never eight"
    );
    clear(&server, "memory_load");
}

#[test]
fn faults_expire_by_themselves() {
    let server = start("echod");
    set(&server, "udp_drop", &["for=500ms"]);
    assert!(udp_answers(server.udp(), b"x", Duration::from_millis(200)).is_empty());
    std::thread::sleep(Duration::from_millis(600));
    assert!(!server.fault_active("udp_drop"));
    assert_eq!(
        udp_answers(server.udp(), b"x", Duration::from_millis(500)).len(),
        1
    );
    assert!(server.fault(INETSVC, &["list"]).contains("no fault set"));
}
