//! Semantic Versioning 2.0.0 precedence (semver.org §11), as crates.io, npm and OSV's
//! `SEMVER` ranges use it.
//!
//! `MAJOR.MINOR.PATCH[-PRE][+BUILD]`: numbers compare numerically; a version with a
//! pre-release is lower than the same version without one; pre-release identifiers compare
//! one by one, numeric ones numerically and below alphanumeric ones (compared in ASCII
//! order), and a shorter list that is a prefix of a longer one is lower. Build metadata is
//! ignored for ordering and equality. A leading `v` or `=` (npm, Go) is accepted. Numbers have
//! no size limit.

use std::cmp::Ordering;
use std::fmt;

use crate::num::Num;
use crate::version::VersionError;

/// A parsed semantic version.
#[derive(Debug, Clone)]
pub struct SemVer {
    major: Num,
    minor: Num,
    patch: Num,
    pre: Vec<Ident>,
    build: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident {
    Numeric(Num),
    Alpha(String),
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Ident::Numeric(a), Ident::Numeric(b)) => a.cmp(b),
            (Ident::Numeric(_), Ident::Alpha(_)) => Ordering::Less,
            (Ident::Alpha(_), Ident::Numeric(_)) => Ordering::Greater,
            (Ident::Alpha(a), Ident::Alpha(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

impl SemVer {
    /// Parses a version; see the module documentation for what is accepted.
    pub fn parse(input: &str) -> Result<SemVer, VersionError> {
        let err = |why: &str| VersionError::new("semver", input, why);
        let s = input.trim();
        let s = s
            .strip_prefix('v')
            .or_else(|| s.strip_prefix('='))
            .unwrap_or(s);
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let mut parts = core.split('.');
        let mut number = |what: &str| {
            parts
                .next()
                .and_then(Num::parse)
                .ok_or_else(|| err(&format!("expected a number for {what}")))
        };
        let major = number("MAJOR")?;
        let minor = number("MINOR")?;
        let patch = number("PATCH")?;
        if parts.next().is_some() {
            return Err(err("more than three numbers before the pre-release"));
        }
        let mut idents = Vec::new();
        if let Some(pre) = pre {
            for id in pre.split('.') {
                if id.is_empty() || !id.chars().all(is_ident_char) {
                    return Err(err("pre-release identifiers are non-empty [0-9A-Za-z-]"));
                }
                idents.push(match Num::parse(id) {
                    Some(n) => Ident::Numeric(n),
                    None => Ident::Alpha(id.to_owned()),
                });
            }
        }
        let build = match build {
            Some(b) => {
                if b.split('.')
                    .any(|id| id.is_empty() || !id.chars().all(is_ident_char))
                {
                    return Err(err("build identifiers are non-empty [0-9A-Za-z-]"));
                }
                b.to_owned()
            }
            None => String::new(),
        };
        Ok(SemVer {
            major,
            minor,
            patch,
            pre: idents,
            build,
        })
    }

    /// True if the version has a pre-release part.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.major
            .cmp(&other.major)
            .then_with(|| self.minor.cmp(&other.minor))
            .then_with(|| self.patch.cmp(&other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for SemVer {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SemVer {}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Ident::Numeric(n) => write!(f, "{n}")?,
                Ident::Alpha(s) => f.write_str(s)?,
            }
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SemVer;
    use proptest::prelude::*;

    fn v(s: &str) -> SemVer {
        SemVer::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn spec_example_order() {
        // semver.org §11.4, in increasing order.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn table() {
        assert_eq!(v("1.0.0+build.1"), v("1.0.0"));
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v("=1.2.3"), v("1.2.3"));
        assert!(v("0.0.0-0") < v("0.0.0"));
        assert!(v("1.2.4-0") > v("1.2.3"));
        assert!(v("1.10.0") > v("1.9.0"));
        assert!(v("1.0.0-1") < v("1.0.0-a"));
        assert!(v("1.0.0-Z") < v("1.0.0-a"));
        assert!(v("100000000000000000000000.0.0") > v("18446744073709551615.0.0"));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.2.x",
            "1.2.3-",
            "1.2.3-a..b",
            "1.2.3+",
            "a.b.c",
        ] {
            assert!(SemVer::parse(bad).is_err(), "{bad}");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        let num = prop_oneof![Just("0".to_owned()), "[1-9][0-9]{0,2}"];
        let ident = prop_oneof![num.clone(), "[0-9]*[a-zA-Z-][0-9a-zA-Z-]{0,3}"];
        (
            num.clone(),
            num.clone(),
            num,
            proptest::collection::vec(ident, 0..4),
            proptest::option::of("[0-9a-z]{1,4}"),
        )
            .prop_map(|(a, b, c, pre, build)| {
                let mut s = format!("{a}.{b}.{c}");
                if !pre.is_empty() {
                    s.push('-');
                    s.push_str(&pre.join("."));
                }
                if let Some(b) = build {
                    s.push('+');
                    s.push_str(&b);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            crate::version::laws::total_order(crate::version::Scheme::Semver, &a, &b, &c)?;
        }

        #[test]
        fn agrees_with_the_semver_crate(a in version(), b in version()) {
            let (x, y) = (semver::Version::parse(&a), semver::Version::parse(&b));
            prop_assume!(x.is_ok() && y.is_ok());
            if let (Ok(x), Ok(y)) = (x, y) {
                // The semver crate breaks ties on build metadata; precedence ignores it.
                prop_assert_eq!(v(&a).cmp(&v(&b)), x.cmp_precedence(&y));
            }
        }

        #[test]
        fn display_round_trips(a in version()) {
            prop_assert_eq!(v(&a).to_string(), a);
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = SemVer::parse(&s);
        }
    }
}
