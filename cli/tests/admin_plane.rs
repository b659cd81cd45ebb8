//! The admin plane's game-day parts on real services: the two roles, the audit trail, live
//! settings through the API, `deny_sources`, and faults tied to a setting — including
//! what a hostile or careless client tries (a trainee on the fault routes, a non-live or
//! unknown key, a bad value, a forged actor header, an oversized value).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use inetsvc_testkit::{
    http_request, run_binary, udp_answers, workspace_binary, Server, ADMIN_TOKEN,
};

const INETSVC: &str = env!("CARGO_BIN_EXE_inetsvc");
const TRAINEE: &str = "trainee-token-0123456789abcdef";

fn start(name: &str) -> Server {
    Server::start_with_env(
        &workspace_binary(name),
        &["--admin-api", "true"],
        &[
            ("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN),
            ("INETSVC_ADMIN_TRAINEE_TOKEN", TRAINEE),
        ],
    )
}

/// One request on the admin port with `token`: status and body.
fn request(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    extra: &str,
) -> (u16, String) {
    let admin = server.admin.unwrap();
    let answer = http_request(
        admin,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    // Bodies may come chunked; the JSON is the one line that parses.
    body.lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON in {body:?}"))
}

#[test]
fn the_trainee_reads_and_remedies_but_never_touches_a_fault() {
    let echo = start("echod");
    let (status, _) = request(
        &echo,
        "PUT",
        "/admin/faults/latency",
        ADMIN_TOKEN,
        "delay=1ms",
        "",
    );
    assert_eq!(status, 200);
    for (method, path) in [
        ("GET", "/admin/faults"),
        ("DELETE", "/admin/faults"),
        ("DELETE", "/admin/faults/latency"),
        ("PUT", "/admin/faults/udp_drop"),
    ] {
        let (status, body) = request(&echo, method, path, TRAINEE, "", "");
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // Nor through the `faults` key.
    let (status, _) = request(&echo, "PUT", "/admin/settings/faults", TRAINEE, "", "");
    assert_eq!(status, 403);
    assert!(
        echo.metric("inetsvc_admin_refused_total{reason=\"forbidden\",service=\"echo\"}") >= 5.0
    );
    assert!(echo.fault_active("latency"), "the fault is still set");

    // What the trainee may do: read, change a live key, reload.
    let (status, body) = request(&echo, "GET", "/admin/settings", TRAINEE, "", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["settings"]["max_connections_per_source"], "256");
    assert!(
        json(&body)["settings"].get("admin_token").is_none(),
        "no secret is shown"
    );
    let (status, body) = request(
        &echo,
        "PUT",
        "/admin/settings/max_connections_per_source",
        TRAINEE,
        "8",
        "X-Inetsvc-Actor: ada <x>\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["overrides"]["max_connections_per_source"], "8");
    assert_eq!(
        request(&echo, "POST", "/admin/reload", TRAINEE, "", "").0,
        200
    );

    // What is refused, and changes nothing.
    for (key, value, why) in [
        ("tcp_listen", "127.0.0.1:1", "not a live key"),
        ("no_such_key", "1", "no key"),
        (
            "max_connections_per_source",
            "0",
            "max_connections_per_source",
        ),
    ] {
        let (status, body) = request(
            &echo,
            "PUT",
            &format!("/admin/settings/{key}"),
            TRAINEE,
            value,
            "",
        );
        assert_eq!(status, 400, "{key}={value}: {body}");
        assert!(body.contains(why), "{key}: {body}");
    }
    // A key that would forge a log line: refused, and on one line in the trail.
    let (status, _) = request(
        &echo,
        "PUT",
        "/admin/settings/x%0Aseq=1%20forged",
        TRAINEE,
        "1",
        "",
    );
    assert_eq!(status, 400);
    let (_, body) = request(&echo, "GET", "/admin/audit", TRAINEE, "", "");
    assert!(
        json(&body)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["subject"].as_str().unwrap().contains('\n')),
        "{body}"
    );
    let long = "9".repeat(5000);
    assert_eq!(
        request(&echo, "PUT", "/admin/settings/release", TRAINEE, &long, "").0,
        400
    );
    let (_, body) = request(&echo, "GET", "/admin/settings", TRAINEE, "", "");
    assert_eq!(json(&body)["settings"]["max_connections_per_source"], "8");

    // The trail: the trainer sees everything, the trainee no fault entry; the actor is
    // cleaned of what a terminal would obey.
    let (_, body) = request(&echo, "GET", "/admin/audit", ADMIN_TOKEN, "", "");
    let entries = json(&body)["entries"].as_array().unwrap().clone();
    let set = entries
        .iter()
        .find(|e| e["action"] == "settings.set" && e["outcome"] == "ok")
        .expect("the trainee's change");
    assert_eq!(set["role"], "trainee");
    assert_eq!(set["actor"], "adax");
    assert!(set["origin"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "fault.set" && e["role"] == "trainer"));
    assert!(entries.iter().any(|e| e["action"] == "fault.clear_all"
        && e["role"] == "trainee"
        && e["outcome"].as_str().unwrap().starts_with("forbidden")));
    let (_, body) = request(&echo, "GET", "/admin/audit", TRAINEE, "", "");
    let seen = json(&body)["entries"].as_array().unwrap().clone();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|e| !e["action"].as_str().unwrap().starts_with("fault."))
    );
    let last = seen.last().unwrap()["seq"].as_u64().unwrap();
    let (_, body) = request(
        &echo,
        "GET",
        &format!("/admin/audit?since={last}"),
        TRAINEE,
        "",
        "",
    );
    assert!(json(&body)["entries"].as_array().unwrap().is_empty());

    // The CLI shows the same.
    let admin = echo.admin.unwrap().to_string();
    let out = run_binary(
        INETSVC,
        &["admin", "--admin", &admin, "settings"],
        &[("INETSVC_ADMIN_TOKEN", TRAINEE)],
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("max_connections_per_source   8  (set through the API)"));
    let out = run_binary(
        INETSVC,
        &["fault", "--admin", &admin, "clear", "--all"],
        &[("INETSVC_ADMIN_TOKEN", TRAINEE)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden (403)"));
}

#[test]
fn one_token_for_both_roles_is_refused_at_start() {
    let out = run_binary(
        &workspace_binary("echod"),
        &["--admin-api", "true", "--print-config"],
        &[
            ("INETSVC_ADMIN_TOKEN", ADMIN_TOKEN),
            ("INETSVC_ADMIN_TRAINEE_TOKEN", ADMIN_TOKEN),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin_trainee_token"));
}

#[test]
fn deny_sources_refuses_and_counts_then_lets_go() {
    let echo = start("echod");
    let (status, body) = request(
        &echo,
        "PUT",
        "/admin/settings/deny_sources",
        TRAINEE,
        "127.0.0.0/8",
        "",
    );
    assert_eq!(status, 200, "{body}");
    // TCP: reset at once; UDP: no answer.
    let mut stream = TcpStream::connect(echo.tcp()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stream.write_all(b"hello\n");
    let mut buffer = [0u8; 16];
    assert!(
        !matches!(stream.read(&mut buffer), Ok(n) if n > 0),
        "a denied source got an answer"
    );
    let wait = Duration::from_millis(300);
    assert!(udp_answers(echo.udp(), b"hello\n", wait).is_empty());
    echo.wait_metric(
        "inetsvc_connections_rejected_total{reason=\"denied\",service=\"echo\",transport=\"tcp\"}",
        1.0,
        Duration::from_secs(2),
    );
    echo.wait_metric(
        "inetsvc_datagrams_dropped_total{reason=\"denied\",service=\"echo\",transport=\"udp\"}",
        1.0,
        Duration::from_secs(2),
    );
    // Another prefix does not cover loopback; `none` lets every source in again.
    for value in ["10.0.0.0/8, fd00::/8", "none"] {
        assert_eq!(
            request(
                &echo,
                "PUT",
                "/admin/settings/deny_sources",
                TRAINEE,
                value,
                ""
            )
            .0,
            200
        );
        let answers = udp_answers(echo.udp(), b"hello\n", wait);
        assert_eq!(
            answers.first().map(|a| a.0.as_slice()),
            Some(&b"hello\n"[..]),
            "served again"
        );
    }
    let (status, body) = request(
        &echo,
        "PUT",
        "/admin/settings/deny_sources",
        TRAINEE,
        "10.0.0.0/33",
        "",
    );
    assert_eq!(status, 400);
    assert!(body.contains("deny_sources"), "{body}");
}

#[test]
fn a_fault_tied_to_a_setting_acts_only_while_it_holds() {
    let time = start("timed");
    let udp = |server: SocketAddr| -> i64 {
        let answers = udp_answers(server, b"\n", Duration::from_secs(1));
        let answer: [u8; 4] = answers.first().expect("a TIME answer").0[..4]
            .try_into()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        i64::from(u32::from_be_bytes(answer)) - inetsvc_proto::time::SECONDS_1900_TO_1970 - now
    };
    let (status, body) = request(
        &time,
        "PUT",
        "/admin/faults/clock_offset",
        ADMIN_TOKEN,
        "offset=45s,when=time_source=primary",
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        (44..=46).contains(&udp(time.udp())),
        "skewed on the primary source"
    );
    assert_eq!(
        request(
            &time,
            "PUT",
            "/admin/settings/time_source",
            TRAINEE,
            "secondary",
            ""
        )
        .0,
        200
    );
    assert!(udp(time.udp()).abs() <= 1, "right on the secondary");
    let (_, body) = request(&time, "GET", "/admin/faults", ADMIN_TOKEN, "", "");
    assert_eq!(
        json(&body)["active"][0]["in_effect"],
        false,
        "set, but not in effect: {body}"
    );
    // A condition on a key the service does not have, or a bad source, is refused.
    let (status, body) = request(
        &time,
        "PUT",
        "/admin/faults/latency",
        ADMIN_TOKEN,
        "when=no_such_key=1",
        "",
    );
    assert_eq!(status, 400);
    assert!(body.contains("no key `no_such_key`"), "{body}");
    assert_eq!(
        request(
            &time,
            "PUT",
            "/admin/settings/time_source",
            TRAINEE,
            "tertiary",
            ""
        )
        .0,
        400
    );
}
