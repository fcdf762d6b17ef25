//! `Cargo.lock`, lockfile formats 1 to 4.
//!
//! Format 1 has no `version` key and keeps checksums in a `[metadata]` table (very old files
//! also have a `[root]` table for the workspace root); format 2 has no `version` key either
//! and a `checksum` per package; formats 3 and 4 say `version = 3`/`4`. All list packages as
//! `[[package]]` with `name`, `version` and, for packages not in the workspace, `source`.
//!
//! Which packages are checked follows cargo-audit: only those whose `source` is the
//! crates.io registry (`registry+https://github.com/rust-lang/crates.io-index` or the sparse
//! index `sparse+https://index.crates.io/`). Workspace members and path dependencies (no
//! `source`), git dependencies and other registries are listed as skipped: RustSec's
//! advisories are about crates.io releases, and a crate of the same name elsewhere is a
//! different crate.

use serde::Deserialize;

use crate::ecosystem::Ecosystem;
use crate::error::{Error, line_of, one_line};
use crate::inventory::Inventory;
use crate::version::semver::SemVer;

/// crates.io's git index, as Cargo.lock spells the source.
pub const CRATES_IO_GIT: &str = "registry+https://github.com/rust-lang/crates.io-index";
/// crates.io's sparse index, as Cargo.lock spells the source.
pub const CRATES_IO_SPARSE: &str = "sparse+https://index.crates.io/";

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    package: Vec<LockPackage>,
    #[serde(default)]
    root: Option<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

/// Reads a Cargo.lock.
pub fn parse(text: &str, file: &str, inv: &mut Inventory) -> Result<(), Error> {
    let lock: Lock = toml::from_str(text).map_err(|e| Error::Parse {
        path: file.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)),
        field: None,
        message: format!(
            "{}; is this a Cargo.lock written by cargo?",
            one_line(e.message())
        ),
    })?;
    if let Some(v) = lock.version
        && !(1..=4).contains(&v)
    {
        return Err(Error::parse_field(
            file,
            "version",
            format!("lockfile format {v} is not supported; sluice reads formats 1 to 4"),
        ));
    }
    for (i, p) in lock.root.iter().chain(&lock.package).enumerate() {
        if let Err(e) = SemVer::parse(&p.version) {
            return Err(Error::parse_field(
                file,
                format!("package[{i}].version"),
                format!("{e} (package `{}`)", p.name),
            ));
        }
        match p.source.as_deref() {
            Some(CRATES_IO_GIT | CRATES_IO_SPARSE) => {
                inv.add(Ecosystem::CratesIo, &p.name, &p.version, file)
            }
            None => inv.skip(
                file,
                &p.name,
                Some(&p.version),
                "workspace member or path dependency (not from crates.io)",
            ),
            Some(s) if s.starts_with("git+") => inv.skip(
                file,
                &p.name,
                Some(&p.version),
                "git dependency (not from crates.io)",
            ),
            Some(_) => inv.skip(
                file,
                &p.name,
                Some(&p.version),
                "from another registry (not crates.io)",
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Inventory, Error> {
        let mut inv = Inventory::default();
        parse(text, "Cargo.lock", &mut inv).map(|()| inv)
    }

    #[test]
    fn all_formats_and_sources() {
        let v1 = "[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"smallvec 0.6.2 (registry+https://github.com/rust-lang/crates.io-index)\",\n]\n\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.2\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[metadata]\n\"checksum smallvec 0.6.2 (registry+https://github.com/rust-lang/crates.io-index)\" = \"abc\"\n";
        let inv = read(v1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].name, "smallvec");
        assert_eq!(inv.skipped.len(), 1);

        let v4 = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"sparse+https://index.crates.io/\"\nchecksum = \"00\"\n\n[[package]]\nname = \"b\"\nversion = \"1.0.0\"\nsource = \"git+https://example.invalid/b?rev=1#abc\"\n\n[[package]]\nname = \"c\"\nversion = \"1.0.0\"\nsource = \"registry+https://example.invalid/index\"\n";
        let inv = read(v4).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.packages.len(), 1);
        let reasons: Vec<&str> = inv.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "git dependency (not from crates.io)",
                "from another registry (not crates.io)"
            ]
        );

        let root = "[root]\nname = \"old\"\nversion = \"0.1.0\"\n";
        assert_eq!(read(root).map(|i| i.skipped.len()).ok(), Some(1));
    }

    #[test]
    fn errors_name_line_or_field() {
        let msg = |t: &str| read(t).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg("version = 3\n[[package]\n").starts_with("Cargo.lock:2: "),
            "{}",
            msg("version = 3\n[[package]\n")
        );
        assert!(msg("version = 9\n").contains("format 9 is not supported"));
        let bad = "[[package]]\nname = \"x\"\nversion = \"one\"\n";
        assert!(
            msg(bad).contains("field `package[0].version`"),
            "{}",
            msg(bad)
        );
        assert!(
            msg("[[package]]\nname = \"x\"\n").contains("missing field `version`"),
            "{}",
            msg("[[package]]\nname = \"x\"\n")
        );
    }
}
