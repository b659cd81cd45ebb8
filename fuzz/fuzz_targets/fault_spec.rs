//! The fault-spec parser (the `faults` key, the admin API, `inetsvc fault`): any text is
//! parsed or refused in one line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(reason) = inetsvc_runtime::testing::fault_specs(text) {
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
        }
    }
});
