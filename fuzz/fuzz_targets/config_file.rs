//! The config loader with any file: loaded, or refused in one line naming the file or key.
#![no_main]
use inetsvc_runtime::testing::TEST_SPEC as SPEC;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("inetsvc-fuzz-{}.toml", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    let args = vec!["--config".to_owned(), path.display().to_string()];
    if let Err(message) = inetsvc_runtime::testing::check_config(&SPEC, args, Vec::new()) {
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{message:?}"
        );
    }
});
