//! Fuzzes `Cargo.lock` (formats 1 to 4).
//! Nothing may panic on any input.
//!
//! Run with `cargo fuzz run cargo_lock --sanitizer none` from `crates/vuln`.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

use common::lockfile;
use sluice_vuln::inventory::FileKind;

fuzz_target!(|data: &[u8]| {
    lockfile(FileKind::CargoLock, data);
});
