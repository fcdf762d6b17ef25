//! Fuzzes Version parsing and ordering of every scheme: never panics, and comparison is antisymmetric.
//! Nothing may panic on any input.
//!
//! Run with `cargo fuzz run versions --sanitizer none` from `crates/vuln`.

#![no_main]

use libfuzzer_sys::fuzz_target;

use sluice_vuln::version::{Scheme, Version};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, "1.0"));
    for scheme in [
        Scheme::Semver,
        Scheme::Pep440,
        Scheme::Debian,
        Scheme::Apk,
        Scheme::Go,
    ] {
        if let (Ok(x), Ok(y)) = (Version::parse(scheme, a), Version::parse(scheme, b)) {
            let xy = x.compare(&y);
            let yx = y.compare(&x).map(std::cmp::Ordering::reverse);
            assert_eq!(xy, yx, "{scheme:?}: {a:?} vs {b:?}");
            assert_eq!(x.compare(&x), Some(std::cmp::Ordering::Equal));
        }
    }
    let _ = sluice_vuln::cvss::V3::parse(a).map(|v| v.base_score());
    let _ = sluice_vuln::cvss::v4_score(a);
});
