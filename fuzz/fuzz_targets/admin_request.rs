//! The admin request path (routes, token check, bounds, Host guard) with any method, path,
//! headers and body: always an answer from the expected set, never a panic. Loads are left
//! out: each would hold up to 1 GiB or a core, which tells the fuzzer nothing new.
#![no_main]
use std::sync::OnceLock;

use inetsvc_runtime::testing::AdminHarness;
use libfuzzer_sys::fuzz_target;

static HARNESS: OnceLock<AdminHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(5, '\n');
    let method = match parts.next().unwrap_or("").len() % 4 {
        0 => "GET",
        1 => "PUT",
        2 => "DELETE",
        _ => "POST",
    };
    let path = parts.next().unwrap_or("/");
    let host = parts.next().unwrap_or("localhost");
    let auth = match parts.next().unwrap_or("") {
        "token" => format!("Bearer {}", AdminHarness::TOKEN),
        other => other.to_owned(),
    };
    let body = parts.next().unwrap_or("").as_bytes().to_vec();
    if path.contains("load") || body.len() > 64 * 1024 {
        return;
    }
    let harness = HARNESS.get_or_init(AdminHarness::new);
    let head = [("host", host), ("authorization", auth.as_str())];
    if let Some(status) = harness.request(method, path, &head, body) {
        assert!(
            [200, 400, 401, 404, 405, 408, 413, 415, 421, 503].contains(&status),
            "{method} {path:?}: {status}"
        );
    }
});
