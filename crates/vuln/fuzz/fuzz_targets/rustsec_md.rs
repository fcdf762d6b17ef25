//! Fuzzes RustSec advisory Markdown with TOML front matter (`sluice_vuln::rustsec::parse`).
//! Nothing may panic on any input.
//!
//! Run with `cargo fuzz run rustsec_md --sanitizer none` from `crates/vuln`.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

use common::exercise_advisory;
use sluice_vuln::rustsec;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fenced = format!("```toml\n{text}\n```\n# title\n");
    for t in [text.as_ref(), fenced.as_str()] {
        if let Ok(a) = rustsec::parse(t, rustsec::Collection::Crates, "RUSTSEC-fuzz.md") {
            exercise_advisory(a);
        }
    }
});
