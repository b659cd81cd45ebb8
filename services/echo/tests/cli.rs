//! The command line every service binary shares, run through `echod`: help, print-config,
//! healthcheck, and every way a configuration can be wrong (one line, exit code 2).

use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use std::time::Duration;

use inetsvc_testkit::{run_binary, run_tool, Server};

const ECHOD: &str = env!("CARGO_BIN_EXE_echod");

fn temp_file(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!("inetsvc-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Asserts a configuration error: exit code 2 and one stderr line that says `needles`.
fn assert_config_error(output: Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn help_documents_every_key_with_its_variable() {
    let output = run_binary(ECHOD, &["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    let printed = run_binary(ECHOD, &["--print-config"], &[]);
    let config = String::from_utf8_lossy(&printed.stdout);
    let keys: Vec<&str> = config
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(" = ").next())
        .collect();
    assert!(keys.len() >= 20, "{config}");
    for key in keys {
        assert!(
            help.contains(&format!("--{}", key.replace('_', "-"))),
            "{key}"
        );
        assert!(
            help.contains(&format!("INETSVC_{}", key.to_uppercase())),
            "{key}"
        );
    }
}

#[test]
fn print_config_shows_the_effective_layered_values() {
    let file = temp_file(
        "layers.toml",
        "max_connections = 10\nidle_timeout = \"7s\"\n",
    );
    let output = run_binary(
        ECHOD,
        &["--config", &file, "--print-config", "--idle-timeout", "9s"],
        &[
            ("INETSVC_MAX_CONNECTIONS", "20"),
            ("INETSVC_LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("max_connections = \"20\""), "{text}");
    assert!(text.contains("idle_timeout = \"9s\""), "{text}");
    assert!(text.contains("log_format = \"json\""), "{text}");
    assert!(
        text.contains("tcp_listen = \"[::]:7\""),
        "standard port by default: {text}"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_origin() {
    let file = temp_file("unknown.toml", "tcp_listem = \"127.0.0.1:7007\"\n");
    assert_config_error(
        run_binary(ECHOD, &["--config", &file], &[]),
        &["unknown key `tcp_listem`", "unknown.toml", "tcp_listen"],
    );
    assert_config_error(
        run_binary(ECHOD, &[], &[("INETSVC_IDLE", "1s")]),
        &["INETSVC_IDLE", "unknown key `idle`"],
    );
}

#[test]
fn bad_values_missing_files_and_broken_toml_exit_2() {
    assert_config_error(
        run_binary(ECHOD, &["--idle-timeout", "soon"], &[]),
        &["idle_timeout", "duration"],
    );
    assert_config_error(
        run_binary(ECHOD, &[], &[("INETSVC_MAX_CONNECTIONS", "many")]),
        &["max_connections", "whole number"],
    );
    assert_config_error(
        run_binary(ECHOD, &["--config", "/nonexistent/echod.toml"], &[]),
        &["/nonexistent/echod.toml", "--config"],
    );
    let broken = temp_file("broken.toml", "[[[\n");
    assert_config_error(
        run_binary(ECHOD, &["--config", &broken], &[]),
        &["broken.toml", "line 1"],
    );
    let usage = run_binary(ECHOD, &["--no-such-flag"], &[]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn a_port_in_use_is_named_with_the_fix() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    assert_config_error(
        run_binary(
            ECHOD,
            &[
                "--tcp-listen",
                &address,
                "--udp-listen",
                "off",
                "--admin-listen",
                "off",
            ],
            &[],
        ),
        &["tcp_listen", &address, "already in use", "--tcp-listen"],
    );
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    assert_config_error(
        run_binary(
            ECHOD,
            &[
                "--tcp-listen",
                "off",
                "--udp-listen",
                &address,
                "--admin-listen",
                "off",
            ],
            &[],
        ),
        &["udp_listen", &address, "already in use"],
    );
}

#[test]
fn a_privileged_port_without_privilege_says_how_to_choose_another() {
    let args = [
        "--tcp-listen",
        "127.0.0.1:7",
        "--udp-listen",
        "off",
        "--admin-listen",
        "off",
    ];
    // The test command runs as root; drop to nobody so that the bind is really refused.
    let is_root = run_tool("id", &["-u"], b"", std::time::Duration::from_secs(5)).stdout == b"0\n";
    let output = if is_root {
        let mut full = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            ECHOD,
        ];
        full.extend_from_slice(&args);
        run_tool("setpriv", &full, b"", std::time::Duration::from_secs(10))
    } else {
        run_binary(ECHOD, &args, &[])
    };
    assert_config_error(
        output,
        &[
            "tcp_listen",
            "127.0.0.1:7",
            "permission denied",
            "--tcp-listen [::]:",
        ],
    );
}

#[test]
fn healthcheck_passes_only_while_the_service_is_ready() {
    let server = Server::start(ECHOD, &[]);
    let admin = server.admin.unwrap().to_string();
    let ok = run_binary(ECHOD, &["healthcheck", "--admin-listen", &admin], &[]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The same key from the environment, as a container would set it.
    let ok = run_binary(ECHOD, &["healthcheck"], &[("INETSVC_ADMIN_LISTEN", &admin)]);
    assert_eq!(ok.status.code(), Some(0));
    drop(server);
    let down = run_binary(ECHOD, &["healthcheck", "--admin-listen", &admin], &[]);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

#[test]
fn the_startup_line_names_every_bound_address() {
    let server = Server::start(
        ECHOD,
        &[
            "--tcp-listen",
            "127.0.0.1:0,[::1]:0",
            "--udp-listen",
            "127.0.0.1:0,[::1]:0",
        ],
    );
    assert_eq!(server.tcp.len(), 2);
    assert_eq!(server.udp.len(), 2);
    assert!(server.tcp[1].is_ipv6() && server.udp[1].is_ipv6());
    assert!(server.admin.is_some());
}

#[test]
fn the_readme_documents_every_key() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the repository root");
    for binary in [
        ECHOD,
        &ECHOD.replace("echod", "daytimed"),
        &ECHOD.replace("echod", "timed"),
    ] {
        let printed = run_binary(binary, &["--print-config"], &[]);
        assert_eq!(printed.status.code(), Some(0), "{binary}");
        for line in String::from_utf8_lossy(&printed.stdout).lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    readme.contains(&format!("| `{key}` |")),
                    "README lacks {key}"
                );
            }
        }
    }
}

#[test]
fn an_empty_value_is_refused_naming_where_it_came_from() {
    // An unset shell variable must not turn the admin port (or a data port) off in silence.
    assert_config_error(
        run_binary(ECHOD, &["--print-config"], &[("INETSVC_ADMIN_LISTEN", "")]),
        &[
            "admin_listen",
            "environment variable INETSVC_ADMIN_LISTEN is empty",
        ],
    );
    assert_config_error(
        run_binary(ECHOD, &["--print-config", "--tcp-listen", " "], &[]),
        &["tcp_listen", "flag --tcp-listen is empty"],
    );
    let file = temp_file("empty.toml", "udp_listen = \"\"\n");
    assert_config_error(
        run_binary(ECHOD, &["--print-config", "--config", &file], &[]),
        &["udp_listen", "config file", "is empty"],
    );
    // `off` still turns a listener off, and keys whose default is empty may stay empty.
    let printed = run_binary(
        ECHOD,
        &["--print-config", "--udp-listen", "off"],
        &[("INETSVC_OTLP_ENDPOINT", "")],
    );
    assert_eq!(printed.status.code(), Some(0));
}

#[test]
fn a_config_or_token_path_that_is_no_regular_file_is_refused_at_once() {
    let fifo = std::env::temp_dir().join(format!("inetsvc-cli-{}-fifo", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = run_tool(
        "mkfifo",
        &[fifo.to_str().unwrap()],
        b"",
        Duration::from_secs(5),
    );
    assert!(made.status.success());
    let fifo = fifo.to_str().unwrap();
    // Before: both hung for ever waiting for a writer.
    let output = run_tool(
        ECHOD,
        &["--print-config", "--config", fifo],
        b"",
        Duration::from_secs(5),
    );
    assert_config_error(output, &["config file", "not a regular file"]);
    let output = run_tool(
        ECHOD,
        &[
            "--print-config",
            "--admin-api",
            "true",
            "--admin-token-file",
            fifo,
        ],
        b"",
        Duration::from_secs(5),
    );
    assert_config_error(output, &["admin_token_file", "not a regular file"]);
    let huge = temp_file("huge-token", &"a".repeat(100_000));
    assert_config_error(
        run_binary(
            ECHOD,
            &[
                "--print-config",
                "--admin-api",
                "true",
                "--admin-token-file",
                &huge,
            ],
            &[],
        ),
        &["admin_token_file", "more than the 4096"],
    );
    let _ = std::fs::remove_file(fifo);
}
