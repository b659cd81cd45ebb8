//! The TIME and DAYTIME answer readers the clients and the prober use: any bytes are a
//! well-formed answer exactly when they should be.
#![no_main]
use inetsvc_proto::{daytime, time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let four = time::answer(data);
    assert_eq!(four.is_some(), data.len() == time::ANSWER_LEN);
    if let Some(answer) = four {
        // Any four bytes decode to a time within half an era of now.
        let now = std::time::SystemTime::now();
        let decoded = time::decode(answer, now);
        let apart = decoded
            .duration_since(now)
            .unwrap_or_else(|e| e.duration())
            .as_secs();
        assert!(apart <= 1 << 31, "{apart}");
    }
    if let Some(line) = daytime::answer_line(data) {
        assert!(
            line.is_ascii() && !line.contains('\n') && !line.is_empty(),
            "{line:?}"
        );
    }
});
