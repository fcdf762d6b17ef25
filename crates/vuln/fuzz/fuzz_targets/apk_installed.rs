//! Fuzzes Alpine's `lib/apk/db/installed`.
//! Nothing may panic on any input.
//!
//! Run with `cargo fuzz run apk_installed --sanitizer none` from `crates/vuln`.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

use common::lockfile;
use sluice_vuln::inventory::FileKind;

fuzz_target!(|data: &[u8]| {
    lockfile(FileKind::ApkInstalled, data);
});
