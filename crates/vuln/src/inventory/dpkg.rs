//! Debian's dpkg status database (`/var/lib/dpkg/status`, and the one-paragraph files in
//! `/var/lib/dpkg/status.d/` that distroless images use).
//!
//! Paragraphs of `Field: value` lines separated by blank lines; lines starting with a space
//! or tab continue the previous field. Only installed packages are checked: `Status` ends in
//! `installed` (`install ok installed`, `hold ok installed`); a paragraph without `Status`
//! (status.d) counts as installed; others (config-files, half-installed ...) are skipped.
//!
//! Debian's advisories name source packages, so the `Source:` field is kept: `Source: openssl`
//! (same version as the binary) or `Source: openssl (3.0.11-1)` (its own version).

use crate::ecosystem::Ecosystem;
use crate::error::Error;
use crate::inventory::{Inventory, Package, SourcePackage};
use crate::version::debian::DebVersion;

/// Reads a dpkg status file; packages get `ecosystem` (Debian or Ubuntu with the release).
pub fn parse(
    text: &str,
    file: &str,
    ecosystem: Ecosystem,
    inv: &mut Inventory,
) -> Result<(), Error> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut start = 1;
    let lines: Vec<&str> = text.lines().collect();
    for (i, raw) in lines.iter().chain(std::iter::once(&"")).enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !fields.is_empty() {
                paragraph(&fields, start, file, &ecosystem, inv)?;
                fields.clear();
            }
            start = i + 2;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if fields.is_empty() {
                return Err(Error::parse_at(
                    file,
                    i + 1,
                    "a continuation line before any field",
                ));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Error::parse_at(
                file,
                i + 1,
                "expected `Field: value`; is this a dpkg status file?",
            ));
        };
        fields.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(())
}

fn paragraph(
    fields: &[(String, String)],
    line: usize,
    file: &str,
    ecosystem: &Ecosystem,
    inv: &mut Inventory,
) -> Result<(), Error> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let name = get("Package")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::parse_at(file, line, "this paragraph has no `Package:` field"))?;
    let status = get("Status");
    let version = get("Version");
    if let Some(s) = status
        && s.split_whitespace().last() != Some("installed")
    {
        inv.skip(
            file,
            name,
            version,
            &format!("not installed (status `{s}`)"),
        );
        return Ok(());
    }
    let version = version.filter(|v| !v.is_empty()).ok_or_else(|| {
        Error::parse_at(
            file,
            line,
            format!("installed package `{name}` has no `Version:` field"),
        )
    })?;
    DebVersion::parse(version)
        .map_err(|e| Error::parse_at(file, line, format!("package `{name}`: {e}")))?;
    let source_package = match get("Source") {
        Some(src) if !src.is_empty() => {
            let (sname, sversion) = match src.split_once('(') {
                Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
                None => (src.trim(), version),
            };
            DebVersion::parse(sversion)
                .map_err(|e| Error::parse_at(file, line, format!("source of `{name}`: {e}")))?;
            (sname != name || sversion != version).then(|| SourcePackage {
                name: sname.to_owned(),
                version: sversion.to_owned(),
            })
        }
        _ => None,
    };
    inv.packages.push(Package {
        ecosystem: ecosystem.clone(),
        name: name.to_owned(),
        version: version.to_owned(),
        source_package,
        source_file: file.to_owned(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libssl3\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nDescription: Secure Sockets Layer toolkit\n multi-line description\n .\n more\n\nPackage: zlib1g\nStatus: install ok installed\nSource: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1+b1\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u5\n";

    #[test]
    fn installed_packages_with_sources() {
        let mut inv = Inventory::default();
        parse(
            STATUS,
            "/var/lib/dpkg/status",
            Ecosystem::Debian(Some("12".into())),
            &mut inv,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.packages.len(), 3);
        let ssl = &inv.packages[0];
        assert_eq!(
            ssl.source_package
                .as_ref()
                .map(|s| (s.name.as_str(), s.version.as_str())),
            Some(("openssl", "3.0.11-1~deb12u2"))
        );
        let z = &inv.packages[1];
        assert_eq!(
            z.source_package.as_ref().map(|s| s.version.as_str()),
            Some("1:1.2.13.dfsg-1")
        );
        assert_eq!(inv.packages[2].source_package, None);
        assert_eq!(inv.skipped.len(), 1);
    }

    #[test]
    fn malformed_paragraphs_name_the_line() {
        let mut inv = Inventory::default();
        let msg = |t: &str, inv: &mut Inventory| {
            parse(t, "status", Ecosystem::Debian(None), inv)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            msg(
                "Package: a\nVersion: 1\n\nPackage: b\nStatus: install ok installed\n",
                &mut inv
            )
            .starts_with("status:4: installed package `b` has no `Version:`")
        );
        assert!(msg("Package: a\nnonsense\n", &mut inv).starts_with("status:2: "));
        assert!(msg(" continuation\n", &mut inv).starts_with("status:1: "));
        assert!(msg("Version: 1\n", &mut inv).contains("no `Package:`"));
        assert!(msg("Package: a\nVersion: x1\n", &mut inv).contains("must start with a digit"));
    }
}
