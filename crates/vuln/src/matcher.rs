//! Inventory × database → matches: which advisories affect which installed packages.
//!
//! A package is looked up by its ecosystem and name (PyPI names normalised); OS packages are
//! also looked up by their source package, since distribution advisories name source
//! packages. Withdrawn advisories never match. A distribution advisory applies only when its
//! release agrees with the image's ([`Ecosystem::admits`]). Each (package, advisory) pair is
//! reported once, however many `affected` entries or names matched.

use std::collections::BTreeMap;

use crate::cvss::{Severity, V3, v4_score};
use crate::db::Database;
use crate::ecosystem::Ecosystem;
use crate::inventory::{Inventory, Package};
use crate::osv::{Advisory, Affected, SeverityEntry};
use crate::range::{fixed_versions, is_affected};

/// One advisory affecting one package.
#[derive(Debug)]
pub struct Match<'a> {
    /// Index into the inventory's packages.
    pub package: usize,
    /// The advisory.
    pub advisory: &'a Advisory,
    /// Fixed versions from the entries that matched.
    pub fixed_versions: Vec<String>,
    /// Severity and CVSS base score.
    pub severity: (Severity, Option<f64>),
}

/// Finds every match; the second list holds comparisons that could not be made (a version
/// that does not parse under its ecosystem's rules), each naming package, file and advisory.
pub fn find<'a>(db: &'a Database, inv: &Inventory) -> (Vec<Match<'a>>, Vec<String>) {
    let mut matches: BTreeMap<(usize, &str), Match<'a>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (pi, pkg) in inv.packages.iter().enumerate() {
        for (name, version) in names(pkg) {
            for (adv, aff) in db.candidates(&pkg.ecosystem, name) {
                if adv.withdrawn.is_some() {
                    continue;
                }
                let Some(pref) = &aff.package else { continue };
                let adv_eco = Ecosystem::parse(&pref.ecosystem);
                if !pkg.ecosystem.admits(&adv_eco) {
                    continue;
                }
                match is_affected(version, aff, &adv_eco) {
                    Ok(true) => {
                        let m = matches
                            .entry((pi, adv.id.as_str()))
                            .or_insert_with(|| Match {
                                package: pi,
                                advisory: adv,
                                fixed_versions: Vec::new(),
                                severity: severity_of(adv, aff),
                            });
                        for f in fixed_versions(aff, &adv_eco) {
                            if !m.fixed_versions.contains(&f) {
                                m.fixed_versions.push(f);
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => problems.push(format!(
                        "cannot check {name} {version} ({}) against {}: {e}",
                        pkg.source_file, adv.id
                    )),
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    (matches.into_values().collect(), problems)
}

/// The names a package is looked up by: its own, and its source package's.
fn names(pkg: &Package) -> Vec<(&str, &str)> {
    let mut out = vec![(pkg.name.as_str(), pkg.version.as_str())];
    if let Some(src) = &pkg.source_package
        && (src.name != pkg.name || src.version != pkg.version)
    {
        out.push((src.name.as_str(), src.version.as_str()));
    }
    out
}

/// An advisory's severity for one affected entry: a CVSS v3 vector (computed here), else a
/// CVSS v4 vector, else a textual rating (`Ubuntu` severity entries, `database_specific`
/// or `ecosystem_specific` `severity`, Debian's `urgency`), else unknown.
pub fn severity_of(adv: &Advisory, aff: &Affected) -> (Severity, Option<f64>) {
    let entries: Vec<&SeverityEntry> = aff.severity.iter().chain(&adv.severity).collect();
    for e in &entries {
        if e.kind == "CVSS_V3"
            && let Ok(v) = V3::parse(&e.score)
        {
            let s = v.base_score();
            return (Severity::from_score(s), Some(s));
        }
    }
    for e in &entries {
        if e.kind == "CVSS_V4"
            && let Ok(s) = v4_score(&e.score)
        {
            return (Severity::from_score(s), Some(s));
        }
    }
    for e in &entries {
        if e.kind == "Ubuntu"
            && let Some(s) = Severity::from_label(&e.score)
        {
            return (s, None);
        }
    }
    let labels = [
        aff.database_specific.get("severity"),
        adv.database_specific.get("severity"),
        aff.ecosystem_specific.get("severity"),
        aff.ecosystem_specific.get("urgency"),
    ];
    for l in labels.into_iter().flatten() {
        if let Some(s) = l.as_str().and_then(Severity::from_label) {
            return (s, None);
        }
    }
    (Severity::Unknown, None)
}
