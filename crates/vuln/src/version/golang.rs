//! Go module versions: semantic versions with a leading `v` (`v1.2.3`), where
//! `+incompatible` (a v2+ module without a go.mod) is build metadata and so ignored for
//! ordering, and pseudo-versions (`v0.0.0-20191109021931-daa7c04131f5`,
//! `v1.2.4-0.20191109021931-daa7c04131f5`) are pre-releases that order by their timestamp,
//! exactly as `golang.org/x/mod/semver` compares them. OSV's Go ranges write versions
//! without the `v`; both spellings are accepted.

use std::cmp::Ordering;
use std::fmt;

use crate::version::VersionError;
use crate::version::semver::SemVer;

/// A parsed Go module version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoVersion(SemVer);

impl GoVersion {
    /// Parses `v1.2.3`, `1.2.3`, `v2.0.0+incompatible` or a pseudo-version.
    pub fn parse(input: &str) -> Result<GoVersion, VersionError> {
        SemVer::parse(input)
            .map(GoVersion)
            .map_err(|e| VersionError::new("Go", input, &e.reason))
    }
}

impl Ord for GoVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for GoVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::GoVersion;
    use proptest::prelude::*;
    use std::cmp::Ordering::{self, Equal, Greater, Less};

    fn cmp(a: &str, b: &str) -> Ordering {
        crate::version::laws::cmp(crate::version::Scheme::Go, a, b)
    }

    #[test]
    fn go_table() {
        for (a, b, want) in [
            ("v1.2.3", "1.2.3", Equal),
            ("v2.0.0+incompatible", "v2.0.0", Equal),
            ("v1.9.0", "v1.10.0", Less),
            ("v0.0.0-20191109021931-daa7c04131f5", "v0.0.1", Less),
            (
                "v0.0.0-20191109021931-daa7c04131f5",
                "v0.0.0-20200101000000-aaaaaaaaaaaa",
                Less,
            ),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.3", Greater),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4", Less),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4-rc.1", Less),
            (
                "v1.2.4-pre.0.20191109021931-daa7c04131f5",
                "v1.2.4-pre",
                Greater,
            ),
            ("v0.3.7", "0.3.8", Less),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
        }
        assert!(GoVersion::parse("v1.2").is_err());
        assert!(GoVersion::parse("latest").is_err());
    }

    fn version() -> impl Strategy<Value = String> {
        (
            0u8..3,
            0u8..3,
            0u8..3,
            proptest::option::of("(0\\.)?2019[01][0-9]{9}-[0-9a-f]{12}"),
            any::<bool>(),
        )
            .prop_map(|(a, b, c, pseudo, inc)| {
                let mut s = format!("v{a}.{b}.{c}");
                if let Some(p) = pseudo {
                    s.push('-');
                    s.push_str(&p);
                }
                if inc {
                    s.push_str("+incompatible");
                }
                s
            })
    }

    proptest! {
        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            crate::version::laws::total_order(crate::version::Scheme::Go, &a, &b, &c)?;
        }
    }
}
