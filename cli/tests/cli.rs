//! `inetsvc` end to end: every client subcommand against the project's servers and
//! against xinetd's internal services, every failure path with its exit code and reason,
//! `probe` in all its formats, and tiny bounded `bench` runs.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use std::time::Duration;

use inetsvc_testkit::{promtool_check_metrics, run_binary, workspace_binary, Server, Xinetd};

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

/// The three project servers on loopback.
struct Set {
    echo: Server,
    daytime: Server,
    time: Server,
}

fn start_set() -> Set {
    Set {
        echo: Server::start(&workspace_binary("echod"), &[]),
        daytime: Server::start(&workspace_binary("daytimed"), &[]),
        time: Server::start(&workspace_binary("timed"), &[]),
    }
}

fn inetsvc(args: &[&str]) -> Output {
    run_binary(INETSVC, args, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
}

/// Asserts exit code 1 with one stderr line containing `reason`.
fn assert_failure(output: &Output, reason: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {text}");
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.contains(reason), "{reason:?} not in {text:?}");
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[test]
fn clients_talk_to_the_project_servers_over_tcp_and_udp() {
    let set = start_set();
    for udp in [false, true] {
        let mode: &[&str] = if udp { &["--udp"] } else { &[] };
        let echo = set.echo.tcp().to_string();
        let out = inetsvc(&[&["echo", &echo, "--json", "--size", "1000"], mode].concat());
        assert_ok(&out);
        assert_eq!(json(&out)["bytes"], 1000);

        let daytime = set.daytime.tcp().to_string();
        let out = inetsvc(&[&["daytime", &daytime], mode].concat());
        assert_ok(&out);
        assert!(stdout(&out).trim().ends_with(" 2026") || stdout(&out).len() > 20);

        let time = set.time.tcp().to_string();
        let out = inetsvc(&[&["time", &time, "--json"], mode].concat());
        assert_ok(&out);
        let offset = json(&out)["offset_seconds"].as_f64().unwrap();
        assert!(offset.abs() < 2.0, "offset {offset}");
    }
}

#[test]
fn clients_talk_to_the_project_servers_over_ipv6() {
    let listen = format!("[::1]:{}", inetsvc_testkit::free_port());
    let echo = Server::start(
        &workspace_binary("echod"),
        &["--tcp-listen", &listen, "--udp-listen", &listen],
    );
    let target = format!("[::1]:{}", echo.tcp().port());
    assert_ok(&inetsvc(&["echo", &target]));
    assert_ok(&inetsvc(&["echo", "--udp", &target]));
}

#[test]
fn clients_talk_to_xinetd_internal_services() {
    let xinetd = Xinetd::start();
    for udp in [false, true] {
        let mode: &[&str] = if udp { &["--udp"] } else { &[] };
        let echo = format!("127.0.0.1:{}", xinetd.echo);
        assert_ok(&inetsvc(&[&["echo", &echo], mode].concat()));
        let daytime = format!("127.0.0.1:{}", xinetd.daytime);
        assert_ok(&inetsvc(&[&["daytime", &daytime], mode].concat()));
        let time = format!("127.0.0.1:{}", xinetd.time);
        let out = inetsvc(&[&["time", &time, "--json"], mode].concat());
        assert_ok(&out);
        assert!(json(&out)["offset_seconds"].as_f64().unwrap().abs() < 2.0);
    }
    // The probe understands xinetd's DAYTIME format too.
    let out = inetsvc(&[
        "probe",
        "--echo",
        &xinetd.echo.to_string(),
        "--daytime",
        &xinetd.daytime.to_string(),
        "--time",
        &xinetd.time.to_string(),
    ]);
    assert_ok(&out);
}

#[test]
fn a_refused_connection_is_exit_1_with_a_reason() {
    let port = inetsvc_testkit::free_port().to_string();
    let target = format!("127.0.0.1:{port}");
    assert_failure(&inetsvc(&["daytime", &target]), "connection refused");
    // UDP too: the ICMP port-unreachable reads as refused on a connected socket.
    assert_failure(&inetsvc(&["time", "--udp", &target]), "connection refused");
}

#[test]
fn a_silent_server_is_a_timeout() {
    let silent_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent_udp.local_addr().unwrap().to_string();
    let out = inetsvc(&[
        "time",
        "--udp",
        "--timeout",
        "200ms",
        "--retries",
        "1",
        &target,
    ]);
    assert_failure(&out, "no answer");
    assert!(stderr(&out).contains("2 tries"));

    let silent_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = silent_tcp.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (conn, _) = silent_tcp.accept().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(conn);
    });
    assert_failure(
        &inetsvc(&["daytime", "--timeout", "300ms", &target]),
        "no answer",
    );
    holder.join().unwrap();
}

/// A TCP server that answers its first connection with `answer` (ignoring input) and, if
/// `echo_corrupted`, echoes with one byte changed instead.
fn fake_tcp_server(answer: Vec<u8>, echo_corrupted: bool) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        if echo_corrupted {
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got[0] ^= 0xff;
            conn.write_all(&got).unwrap();
        } else {
            conn.write_all(&answer).unwrap();
        }
    });
    (target, handle)
}

#[test]
fn a_short_or_long_time_answer_is_a_protocol_failure() {
    for answer in [vec![1u8, 2, 3], vec![0u8; 8]] {
        let len = answer.len();
        let (target, server) = fake_tcp_server(answer, false);
        let out = inetsvc(&["time", &target]);
        assert_failure(&out, &format!("expected exactly 4, got {len} bytes"));
        server.join().unwrap();
    }
}

#[test]
fn a_corrupted_echo_is_a_protocol_failure() {
    let (target, server) = fake_tcp_server(Vec::new(), true);
    let out = inetsvc(&["echo", &target, "--json"]);
    assert_failure(&out, "first difference at byte 0");
    assert_eq!(json(&out)["ok"], false);
    server.join().unwrap();
}

#[test]
fn usage_errors_are_exit_2() {
    assert_eq!(inetsvc(&["echo"]).status.code(), Some(2));
    assert_eq!(inetsvc(&["echo", "host:chargen"]).status.code(), Some(2));
    assert_eq!(inetsvc(&["bogus"]).status.code(), Some(2));
    assert_eq!(
        inetsvc(&["probe", "--only", "finger"]).status.code(),
        Some(2)
    );
}

fn probe_args(set: &Set) -> Vec<String> {
    vec![
        "probe".into(),
        "--echo".into(),
        set.echo.tcp().port().to_string(),
        "--daytime".into(),
        set.daytime.tcp().port().to_string(),
        "--time".into(),
        set.time.tcp().port().to_string(),
    ]
}

#[test]
fn probe_passes_in_every_format_and_fails_when_a_service_stops() {
    let mut set = start_set();
    let args = probe_args(&set);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let table = inetsvc(&args);
    assert_ok(&table);
    assert_eq!(
        stdout(&table).matches(" ok ").count(),
        6,
        "{}",
        stdout(&table)
    );

    let out = inetsvc(&[&args[..], &["--format", "json"]].concat());
    assert_ok(&out);
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 6);

    let out = inetsvc(&[&args[..], &["--format", "prometheus"]].concat());
    assert_ok(&out);
    promtool_check_metrics(&stdout(&out)).unwrap();
    assert_eq!(stdout(&out).matches("inetsvc_probe_success{").count(), 6);

    // Stop TIME: the probe fails, names it, and still reports the others.
    set.time.signal("TERM");
    set.time
        .wait_exit(Duration::from_secs(10))
        .expect("timed exits");
    let out = inetsvc(&[&args[..], &["--format", "json", "--timeout", "300ms"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    let failed: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["service"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(failed, ["time", "time"]);
    assert!(stderr(&out).contains("time over tcp"));
    // The exporter's text says why: refused over TCP (a reset), refused or timed out over
    // UDP (an ICMP port unreachable, if the kernel sends one in time).
    let out = inetsvc(&[&args[..], &["--format", "prometheus", "--timeout", "300ms"]].concat());
    let text = stdout(&out);
    promtool_check_metrics(&text).unwrap();
    assert!(
        text.contains(
            "inetsvc_probe_failure{service=\"time\",transport=\"tcp\",reason=\"refused\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "inetsvc_probe_failure{service=\"echo\",transport=\"tcp\",reason=\"refused\"} 0"
    ));
    assert_eq!(text.matches("inetsvc_probe_failure{").count(), 6 * 8);
}

/// A TCP listener that never accepts and a UDP socket that never answers, on one port.
fn stalled_port() -> (TcpListener, UdpSocket, u16) {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            return (tcp, udp, port);
        }
    }
}

#[test]
fn probe_checks_run_at_once_within_the_budget_when_every_service_stalls() {
    let stalled: Vec<_> = (0..3).map(|_| stalled_port()).collect();
    let ports: Vec<String> = stalled
        .iter()
        .map(|(_, _, port)| port.to_string())
        .collect();
    // Each check can take up to 2 s (UDP: 2 sends × 1 s; TCP: connect, then 1 s per read):
    // in turn, six would take about 12 s; at once, about 2 s.
    let started = std::time::Instant::now();
    let out = inetsvc(&[
        "probe",
        "--echo",
        &ports[0],
        "--daytime",
        &ports[1],
        "--time",
        &ports[2],
        "--timeout",
        "1s",
        "--retries",
        "1",
        "--budget",
        "4s",
        "--format",
        "prometheus",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        took < Duration::from_millis(3900),
        "the probe took {took:?}"
    );
    let text = stdout(&out);
    for service in ["echo", "daytime", "time"] {
        for transport in ["tcp", "udp"] {
            let line = format!(
                "inetsvc_probe_failure{{service=\"{service}\",transport=\"{transport}\",reason=\"timeout\"}} 1"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
    }
    // A budget shorter than one check's own timeouts is refused, not clamped.
    let out = inetsvc(&[
        "probe",
        "--echo",
        &ports[0],
        "--timeout",
        "2s",
        "--retries",
        "2",
        "--budget",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--budget 5s"), "{}", stderr(&out));
    drop(stalled);
}

/// A one-connection TCP server for `service` that reads what the client sends (ECHO's
/// question), answers `answer(now)` and closes; and `inetsvc probe` of it over TCP with
/// `more` arguments.
fn probe_a_tcp_server_answering(
    service: &'static str,
    answer: impl FnOnce(std::time::SystemTime) -> Vec<u8> + Send + 'static,
    more: &[&str],
) -> Output {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        if service == "echo" {
            let mut question = [0u8; 64];
            let _ = conn.read(&mut question);
        }
        conn.write_all(&answer(std::time::SystemTime::now()))
            .unwrap();
    });
    let port = port.to_string();
    let flag = format!("--{service}");
    let args = [
        "probe",
        "--only",
        service,
        "--transport",
        "tcp",
        &flag,
        &port,
    ];
    let out = inetsvc(&[&args[..], more].concat());
    server.join().unwrap();
    out
}

/// A one-connection TIME server over TCP whose clock is `offset` seconds off, and
/// `inetsvc probe` of it with `more` arguments.
fn probe_a_skewed_time_server(offset: i64, more: &[&str]) -> Output {
    probe_a_tcp_server_answering(
        "time",
        move |now| {
            let shift = std::time::Duration::from_secs(offset.unsigned_abs());
            let clock = if offset >= 0 {
                now + shift
            } else {
                now - shift
            };
            inetsvc_proto::time::encode(clock).to_vec()
        },
        more,
    )
}

#[test]
fn the_exporter_text_names_each_wrong_answer_shape() {
    // What broken servers have sent: an 8-byte TIME (sizeof(long) on 64-bit machines), an
    // echo of something else, a DAYTIME answer that is binary and has no line end.
    type Answer = fn(std::time::SystemTime) -> Vec<u8>;
    let cases: [(&'static str, Answer, &str); 3] = [
        (
            "time",
            |now| {
                let mut eight = vec![0; 4];
                eight.extend(inetsvc_proto::time::encode(now));
                eight
            },
            "wrong_length",
        ),
        ("echo", |_| b"not what you sent".to_vec(), "mismatch"),
        ("daytime", |_| vec![0xff, 0x00, 0x07, b'x'], "not_a_line"),
    ];
    for (service, answer, reason) in cases {
        let out = probe_a_tcp_server_answering(service, answer, &["--format", "prometheus"]);
        assert_eq!(out.status.code(), Some(1), "{service}");
        let text = stdout(&out);
        promtool_check_metrics(&text).unwrap();
        let failed: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("inetsvc_probe_failure{") && line.ends_with(" 1"))
            .collect();
        assert_eq!(
            failed,
            [format!(
                "inetsvc_probe_failure{{service=\"{service}\",transport=\"tcp\",reason=\"{reason}\"}} 1"
            )],
            "{text}"
        );
    }
}

#[test]
fn probe_fails_on_clock_skew_beyond_the_tolerance() {
    // A TIME server ten minutes fast.
    let out = probe_a_skewed_time_server(600, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("exceeds the tolerance"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_exporter_text_tells_a_wrong_clock_from_no_answer() {
    // Four seconds slow: answered, but beyond the 2 s tolerance.
    let out = probe_a_skewed_time_server(-4, &["--format", "prometheus"]);
    let text = stdout(&out);
    assert!(
        text.contains(
            "inetsvc_probe_failure{service=\"time\",transport=\"tcp\",reason=\"skew\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "inetsvc_probe_failure{service=\"time\",transport=\"tcp\",reason=\"timeout\"} 0"
    ));
}

#[test]
fn bench_tiny_runs_produce_valid_json_reports() {
    let set = start_set();
    let echo = set.echo.tcp().to_string();
    let time = set.time.tcp().to_string();
    let daytime = set.daytime.tcp().to_string();
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "bench", &echo, "--mode", "echo-tcp", "-c", "4", "-n", "200", "--json",
        ],
        vec![
            "bench", &echo, "--mode", "echo-udp", "-c", "2", "-n", "100", "--json",
        ],
        vec![
            "bench", &time, "--mode", "connect", "--expect", "time", "-c", "2", "-n", "50",
            "--json",
        ],
        vec![
            "bench", &daytime, "--mode", "connect", "--expect", "daytime", "-c", "2", "-d",
            "300ms", "--json",
        ],
        vec![
            "bench", &echo, "--mode", "hold", "-c", "20", "-d", "500ms", "--json",
        ],
    ];
    for args in runs {
        let out = inetsvc(&args);
        assert_ok(&out);
        let report = json(&out);
        for field in [
            "mode",
            "requests",
            "throughput_per_second",
            "latency_us",
            "errors",
            "duration_seconds",
        ] {
            assert!(!report[field].is_null(), "{field} missing in {report}");
        }
        let latency = &report["latency_us"];
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(latency[p].as_u64().unwrap() > 0, "{p} in {report}");
        }
        assert!(latency["p50"].as_u64() <= latency["p99"].as_u64());
        match report["mode"].as_str().unwrap() {
            "hold" => assert_eq!(report["held"], 20, "{report}"),
            "connect" if args.contains(&"-n") => assert_eq!(report["requests"], 50),
            "echo-tcp" => assert_eq!(report["requests"], 200),
            "echo-udp" => {
                assert_eq!(
                    report["requests"].as_u64().unwrap() + report["lost"].as_u64().unwrap(),
                    100
                )
            }
            _ => assert!(report["requests"].as_u64().unwrap() > 0),
        }
    }
}

#[test]
fn bench_against_nothing_fails_with_errors_counted() {
    let port = inetsvc_testkit::free_port();
    let target = format!("127.0.0.1:{port}");
    let out = inetsvc(&["bench", &target, "-c", "2", "-d", "300ms", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["errors"]["refused"].as_u64().unwrap() > 0);
}
