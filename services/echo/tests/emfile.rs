//! Out of file descriptors (EMFILE): the accept loop backs off instead of spinning a core,
//! and recovers by itself once descriptors free up.
//!
//! This file holds one test because it lowers the whole test process's open-file limit;
//! it drives the runtime's listener directly, with the ECHO service behind it.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use inetsvc_echo::Echo;
use inetsvc_runtime::testing::TcpLoop;

/// CPU seconds this process has used, through `/proc/self/stat` opened beforehand (no
/// descriptor can be opened once they are used up).
fn cpu_seconds(proc_stat: &mut std::fs::File) -> f64 {
    use std::io::Seek;
    let mut stat = String::new();
    proc_stat.rewind().unwrap();
    proc_stat.read_to_string(&mut stat).unwrap();
    inetsvc_testkit::cpu_seconds_in(&stat)
}

#[test]
fn emfile_backs_off_without_spinning_and_recovers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The accept loop exactly as echod builds it, with caps far above what this test opens.
    let server = TcpLoop::start::<Echo>(
        &runtime,
        &[
            "--max-connections",
            "100000",
            "--max-connections-per-source",
            "100000",
        ],
    );
    let address = server.address();

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

    let exposition = server.metrics();
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
    drop(server);
}
