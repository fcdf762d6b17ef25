//! Alpine's installed-package database (`/lib/apk/db/installed`).
//!
//! One block per package, separated by blank lines; each line is `X:value` with a one-letter
//! key: `P` the package name, `V` its version, `o` its origin (the source package Alpine's
//! advisories name). Other keys (files, checksums ...) are ignored.

use crate::ecosystem::Ecosystem;
use crate::error::Error;
use crate::inventory::{Inventory, Package, SourcePackage};
use crate::version::apk::ApkVersion;

/// Reads an apk installed database; packages get `ecosystem` (Alpine with the release).
pub fn parse(
    text: &str,
    file: &str,
    ecosystem: Ecosystem,
    inv: &mut Inventory,
) -> Result<(), Error> {
    let mut name: Option<&str> = None;
    let mut version: Option<&str> = None;
    let mut origin: Option<&str> = None;
    let mut start = 1;
    let lines: Vec<&str> = text.lines().collect();
    for (i, raw) in lines.iter().chain(std::iter::once(&"")).enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            if name.is_some() || version.is_some() {
                let n = name.ok_or_else(|| {
                    Error::parse_at(file, start, "this package block has no `P:` line")
                })?;
                let v = version.ok_or_else(|| {
                    Error::parse_at(file, start, format!("package `{n}` has no `V:` line"))
                })?;
                ApkVersion::parse(v)
                    .map_err(|e| Error::parse_at(file, start, format!("package `{n}`: {e}")))?;
                inv.packages.push(Package {
                    ecosystem: ecosystem.clone(),
                    name: n.to_owned(),
                    version: v.to_owned(),
                    source_package: origin.filter(|o| *o != n).map(|o| SourcePackage {
                        name: o.to_owned(),
                        version: v.to_owned(),
                    }),
                    source_file: file.to_owned(),
                });
            }
            name = None;
            version = None;
            origin = None;
            start = i + 2;
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b':' || !b[0].is_ascii_alphanumeric() {
            return Err(Error::parse_at(
                file,
                i + 1,
                "expected `X:value`; is this an apk installed database?",
            ));
        }
        let value = &line[2..];
        match b[0] {
            b'P' => name = Some(value),
            b'V' => version = Some(value),
            b'o' => origin = Some(value),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_origins() {
        let text = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nF:lib\nR:libcrypto.so.3\n\nP:musl\nV:1.2.4_git20230717-r4\no:musl\n";
        let mut inv = Inventory::default();
        parse(
            text,
            "/lib/apk/db/installed",
            Ecosystem::Alpine(Some("v3.19".into())),
            &mut inv,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.packages.len(), 2);
        assert_eq!(
            inv.packages[0]
                .source_package
                .as_ref()
                .map(|s| s.name.as_str()),
            Some("openssl")
        );
        assert_eq!(inv.packages[1].source_package, None);
    }

    #[test]
    fn malformed_blocks_name_the_line() {
        let msg = |t: &str| {
            parse(
                t,
                "installed",
                Ecosystem::Alpine(None),
                &mut Inventory::default(),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(msg("P:a\nV:1.0\n\nP:b\n").starts_with("installed:4: package `b` has no `V:`"));
        assert!(msg("P:a\ngarbage\n").starts_with("installed:2: "));
        assert!(msg("P:a\nV:not\n").contains("not a valid Alpine version"));
    }
}
