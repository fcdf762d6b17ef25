//! Package ecosystems as OSV names them (`crates.io`, `npm`, `PyPI`, `Go`, `Debian:12`,
//! `Alpine:v3.19`, `Ubuntu:22.04:LTS`), how their package names compare, and which version
//! ordering each uses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::version::Scheme;

/// An OSV ecosystem. Distribution ecosystems carry their release when known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Rust crates from crates.io.
    CratesIo,
    /// npm packages.
    Npm,
    /// Python packages from PyPI.
    PyPI,
    /// Go modules.
    Go,
    /// Debian packages; the release (`12`) when known.
    Debian(Option<String>),
    /// Ubuntu packages; the release (`22.04`, or OSV's `22.04:LTS`) when known.
    Ubuntu(Option<String>),
    /// Alpine packages; the release (`v3.19`) when known.
    Alpine(Option<String>),
    /// Any other ecosystem, kept verbatim; never matches an inventory.
    Other(String),
}

impl Ecosystem {
    /// Parses OSV's ecosystem string. Never fails: unknown names become [`Ecosystem::Other`].
    pub fn parse(s: &str) -> Ecosystem {
        let (base, release) = match s.split_once(':') {
            Some((b, r)) => (b, Some(r.to_owned()).filter(|r| !r.is_empty())),
            None => (s, None),
        };
        match base {
            "crates.io" if release.is_none() => Ecosystem::CratesIo,
            "npm" if release.is_none() => Ecosystem::Npm,
            "PyPI" if release.is_none() => Ecosystem::PyPI,
            "Go" if release.is_none() => Ecosystem::Go,
            "Debian" => Ecosystem::Debian(release),
            "Ubuntu" => Ecosystem::Ubuntu(release),
            "Alpine" => Ecosystem::Alpine(release),
            _ => Ecosystem::Other(s.to_owned()),
        }
    }

    /// The ecosystem without its release: the key advisories are indexed under.
    pub fn base(&self) -> &str {
        match self {
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Go => "Go",
            Ecosystem::Debian(_) => "Debian",
            Ecosystem::Ubuntu(_) => "Ubuntu",
            Ecosystem::Alpine(_) => "Alpine",
            Ecosystem::Other(s) => s.split(':').next().unwrap_or(s),
        }
    }

    /// The release part, for distributions.
    pub fn release(&self) -> Option<&str> {
        match self {
            Ecosystem::Debian(r) | Ecosystem::Ubuntu(r) | Ecosystem::Alpine(r) => r.as_deref(),
            _ => None,
        }
    }

    /// The version ordering this ecosystem uses, `None` for ecosystems sluice cannot order.
    pub fn scheme(&self) -> Option<Scheme> {
        match self {
            Ecosystem::CratesIo | Ecosystem::Npm => Some(Scheme::Semver),
            Ecosystem::PyPI => Some(Scheme::Pep440),
            Ecosystem::Go => Some(Scheme::Go),
            Ecosystem::Debian(_) | Ecosystem::Ubuntu(_) => Some(Scheme::Debian),
            Ecosystem::Alpine(_) => Some(Scheme::Apk),
            Ecosystem::Other(_) => None,
        }
    }

    /// The name as the ecosystem compares it: PyPI names are case-insensitive and treat runs of
    /// `-`, `_` and `.` as one `-` (PEP 503); every other ecosystem compares names exactly.
    pub fn normalize_name(&self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => pep503(name),
            _ => name.to_owned(),
        }
    }

    /// Whether an advisory for `advisory` applies to a package installed from `self`.
    ///
    /// Same base ecosystem, and for distributions: an advisory without a release applies to
    /// every release; a package whose release is unknown is checked against every release;
    /// otherwise the releases must agree (`Ubuntu:22.04:LTS` agrees with `22.04`).
    pub fn admits(&self, advisory: &Ecosystem) -> bool {
        if self.base() != advisory.base() || matches!(self, Ecosystem::Other(_)) {
            return false;
        }
        match (self.release(), advisory.release()) {
            (Some(ours), Some(theirs)) => {
                theirs == ours || theirs.split(':').any(|part| part == ours)
            }
            _ => true,
        }
    }
}

/// PEP 503 name normalisation.
pub(crate) fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ecosystem::Other(s) => f.write_str(s),
            other => match other.release() {
                Some(r) => write!(f, "{}:{r}", other.base()),
                None => f.write_str(other.base()),
            },
        }
    }
}

impl Serialize for Ecosystem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ecosystem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Ecosystem::parse(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::Ecosystem;

    #[test]
    fn parses_and_prints_osv_names() {
        for s in [
            "crates.io",
            "npm",
            "PyPI",
            "Go",
            "Debian",
            "Debian:12",
            "Alpine:v3.19",
            "Ubuntu:22.04:LTS",
            "Maven",
        ] {
            assert_eq!(Ecosystem::parse(s).to_string(), s);
        }
        assert_eq!(
            Ecosystem::parse("Debian:11"),
            Ecosystem::Debian(Some("11".into()))
        );
    }

    #[test]
    fn releases_must_agree_when_both_known() {
        let deb12 = Ecosystem::Debian(Some("12".into()));
        assert!(deb12.admits(&Ecosystem::parse("Debian:12")));
        assert!(deb12.admits(&Ecosystem::parse("Debian")));
        assert!(!deb12.admits(&Ecosystem::parse("Debian:11")));
        assert!(Ecosystem::Debian(None).admits(&Ecosystem::parse("Debian:11")));
        assert!(!deb12.admits(&Ecosystem::parse("Ubuntu:12")));
        let u = Ecosystem::Ubuntu(Some("22.04".into()));
        assert!(u.admits(&Ecosystem::parse("Ubuntu:22.04:LTS")));
        assert!(!Ecosystem::parse("Maven").admits(&Ecosystem::parse("Maven")));
    }

    #[test]
    fn pypi_names_are_normalised() {
        let p = Ecosystem::PyPI;
        assert_eq!(
            p.normalize_name("Django_REST.framework"),
            "django-rest-framework"
        );
        assert_eq!(p.normalize_name("a--_b"), "a-b");
        assert_eq!(Ecosystem::CratesIo.normalize_name("Foo_bar"), "Foo_bar");
    }
}
