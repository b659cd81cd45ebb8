//! Randomised robustness ("fuzz") tests of everything that reads untrusted input in the
//! runtime: configuration values and files, listen addresses, the loop guard and the rate
//! limiter, fault specs and the admin request path. Bounded by the case count
//! (PROPTEST_CASES, default 256 here; scripts/fuzz runs far more; fuzz/ holds the
//! coverage-guided targets). The property is always the same: no panic, and every
//! rejection is one line that names its key.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use inetsvc_runtime::testing::{
    check_config, fault_specs, loop_guard, parse_addresses, AdminHarness, RateLimiter,
};
use inetsvc_runtime::ServiceSpec;
use proptest::prelude::*;

const SPEC: ServiceSpec = inetsvc_runtime::testing::TEST_SPEC;

/// Keys, and values shaped like what users (and attackers) write.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tcp_listen".to_owned()),
        Just("udp_listen".to_owned()),
        Just("admin_listen".to_owned()),
        Just("max_connections".to_owned()),
        Just("idle_timeout".to_owned()),
        Just("log_level".to_owned()),
        Just("metrics".to_owned()),
        Just("udp_rate_per_source".to_owned()),
        Just("otlp_endpoint".to_owned()),
        "[a-z_]{1,20}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,25}",
        "-?[0-9]{1,6}(ms|s|m|h|d|x)?",
        "(\\[::1?\\]|127\\.0\\.0\\.[0-9]{1,3}|0\\.0\\.0\\.0|[a-z]{1,8}):[0-9]{0,6}(,.*)?",
        "(true|false|yes|no|on|off|maybe|TRUE|1|0)",
        ".{0,40}",
        // Control characters: a value quoted in an error must not break its one line.
        "[a-z:0-9]{0,6}[\\n\\r\\x1b\\t][a-z0-9]{0,6}",
    ]
}

fn outcome_is_clean(result: Result<(), String>) -> Result<(), TestCaseError> {
    if let Err(message) = result {
        prop_assert!(!message.contains('\n'), "two lines: {message}");
        prop_assert!(!message.is_empty());
    }
    Ok(())
}

fn run(args: Vec<String>, env: Vec<(String, String)>) -> Result<(), String> {
    check_config(&SPEC, args, env)
}

proptest! {
    #[test]
    fn any_flag_value_loads_or_is_refused_in_one_line(key in key(), value in value()) {
        outcome_is_clean(run(vec![format!("--{}", key.replace('_', "-")), value], vec![]))?;
    }

    #[test]
    fn any_environment_value_loads_or_is_refused_in_one_line(key in key(), value in value()) {
        let result = run(vec![], vec![(format!("INETSVC_{}", key.to_uppercase()), value)]);
        outcome_is_clean(result)?;
    }

    #[test]
    fn any_config_file_loads_or_is_refused_in_one_line(
        lines in proptest::collection::vec((key(), value(), 0..4u8), 0..6),
        junk in ".{0,60}",
    ) {
        let mut text = String::new();
        for (key, value, form) in lines {
            text += &match form {
                0 => format!("{key} = \"{}\"\n", value.replace(['"', '\\'], "")),
                1 => format!("{key} = {value}\n"),
                2 => format!("[{key}]\n"),
                _ => format!("{key} = [\"{}\"]\n", value.replace(['"', '\\'], "")),
            };
        }
        text += &junk;
        let path = std::env::temp_dir().join(format!("inetsvc-fuzz-{}.toml", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let result = run(vec!["--config".into(), path.display().to_string()], vec![]);
        if let Err(message) = &result {
            prop_assert!(!message.contains('\n'), "{text:?} gave two lines: {message}");
        }
    }

    #[test]
    fn address_lists_parse_or_say_why(text in ".{0,80}") {
        if let Err(reason) = parse_addresses(&text) {
            prop_assert!(!reason.is_empty() && !reason.contains('\n'));
        }
    }

    #[test]
    fn the_loop_guard_decides_every_source(ip in any::<[u8; 16]>(), v4 in any::<[u8; 4]>(), port in any::<u16>(), own in any::<u16>()) {
        for source in [SocketAddr::new(IpAddr::from(ip), port), SocketAddr::new(IpAddr::from(v4), port)] {
            let verdict = loop_guard(source, &[own], &[]);
            if port < 1024 || port == own || port == 2049 {
                prop_assert!(verdict.is_some());
            }
        }
    }

    #[test]
    fn the_rate_limiter_table_stays_bounded_under_any_sources(
        sources in proptest::collection::vec(any::<u32>(), 1..500),
    ) {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 3, 100, 32, start);
        for (i, source) in sources.iter().enumerate() {
            let _ = limiter.check(IpAddr::from(source.to_be_bytes()), start + Duration::from_millis(i as u64));
            prop_assert!(limiter.tracked_sources() <= 32);
        }
    }

    #[test]
    fn no_tracked_source_gets_more_than_its_burst_and_rate(
        // Fewer sources than the table holds: every one is tracked.
        sources in proptest::collection::vec(0u32..16, 1..500),
        steps_ms in proptest::collection::vec(0u64..50, 1..500),
    ) {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10, 3, 0, 32, start);
        let mut now = start;
        let mut allowed = std::collections::HashMap::<u32, u32>::new();
        for (source, step) in sources.iter().zip(steps_ms.iter().cycle()) {
            now += Duration::from_millis(*step);
            if limiter.check(IpAddr::from(source.to_be_bytes()), now).is_ok() {
                *allowed.entry(*source).or_default() += 1;
            }
        }
        let elapsed = now.duration_since(start).as_secs_f64();
        for (source, count) in allowed {
            // The burst, plus what the rate refills over the run.
            prop_assert!(f64::from(count) <= 3.0 + 10.0 * elapsed + 1e-9, "source {source}: {count} in {elapsed} s");
        }
    }

    #[test]
    fn any_fault_spec_parses_or_is_refused_in_one_line(text in "\\PC{0,40}|[a-z_:=,;.0-9\\n]{0,40}") {
        if let Err(reason) = fault_specs(&text) {
            prop_assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
        }
    }

    #[test]
    fn any_admin_request_gets_an_expected_answer(
        path in "/[a-z/_{}%.]{0,30}",
        host in "[a-z0-9.:\\[\\]-]{0,24}",
        token in proptest::bool::ANY,
        body in "[a-z_=,0-9.]{0,40}",
        method in proptest::sample::select(vec!["GET", "PUT", "DELETE", "POST"]),
    ) {
        prop_assume!(!path.contains("load"));
        let harness = harness();
        let auth = if token { format!("Bearer {}", AdminHarness::TOKEN) } else { String::new() };
        let status = harness.request(method, &path, &[("host", &host), ("authorization", &auth)], body.into_bytes());
        if let Some(status) = status {
            prop_assert!([200, 400, 401, 404, 405, 408, 413, 415, 421, 503].contains(&status), "{method} {path}: {status}");
        }
    }
}

fn harness() -> &'static AdminHarness {
    static HARNESS: std::sync::OnceLock<AdminHarness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(AdminHarness::new)
}

/// The in-process admin routes answer as a running service does, so that fuzzing them
/// fuzzes what is served.
#[test]
fn the_admin_harness_answers_as_a_service_does() {
    let harness = harness();
    let bearer = format!("Bearer {}", AdminHarness::TOKEN);
    let ask = |method, path, host: &str, auth: &str, body: &str| {
        harness.request(
            method,
            path,
            &[("host", host), ("authorization", auth)],
            body.as_bytes().to_vec(),
        )
    };
    assert_eq!(ask("GET", "/healthz", "localhost", "", ""), Some(200));
    assert_eq!(ask("GET", "/admin/faults", "localhost", "", ""), Some(401));
    assert_eq!(
        ask("GET", "/admin/faults", "localhost", &bearer, ""),
        Some(200)
    );
    assert_eq!(
        ask("PUT", "/admin/faults/nosuch", "localhost", &bearer, ""),
        Some(400)
    );
    assert_eq!(
        ask(
            "PUT",
            "/admin/faults/udp_drop",
            "localhost",
            &bearer,
            "for=1ms"
        ),
        Some(200)
    );
    assert_eq!(
        ask("GET", "/metrics", "attacker.example.com", "", ""),
        Some(421)
    );
    assert_eq!(
        ask("POST", "/admin/reload", "localhost", &bearer, ""),
        Some(503)
    );
}
