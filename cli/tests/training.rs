//! The training scenarios of docs/training/, each checked end to end: the real services,
//! the real prober and a real Prometheus evaluating the project's own rules (their
//! windows and `for` durations compressed 30×, expressions and thresholds unchanged).
//! Injecting the scenario makes the alert its document names fire; the fix the document
//! gives makes it resolve.

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inetsvc_testkit::prometheus::{repo, Prober, Prometheus, Targets};
use inetsvc_testkit::{workspace_binary, Server};

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");

/// Rule windows and `for` durations are divided by this.
const COMPRESSION: u64 = 30;

/// Longest wait for an alert to fire or resolve.
const PATIENCE: Duration = Duration::from_secs(90);

/// One scenario's world: the three services (fault API on), the prober, Prometheus.
struct Exercise {
    echo: Server,
    daytime: Server,
    time: Server,
    _prober: Prober,
    prometheus: Prometheus,
}

impl Exercise {
    /// Starts everything; `args` go to every service (as the training overlay's settings
    /// would), `probe` to the prober.
    fn start(args: &[&str], probe: &[&str]) -> Exercise {
        let start = |name: &str| Server::start_training(&workspace_binary(name), args);
        let (echo, daytime, time) = (start("echod"), start("daytimed"), start("timed"));
        let prober = Prober::start(INETSVC, &[echo.tcp(), daytime.tcp(), time.tcp()], probe);
        let services: Vec<String> = [&echo, &daytime, &time]
            .iter()
            .map(|s| s.admin.unwrap().to_string())
            .collect();
        let prometheus = Prometheus::start(
            &Targets {
                services: &services,
                prober: &prober.address,
            },
            COMPRESSION,
        );
        prometheus.wait_up("inetsvc", 3);
        prometheus.wait_up("inetsvc-probe", 1);
        Exercise {
            echo,
            daytime,
            time,
            _prober: prober,
            prometheus,
        }
    }

    fn firing_for(&self, alert: &str, service: &str) -> bool {
        self.prometheus
            .firing(alert)
            .iter()
            .any(|labels| labels["service"] == service)
    }

    /// Waits until `alert` fires for `service`.
    fn fires(&self, alert: &str, service: &str) {
        self.prometheus
            .wait_for(&format!("{alert} fires for {service}"), PATIENCE, || {
                self.firing_for(alert, service)
            });
    }

    /// Waits until `alert` no longer fires (nor is pending) for `service`.
    fn resolves(&self, alert: &str, service: &str) {
        self.prometheus
            .wait_for(&format!("{alert} resolves for {service}"), PATIENCE, || {
                self.prometheus.count(&format!(
                    "ALERTS{{alertname=\"{alert}\",service=\"{service}\"}}"
                )) == 0
            });
    }
}

/// The scenario document names its alert, so the docs and this check cannot drift apart.
fn scenario_names(scenario: &str, alert: &str) {
    let path = repo().join(format!("docs/training/{scenario}.md"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(&format!("`{alert}`")),
        "{} does not name {alert}",
        path.display()
    );
}

/// Client traffic: a TCP connection to `server` every `every`, answer read to the end,
/// errors ignored; bounded in time, stopped by the flag.
fn clients(server: SocketAddr, every: Duration) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(server) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.read_to_end(&mut Vec::new());
            }
            std::thread::sleep(every);
        }
    });
    (stop, handle)
}

fn stop((flag, handle): (Arc<AtomicBool>, JoinHandle<()>)) {
    flag.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn clock_skew_fires_inetsvc_clock_skew() {
    scenario_names("clock-skew", "InetsvcClockSkew");
    let exercise = Exercise::start(&[], &["--only", "time"]);
    exercise
        .time
        .fault(INETSVC, &["set", "clock_offset", "offset=45s"]);
    exercise.fires("InetsvcClockSkew", "time");
    exercise.fires("InetsvcFaultInjected", "time");
    exercise.time.fault(INETSVC, &["clear", "clock_offset"]);
    exercise.resolves("InetsvcClockSkew", "time");
    exercise.resolves("InetsvcFaultInjected", "time");
}

#[test]
fn udp_echo_loop_fires_inetsvc_udp_loop_guard_drops() {
    scenario_names("udp-echo-loop", "InetsvcUdpLoopGuardDrops");
    let exercise = Exercise::start(&[], &["--only", "echo"]);
    // A chargen-like peer: datagrams from source port 19, as in CERT CA-1996-01. Binding
    // a port below 1024 needs root, which the test command runs as.
    let chargen = UdpSocket::bind("127.0.0.1:19")
        .expect("binding UDP port 19 needs root; the README test command runs as root");
    let deadline = Instant::now() + PATIENCE;
    while !exercise.firing_for("InetsvcUdpLoopGuardDrops", "echo") {
        assert!(
            Instant::now() < deadline,
            "InetsvcUdpLoopGuardDrops never fired"
        );
        for _ in 0..5 {
            chargen
                .send_to(b"!\"#$%&'()*+,-./", exercise.echo.udp())
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        exercise.echo.metric("inetsvc_datagrams_dropped_total{reason=\"loop_port\",service=\"echo\",transport=\"udp\"}") > 0.0
    );
    // The fix: the source is blocked upstream; nothing more arrives.
    drop(chargen);
    exercise.resolves("InetsvcUdpLoopGuardDrops", "echo");
}

#[test]
fn connection_exhaustion_fires_inetsvc_connections_rejected() {
    scenario_names("connection-exhaustion", "InetsvcConnectionsRejected");
    scenario_names("connection-exhaustion", "InetsvcConnectionsNearCap");
    let exercise = Exercise::start(&["--max-connections", "20"], &["--only", "echo"]);
    // Someone holds every connection the service allows and never lets go.
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(exercise.echo.tcp()).unwrap())
        .collect();
    exercise.echo.wait_metric(
        "inetsvc_connections_active{service=\"echo\",transport=\"tcp\"}",
        20.0,
        Duration::from_secs(5),
    );
    let others = clients(exercise.echo.tcp(), Duration::from_millis(100));
    exercise.fires("InetsvcConnectionsRejected", "echo");
    exercise.fires("InetsvcConnectionsNearCap", "echo");
    exercise.fires("InetsvcProbeFailing", "echo");
    // The fix: the holder is cut off (its connections close).
    drop(held);
    exercise.resolves("InetsvcConnectionsNearCap", "echo");
    exercise.resolves("InetsvcConnectionsRejected", "echo");
    stop(others);
}

#[test]
fn bad_rollout_fires_inetsvc_error_rate_high() {
    scenario_names("bad-rollout", "InetsvcErrorRateHigh");
    let exercise = Exercise::start(&[], &["--only", "daytime"]);
    let traffic = clients(exercise.daytime.tcp(), Duration::from_millis(50));
    // The new release resets half of its connections.
    exercise
        .daytime
        .fault(INETSVC, &["set", "tcp_reset", "probability=0.5"]);
    exercise.fires("InetsvcErrorRateHigh", "daytime");
    // The fix: roll back.
    exercise.daytime.fault(INETSVC, &["clear", "tcp_reset"]);
    exercise.resolves("InetsvcErrorRateHigh", "daytime");
    stop(traffic);
}

#[test]
fn liveness_flapping_fires_inetsvc_liveness_failing() {
    scenario_names("liveness-flapping", "InetsvcLivenessFailing");
    let exercise = Exercise::start(&[], &["--only", "echo"]);
    // Flapping: failing, passing, failing again.
    for _ in 0..2 {
        exercise.echo.fault(INETSVC, &["set", "not_live", "for=2s"]);
        std::thread::sleep(Duration::from_secs(3));
    }
    exercise.fires("InetsvcLivenessFailing", "echo");
    assert_eq!(
        exercise.echo.get("/healthz").0,
        200,
        "the last failure expired"
    );
    exercise.resolves("InetsvcLivenessFailing", "echo");
}

#[test]
fn latency_slo_burn_fires_inetsvc_latency_slo_burn() {
    scenario_names("latency-slo-burn", "InetsvcLatencySLOBurn");
    let exercise = Exercise::start(&[], &["--only", "time"]);
    let traffic = clients(exercise.time.tcp(), Duration::from_millis(50));
    exercise
        .time
        .fault(INETSVC, &["set", "latency", "delay=150ms", "jitter=50ms"]);
    exercise.fires("InetsvcLatencySLOBurn", "time");
    exercise.time.fault(INETSVC, &["clear", "latency"]);
    exercise.resolves("InetsvcLatencySLOBurn", "time");
    stop(traffic);
}

#[test]
fn udp_loss_fires_inetsvc_probe_failing() {
    scenario_names("udp-loss", "InetsvcProbeFailing");
    let exercise = Exercise::start(&[], &["--only", "echo"]);
    exercise
        .echo
        .fault(INETSVC, &["set", "udp_drop", "probability=1"]);
    exercise.fires("InetsvcProbeFailing", "echo");
    let failing = exercise.prometheus.firing("InetsvcProbeFailing");
    assert!(
        failing.iter().all(|labels| labels["transport"] == "udp"),
        "only UDP fails: {failing:?}"
    );
    exercise.echo.fault(INETSVC, &["clear", "udp_drop"]);
    exercise.resolves("InetsvcProbeFailing", "echo");
}
