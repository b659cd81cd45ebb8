//! Out of file descriptors (EMFILE): the accept loop backs off instead of spinning a core,
//! and recovers by itself once descriptors free up.
//!
//! This file holds one test because it lowers the whole test process's open-file limit;
//! it drives the runtime's listener directly, with the ECHO service behind it.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use inetsvc_echo::Echo;
use inetsvc_runtime::conn::ConnSettings;
use inetsvc_runtime::listener::{bind_tcp, ConnectionCaps, TcpServer};
use inetsvc_runtime::metrics::{Metrics, Transport};
use inetsvc_runtime::SystemClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` opened
/// beforehand (no descriptor can be opened once they are used up).
fn cpu_seconds(proc_stat: &mut std::fs::File) -> f64 {
    use std::io::Seek;
    let mut stat = String::new();
    proc_stat.rewind().unwrap();
    proc_stat.read_to_string(&mut stat).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

#[test]
fn emfile_backs_off_without_spinning_and_recovers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = Metrics::new("test", "0");
    let meter = metrics.transport(Transport::Tcp);
    let listener = runtime
        .block_on(async { bind_tcp("tcp_listen", "127.0.0.1:0".parse().unwrap()) })
        .unwrap();
    let address = listener.local_addr().unwrap();
    let server = TcpServer {
        listener,
        service: Arc::new(Echo),
        conn: ConnSettings {
            meter,
            clock: Arc::new(SystemClock),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            close_linger: Duration::from_millis(100),
            buffer_size: 1024,
            faults: inetsvc_runtime::fault::Faults::new(None),
        },
        caps: ConnectionCaps::new(100_000, 100_000),
        max_connection_time: Duration::from_secs(600),
        spans: inetsvc_runtime::telemetry::Sampler::never(),
        trace_ids: false,
        name: "test",
        concurrency: inetsvc_runtime::concurrency::TcpConcurrency::Concurrent,
    };
    let stop = CancellationToken::new();
    runtime.spawn(server.run(stop.clone(), TaskTracker::new()));

    // Leave this process about 200 descriptors, then use them all up with connections to
    // the server: each costs one descriptor on our side and one for the server's accept.
    let mut proc_stat = std::fs::File::open("/proc/self/stat").unwrap();
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(rlimit::Resource::NOFILE, open_now + 200, hard).unwrap();
    let mut clients = Vec::new();
    loop {
        match TcpStream::connect(address) {
            Ok(stream) => clients.push(stream),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(24), "stopped by EMFILE: {error}");
                break;
            }
        }
        assert!(clients.len() < 10_000, "the descriptor limit never bit");
    }
    // Connections are now waiting in the backlog that the server cannot accept.
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(&mut proc_stat);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(&mut proc_stat) - before;
    assert!(
        used < 0.3,
        "the accept loop used {used:.2} s of CPU in 2 s while out of descriptors"
    );

    // Free descriptors: the server recovers by itself and serves a new client.
    let held = clients.len();
    clients.truncate(held / 4);
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut fresh = TcpStream::connect(address).unwrap();
    assert!(inetsvc_testkit::echoes_on(&mut fresh, b"back"));

    let exposition = metrics.render();
    let accept_errors: f64 = exposition
        .lines()
        .find(|l| l.starts_with("inetsvc_errors_total{kind=\"accept\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(accept_errors >= 1.0, "EMFILE was counted");
    assert!(
        accept_errors < 50.0,
        "{accept_errors} accept errors in ~2 s: backoff, not a retry storm"
    );
    stop.cancel();
}
