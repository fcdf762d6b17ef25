//! Fuzzes A root-filesystem tar (`sluice_vuln::scan_rootfs_tar`).
//! Nothing may panic on any input.
//!
//! Run with `cargo fuzz run rootfs_tar --sanitizer none` from `crates/vuln`.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

use common::gate_on;

fuzz_target!(|data: &[u8]| {
    if let Ok(inv) = sluice_vuln::scan_rootfs_tar(data) {
        gate_on(&inv);
    }
});
