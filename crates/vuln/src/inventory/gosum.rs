//! `go.sum`: one line per module version, `module version hash`, where the version ends in
//! `/go.mod` when only the module's go.mod file was hashed.
//!
//! A module with a hash of its full content (a line without `/go.mod`) was downloaded to
//! build, so it is checked. A module version that appears only with `/go.mod` was read for
//! dependency resolution but not built; it is listed as skipped.

use std::collections::BTreeMap;

use crate::ecosystem::Ecosystem;
use crate::error::Error;
use crate::inventory::Inventory;
use crate::version::golang::GoVersion;

/// Reads a go.sum.
pub fn parse(text: &str, file: &str, inv: &mut Inventory) -> Result<(), Error> {
    // (module, version) -> has a full-content hash
    let mut seen: BTreeMap<(String, String), bool> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [module, version, hash] = fields[..] else {
            return Err(Error::parse_at(
                file,
                n + 1,
                "expected `module version hash`; is this a go.sum written by the go command?",
            ));
        };
        if !hash.starts_with("h1:") && !hash.contains(':') {
            return Err(Error::parse_at(
                file,
                n + 1,
                format!("`{hash}` is not a go.sum hash (h1:...)"),
            ));
        }
        let (version, full) = match version.strip_suffix("/go.mod") {
            Some(v) => (v, false),
            None => (version, true),
        };
        if let Err(e) = GoVersion::parse(version) {
            return Err(Error::parse_at(file, n + 1, e.to_string()));
        }
        let slot = seen
            .entry((module.to_owned(), version.to_owned()))
            .or_insert(false);
        *slot |= full;
    }
    for ((module, version), full) in seen {
        if full {
            inv.add(Ecosystem::Go, &module, &version, file);
        } else {
            inv.skip(
                file,
                &module,
                Some(&version),
                "only its go.mod is listed (used for module resolution, not built)",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_hashes_are_checked_go_mod_only_skipped() {
        let text = "golang.org/x/text v0.3.7 h1:olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=\ngolang.org/x/text v0.3.7/go.mod h1:5Zoc/QRtKVWzQhOtBMvqHzDpF6irO9z98xDceosuGiQ=\ngolang.org/x/net v0.0.0-20190620200207-3b0461eec859/go.mod h1:z5CRVTTTmAJ677TzLLGU+0bjPO0LkuOLi4/5GtJWs/s=\n";
        let mut inv = Inventory::default();
        parse(text, "go.sum", &mut inv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].name, "golang.org/x/text");
        assert_eq!(inv.packages[0].version, "v0.3.7");
        assert_eq!(inv.skipped.len(), 1);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let mut inv = Inventory::default();
        let e = parse("a v1.0.0 h1:x\nbroken line\n", "go.sum", &mut inv)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref().map(|m| m.starts_with("go.sum:2: ")),
            Some(true)
        );
        let e = parse("a vX h1:x\n", "go.sum", &mut inv)
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("not a valid Go version"));
    }
}
