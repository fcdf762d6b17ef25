//! Where the tests find the real advisory data (RustSec in its own layout and as OSV JSON;
//! see `SOURCE.md` inside): `../shared/advisory-db` beside the checkout when it is there,
//! else the copy of that snapshot committed as `crates/vuln/tests/fixtures/advisory-db.tar.gz`,
//! unpacked once per archive content into the system's temporary directory. So the real-data
//! tests run (and never skip) wherever the repository is cloned.
//!
//! Shared by the test crates that need it through `#[path]`.

use std::path::{Path, PathBuf};

/// A directory holding `rustsec/` and `osv-rustsec/`.
pub fn advisory_data() -> PathBuf {
    let vuln = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vuln = if vuln.ends_with("crates/vuln") {
        vuln.to_path_buf()
    } else {
        vuln.join("../vuln")
    };
    let shared = vuln.join("../../../shared/advisory-db");
    if complete(&shared) {
        return shared;
    }
    let archive = vuln.join("tests/fixtures/advisory-db.tar.gz");
    let bytes = std::fs::read(&archive)
        .unwrap_or_else(|e| panic!("the advisory data archive {}: {e}", archive.display()));
    // FNV-1a of the archive: a new snapshot unpacks beside the old one.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dest = std::env::temp_dir().join(format!("sluice-advisory-db-{hash:016x}"));
    let unpacked = dest.join("advisory-db");
    if complete(&unpacked) {
        return unpacked;
    }
    // Unpack beside it, then rename into place: concurrent test processes race safely.
    let tmp = std::env::temp_dir().join(format!(
        "sluice-advisory-db-{hash:016x}.{}.tmp",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&tmp)
        .status()
        .unwrap_or_else(|e| panic!("running tar to unpack {}: {e}", archive.display()));
    assert!(status.success(), "tar -xzf {} failed", archive.display());
    if std::fs::rename(&tmp, &dest).is_err() {
        // Another process got there first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(
        complete(&unpacked),
        "the advisory data did not unpack to {}",
        unpacked.display()
    );
    unpacked
}

/// Whether `dir` holds both layouts.
fn complete(dir: &Path) -> bool {
    dir.join("rustsec/crates").is_dir() && dir.join("osv-rustsec/crates").is_dir()
}
