//! Reloading the configuration while serving: on SIGHUP, `POST /admin/reload` and a change
//! of the `--config` file; live keys apply to new work, nothing in progress is dropped, an
//! invalid file changes nothing, and a key that needs a restart is named.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use inetsvc_testkit::{echoes_on, Server, ADMIN_TOKEN};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

/// A config file of this test process, rewritten whole on each call.
fn write_config(name: &str, text: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("inetsvc-reload-{}-{name}.toml", std::process::id()));
    // Written beside and renamed, as a Kubernetes ConfigMap update swaps its file.
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, &path).unwrap();
    path.to_string_lossy().into_owned()
}

/// Whether a new connection is served (echoes) rather than refused with a reset.
fn admitted(server: &Server) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(server.tcp()).ok()?;
    echoes_on(&mut stream, b"in?").then_some(stream)
}

fn wait_log(server: &Server, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = server.log().join("\n");
        if log.contains(needle) || Instant::now() > deadline {
            assert!(log.contains(needle), "no {needle:?} in: {log}");
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_applies_a_lowered_per_source_cap_to_new_connections_and_keeps_the_old() {
    let file = write_config("cap", "max_connections_per_source = 4\n");
    let mut server = Server::start(ECHOD, &["--config", &file]);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| admitted(&server).expect("under the cap"))
        .collect();
    write_config("cap", "max_connections_per_source = 2\n");
    server.signal("HUP");
    wait_log(&server, "configuration reloaded", Duration::from_secs(5));
    for stream in &mut held {
        assert!(
            echoes_on(stream, b"kept"),
            "a connection admitted before is kept"
        );
    }
    assert!(
        admitted(&server).is_none(),
        "3 held ≥ the new cap of 2: refused"
    );
    held.truncate(1);
    std::thread::sleep(Duration::from_millis(200));
    let second = admitted(&server).expect("1 held < 2: admitted");
    assert!(admitted(&server).is_none(), "2 held: refused again");
    drop(second);
    assert_eq!(
        server.metric("inetsvc_config_generation{service=\"echo\"}"),
        2.0
    );
    assert_eq!(
        server.metric("inetsvc_config_last_reload_success{service=\"echo\"}"),
        1.0
    );
    assert!(
        server.wait_exit(Duration::from_millis(100)).is_none(),
        "still running"
    );
}

#[test]
fn an_invalid_file_is_refused_whole_and_the_old_configuration_stays() {
    let file = write_config("broken", "max_connections_per_source = 1\n");
    let mut server = Server::start(ECHOD, &["--config", &file]);
    let held = admitted(&server).expect("first");
    // One good key and one bad: neither applies.
    write_config(
        "broken",
        "max_connections_per_source = 50\nidle_timeout = \"soon\"\n",
    );
    server.signal("HUP");
    let log = wait_log(&server, "reload refused", Duration::from_secs(5));
    assert!(
        log.contains("idle_timeout"),
        "the error names the key: {log}"
    );
    assert!(
        admitted(&server).is_none(),
        "the old per-source cap of 1 stays"
    );
    assert_eq!(
        server.metric("inetsvc_config_generation{service=\"echo\"}"),
        1.0
    );
    assert_eq!(
        server.metric("inetsvc_config_last_reload_success{service=\"echo\"}"),
        0.0
    );
    drop(held);
    assert!(
        server.wait_exit(Duration::from_millis(100)).is_none(),
        "still running"
    );
}

#[test]
fn a_key_that_needs_a_restart_is_named_and_the_rest_still_applies() {
    let file = write_config("mixed", "max_connections_per_source = 1\n");
    let server = Server::start(ECHOD, &["--config", &file]);
    let held = admitted(&server).expect("first");
    write_config(
        "mixed",
        "max_connections_per_source = 2\ntcp_concurrency = \"iterative\"\n",
    );
    server.signal("HUP");
    let log = wait_log(&server, "configuration reloaded", Duration::from_secs(5));
    assert!(
        log.contains("\"key\":\"tcp_concurrency\"") && log.contains("only after a restart"),
        "{log}"
    );
    let second = admitted(&server).expect("the new per-source cap of 2 applies");
    // Still concurrent: both sessions are served at once.
    let mut both = [held, second];
    for stream in &mut both {
        assert!(echoes_on(stream, b"both"));
    }
}

#[test]
fn the_admin_api_and_a_changed_file_reload_too() {
    let file = write_config("api", "udp_rate_per_source = 500\n");
    let server = Server::start_training(ECHOD, &["--config", &file]);
    let admin = server.admin.unwrap();
    // A change the file poll cannot see (same length, the old time), so that only the API
    // call can apply it. The old time is set before the rename: set after it, a poll
    // between the two saw the new time and applied the change itself.
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let next = std::path::Path::new(&file).with_extension("next");
    std::fs::write(&next, "udp_rate_per_source = 100\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&next)
        .unwrap()
        .set_modified(before)
        .unwrap();
    std::fs::rename(&next, &file).unwrap();
    let answer = inetsvc_testkit::http_request(
        admin,
        &format!("POST /admin/reload HTTP/1.0\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(
        answer.contains("\"applied\":[\"udp_rate_per_source\"]"),
        "{answer}"
    );
    let unauthorized = inetsvc_testkit::http_request(
        admin,
        "POST /admin/reload HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(unauthorized.starts_with("HTTP/1.0 401"), "{unauthorized}");
    // An edit of the file alone is noticed within the poll interval (2 s).
    write_config("api", "udp_rate_per_source = 200\n");
    server.wait_metric(
        "inetsvc_config_generation{service=\"echo\"}",
        3.0,
        Duration::from_secs(6),
    );
    let log = server.log().join("\n");
    assert!(log.contains("\"cause\":\"config file changed\""), "{log}");
}
