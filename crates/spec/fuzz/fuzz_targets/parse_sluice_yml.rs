//! Fuzzes `sluice_spec::parse` (and, for inputs that parse, `check_paths`) with arbitrary
//! UTF-8: neither may panic, and every diagnostic must carry a position.
//!
//! Run with `cargo fuzz run parse_sluice_yml --sanitizer none` from `crates/spec`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|source: &str| {
    match sluice_spec::parse(source, "sluice.yml") {
        Ok(config) => {
            let files = vec!["services/api/main.rs".to_owned(), "README.md".to_owned()];
            let _ = sluice_spec::check_paths(source, "sluice.yml", &config, &files);
        }
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty());
            for d in &diagnostics.0 {
                assert!(d.line >= 1 && d.column >= 1, "{d}");
            }
        }
    }
});
