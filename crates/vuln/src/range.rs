//! Whether an installed version falls inside an OSV `affected` entry, following the OSV
//! schema's evaluation rules ("Evaluation" in ossf.github.io/osv-schema):
//!
//! - a version listed in `versions` is affected;
//! - for each `SEMVER` or `ECOSYSTEM` range (`GIT` ranges are ignored), the events are sorted
//!   by version (`introduced: "0"` first) and walked in order: `introduced <= v` turns
//!   "affected" on, `fixed <= v` or `last_affected < v` turns it off;
//! - if the range has `limit` events, only versions below one of them can be affected
//!   (`"*"` is no limit).
//!
//! `SEMVER` ranges order by Semantic Versioning (Go's with a `v` accepted), `ECOSYSTEM`
//! ranges by the package's ecosystem. Events at the same version sort `introduced` first, so
//! an empty range `[X, X)` affects nothing.

use std::cmp::Ordering;

use crate::ecosystem::Ecosystem;
use crate::osv::{Affected, Range};
use crate::version::{Scheme, Version, VersionError};

/// One sorted event.
#[derive(Debug)]
enum Bound {
    Introduced(Option<Version>),
    Fixed(Version),
    LastAffected(Version),
}

impl Bound {
    fn version(&self) -> Option<&Version> {
        match self {
            Bound::Introduced(v) => v.as_ref(),
            Bound::Fixed(v) | Bound::LastAffected(v) => Some(v),
        }
    }

    fn tie_rank(&self) -> u8 {
        match self {
            Bound::Introduced(_) => 0,
            Bound::LastAffected(_) => 1,
            Bound::Fixed(_) => 2,
        }
    }
}

/// The scheme a range's versions use.
pub fn range_scheme(range: &Range, ecosystem: &Ecosystem) -> Option<Scheme> {
    match range.kind.as_str() {
        "SEMVER" => Some(if *ecosystem == Ecosystem::Go {
            Scheme::Go
        } else {
            Scheme::Semver
        }),
        "ECOSYSTEM" => ecosystem.scheme(),
        _ => None,
    }
}

/// Whether `installed` is inside one range.
pub fn in_range(
    installed: &str,
    range: &Range,
    ecosystem: &Ecosystem,
) -> Result<bool, VersionError> {
    let Some(scheme) = range_scheme(range, ecosystem) else {
        return Ok(false);
    };
    let v = Version::parse(scheme, installed)?;
    let cmp = |a: &Version, b: &Version| a.compare(b).unwrap_or(Ordering::Equal);
    let mut bounds = Vec::with_capacity(range.events.len());
    let mut limits: Vec<Version> = Vec::new();
    let mut unlimited = false;
    for e in &range.events {
        if let Some(s) = &e.introduced {
            bounds.push(Bound::Introduced(if s == "0" {
                None
            } else {
                Some(Version::parse(scheme, s)?)
            }));
        } else if let Some(s) = &e.fixed {
            bounds.push(Bound::Fixed(Version::parse(scheme, s)?));
        } else if let Some(s) = &e.last_affected {
            bounds.push(Bound::LastAffected(Version::parse(scheme, s)?));
        } else if let Some(s) = &e.limit {
            if s == "*" {
                unlimited = true;
            } else {
                limits.push(Version::parse(scheme, s)?);
            }
        }
    }
    if !unlimited && !limits.is_empty() && !limits.iter().any(|l| cmp(&v, l) == Ordering::Less) {
        return Ok(false);
    }
    bounds.sort_by(|a, b| {
        match (a.version(), b.version()) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => cmp(x, y),
        }
        .then(a.tie_rank().cmp(&b.tie_rank()))
    });
    let mut affected = false;
    for b in &bounds {
        match b {
            Bound::Introduced(None) => affected = true,
            Bound::Introduced(Some(x)) => {
                if cmp(&v, x) != Ordering::Less {
                    affected = true;
                }
            }
            Bound::Fixed(x) => {
                if cmp(&v, x) != Ordering::Less {
                    affected = false;
                }
            }
            Bound::LastAffected(x) => {
                if cmp(&v, x) == Ordering::Greater {
                    affected = false;
                }
            }
        }
    }
    Ok(affected)
}

/// Whether `installed` is affected according to one `affected` entry (its `versions` list
/// and all its ranges). The ecosystem is the advisory's.
pub fn is_affected(
    installed: &str,
    affected: &Affected,
    ecosystem: &Ecosystem,
) -> Result<bool, VersionError> {
    if affected.versions.iter().any(|v| v == installed) {
        return Ok(true);
    }
    if let Some(scheme) = ecosystem.scheme()
        && !affected.versions.is_empty()
        && let Ok(mine) = Version::parse(scheme, installed)
    {
        for listed in &affected.versions {
            if let Ok(l) = Version::parse(scheme, listed)
                && mine.compare(&l) == Some(Ordering::Equal)
            {
                return Ok(true);
            }
        }
    }
    let mut first_err = None;
    for r in &affected.ranges {
        match in_range(installed, r, ecosystem) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(false),
    }
}

/// The `fixed` versions of an affected entry, in the ecosystem's order.
pub fn fixed_versions(affected: &Affected, ecosystem: &Ecosystem) -> Vec<String> {
    let mut fixed: Vec<(Option<Version>, String)> = Vec::new();
    for r in &affected.ranges {
        let scheme = range_scheme(r, ecosystem);
        for e in &r.events {
            if let Some(f) = &e.fixed
                && !fixed.iter().any(|(_, s)| s == f)
            {
                fixed.push((scheme.and_then(|s| Version::parse(s, f).ok()), f.clone()));
            }
        }
    }
    fixed.sort_by(|(a, sa), (b, sb)| match (a, b) {
        (Some(a), Some(b)) => a.compare(b).unwrap_or(Ordering::Equal),
        _ => sa.cmp(sb),
    });
    fixed.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::Event;

    fn ev(kind: &str, v: &str) -> Event {
        let mut e = Event::default();
        let s = Some(v.to_owned());
        match kind {
            "i" => e.introduced = s,
            "f" => e.fixed = s,
            "l" => e.last_affected = s,
            _ => e.limit = s,
        }
        e
    }

    fn range(kind: &str, events: &[(&str, &str)]) -> Range {
        Range {
            kind: kind.into(),
            repo: None,
            events: events.iter().map(|(k, v)| ev(k, v)).collect(),
            database_specific: serde_json::Value::Null,
        }
    }

    fn check(eco: &Ecosystem, r: &Range, v: &str) -> bool {
        in_range(v, r, eco).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn semver_intervals() {
        let c = Ecosystem::CratesIo;
        let r = range(
            "SEMVER",
            &[
                ("i", "0.3.2"),
                ("f", "0.3.4"),
                ("i", "0.4.0-0"),
                ("f", "0.4.5"),
                ("i", "0.6.0-0"),
                ("f", "0.6.3"),
            ],
        );
        for (v, want) in [
            ("0.3.1", false),
            ("0.3.2", true),
            ("0.3.3", true),
            ("0.3.4", false),
            ("0.4.0", true),
            ("0.4.5", false),
            ("0.5.9", false),
            ("0.6.2", true),
            ("0.6.3", false),
            ("1.0.0", false),
        ] {
            assert_eq!(check(&c, &r, v), want, "{v}");
        }
        // Unsorted events are sorted first.
        let unsorted = range("SEMVER", &[("f", "1.2.0"), ("i", "0")]);
        assert!(check(&c, &unsorted, "1.1.9"));
        assert!(!check(&c, &unsorted, "1.2.0"));
    }

    #[test]
    fn last_affected_and_limit() {
        let p = Ecosystem::PyPI;
        let r = range("ECOSYSTEM", &[("i", "1.0"), ("l", "1.4.2")]);
        assert!(check(&p, &r, "1.4.2"));
        assert!(check(&p, &r, "1.4.2.dev0"));
        assert!(!check(&p, &r, "1.4.2.post1"));
        assert!(!check(&p, &r, "0.9"));
        // Kind "x" is a `limit` event in this test's helper.
        let mut limited = range("ECOSYSTEM", &[("i", "0"), ("x", "2.0")]);
        assert!(check(&p, &limited, "1.9"));
        assert!(!check(&p, &limited, "2.0"));
        limited.events.push(ev("x", "*"));
        assert!(check(&p, &limited, "3.0"));
    }

    #[test]
    fn empty_range_affects_nothing_and_git_is_ignored() {
        let c = Ecosystem::CratesIo;
        let r = range("SEMVER", &[("i", "1.0.0"), ("f", "1.0.0")]);
        assert!(!check(&c, &r, "1.0.0"));
        let g = range("GIT", &[("i", "abc")]);
        assert!(!check(&c, &g, "1.0.0"));
    }

    #[test]
    fn debian_ecosystem_ranges_and_versions_list() {
        let d = Ecosystem::Debian(Some("12".into()));
        let r = range("ECOSYSTEM", &[("i", "0"), ("f", "3.0.11-1~deb12u2")]);
        assert!(check(&d, &r, "3.0.11-1~deb12u1"));
        assert!(!check(&d, &r, "3.0.11-1~deb12u2"));
        assert!(!check(&d, &r, "3.0.13-1~deb12u1"));
        let a = Affected {
            package: None,
            severity: vec![],
            ranges: vec![],
            versions: vec!["1.0".into()],
            ecosystem_specific: serde_json::Value::Null,
            database_specific: serde_json::Value::Null,
        };
        assert_eq!(is_affected("1.0-0", &a, &d).ok(), Some(true));
        assert_eq!(is_affected("1.1", &a, &d).ok(), Some(false));
    }

    #[test]
    fn unparsable_installed_version_is_an_error() {
        let r = range("SEMVER", &[("i", "0")]);
        assert!(in_range("not-a-version", &r, &Ecosystem::CratesIo).is_err());
    }
}
