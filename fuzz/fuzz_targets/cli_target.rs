//! The CLI's target parser (`HOST[:PORT|:SERVICE]`): parsed to a usable port, or refused
//! in one line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match inetsvc_cli::target::Target::parse(text, 7) {
            Ok(target) => assert!(!target.to_string().is_empty()),
            Err(reason) => assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}"),
        }
    }
});
