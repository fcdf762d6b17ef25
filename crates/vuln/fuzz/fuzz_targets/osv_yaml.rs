//! Fuzzes OSV advisories in YAML (`sluice_vuln::osv::parse`).
//! Nothing may panic on any input.
//!
//! Run with `cargo fuzz run osv_yaml --sanitizer none` from `crates/vuln`.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

use common::exercise_advisory;
use sluice_vuln::osv::{self, Format};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(a) = osv::parse(&text, Format::Yaml, "fuzz.yaml") {
        exercise_advisory(a);
    }
});
