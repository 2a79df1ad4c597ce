//! Any text as `moat.toml`: parsing either succeeds or says why, never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = moat::Manifest::parse(std::path::Path::new("fuzz/moat.toml"), text) {
            // Every refusal names the file.
            assert!(e.to_string().contains("fuzz/moat.toml"), "{e}");
        }
    }
});
