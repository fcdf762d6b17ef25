//! Version ordering per ecosystem. Each scheme is its own module with its specification's
//! table tests and property tests (reflexive, antisymmetric, transitive on generated
//! versions); this module only dispatches.
//!
//! Versions of different schemes are never compared with each other.

pub mod apk;
pub mod debian;
pub mod golang;
pub mod pep440;
pub mod semver;

use std::cmp::Ordering;
use std::fmt;

/// A version ordering scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Semantic Versioning 2.0.0 (crates.io, npm, OSV `SEMVER` ranges).
    Semver,
    /// PEP 440 (PyPI).
    Pep440,
    /// dpkg (Debian, Ubuntu).
    Debian,
    /// apk-tools (Alpine).
    Apk,
    /// Go modules (semver with `v`, `+incompatible`, pseudo-versions).
    Go,
}

/// Why a version string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{version}` is not a valid {scheme} version: {reason}")]
pub struct VersionError {
    /// The scheme's name.
    pub scheme: &'static str,
    /// The input (shortened to 64 characters).
    pub version: String,
    /// What is wrong.
    pub reason: String,
}

impl VersionError {
    pub(crate) fn new(scheme: &'static str, version: &str, reason: &str) -> Self {
        VersionError {
            scheme,
            version: version.chars().take(64).collect(),
            reason: reason.to_owned(),
        }
    }
}

/// A version parsed under one scheme.
#[derive(Debug, Clone)]
pub enum Version {
    /// See [`semver::SemVer`].
    Semver(semver::SemVer),
    /// See [`pep440::Pep440`].
    Pep440(pep440::Pep440),
    /// See [`debian::DebVersion`].
    Debian(debian::DebVersion),
    /// See [`apk::ApkVersion`].
    Apk(apk::ApkVersion),
    /// See [`golang::GoVersion`].
    Go(golang::GoVersion),
}

impl Version {
    /// Parses `s` under `scheme`.
    pub fn parse(scheme: Scheme, s: &str) -> Result<Version, VersionError> {
        Ok(match scheme {
            Scheme::Semver => Version::Semver(semver::SemVer::parse(s)?),
            Scheme::Pep440 => Version::Pep440(pep440::Pep440::parse(s)?),
            Scheme::Debian => Version::Debian(debian::DebVersion::parse(s)?),
            Scheme::Apk => Version::Apk(apk::ApkVersion::parse(s)?),
            Scheme::Go => Version::Go(golang::GoVersion::parse(s)?),
        })
    }

    /// Compares two versions of the same scheme; `None` across schemes.
    pub fn compare(&self, other: &Version) -> Option<Ordering> {
        match (self, other) {
            (Version::Semver(a), Version::Semver(b)) => Some(a.cmp(b)),
            (Version::Pep440(a), Version::Pep440(b)) => Some(a.cmp(b)),
            (Version::Debian(a), Version::Debian(b)) => Some(a.cmp(b)),
            (Version::Apk(a), Version::Apk(b)) => Some(a.cmp(b)),
            (Version::Go(a), Version::Go(b)) => Some(a.cmp(b)),
            // Go ranges of type SEMVER are read with the Go scheme, so this never mixes
            // in practice; semver and Go agree on ordering anyway.
            (Version::Semver(a), Version::Go(b)) => semver::SemVer::parse(&b.to_string())
                .ok()
                .map(|b| a.cmp(&b)),
            (Version::Go(a), Version::Semver(b)) => {
                semver::SemVer::parse(&a.to_string()).ok().map(|a| a.cmp(b))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Semver(v) => v.fmt(f),
            Version::Pep440(v) => v.fmt(f),
            Version::Debian(v) => v.fmt(f),
            Version::Apk(v) => v.fmt(f),
            Version::Go(v) => v.fmt(f),
        }
    }
}

/// Compares two version strings under a scheme.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = Version::parse(scheme, a)?;
    let b = Version::parse(scheme, b)?;
    Ok(a.compare(&b).unwrap_or(Ordering::Equal))
}

/// Test helpers shared by the schemes' tests.
#[cfg(test)]
pub(crate) mod laws {
    use super::{Scheme, compare};
    use proptest::prelude::*;
    use std::cmp::Ordering;

    /// `a` vs `b` under `scheme`; panics when either does not parse.
    pub(crate) fn cmp(scheme: Scheme, a: &str, b: &str) -> Ordering {
        compare(scheme, a, b).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The order is total: reflexive, antisymmetric and transitive on `a`, `b`, `c`.
    pub(crate) fn total_order(
        scheme: Scheme,
        a: &str,
        b: &str,
        c: &str,
    ) -> Result<(), TestCaseError> {
        let cmp = |x, y| cmp(scheme, x, y);
        prop_assert_eq!(cmp(a, a), Ordering::Equal);
        prop_assert_eq!(cmp(a, b), cmp(b, a).reverse());
        if cmp(a, b) != Ordering::Greater && cmp(b, c) != Ordering::Greater {
            prop_assert!(cmp(a, c) != Ordering::Greater, "{} <= {} <= {}", a, b, c);
        }
        Ok(())
    }
}
