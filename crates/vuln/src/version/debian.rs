//! Debian package versions (dpkg): `[epoch:]upstream_version[-debian_revision]`, ordered as
//! `dpkg --compare-versions` does (Debian Policy §5.6.12).
//!
//! The epoch compares numerically (absent = 0). Upstream version and revision each compare by
//! alternating runs: a run of non-digits compared character by character where `~` sorts
//! before everything (even the end of the string), letters before non-letters, then a run of
//! digits compared numerically (an empty run is 0). The revision is everything after the
//! last `-`; a version without one compares as if its revision were `0`.

use std::cmp::Ordering;
use std::fmt;

use crate::num::Num;
use crate::version::VersionError;

/// A parsed Debian version.
#[derive(Debug, Clone)]
pub struct DebVersion {
    epoch: Num,
    upstream: String,
    revision: String,
}

impl DebVersion {
    /// Parses a Debian version. The upstream part must start with a digit and use only
    /// `[A-Za-z0-9.+~-:]` (`:` only with an epoch, `-` only with a revision), as Policy requires.
    pub fn parse(input: &str) -> Result<DebVersion, VersionError> {
        let err = |why: &str| VersionError::new("Debian", input, why);
        let s = input.trim();
        if s.is_empty() {
            return Err(err("the version is empty"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, r)) => (
                Num::parse(e).ok_or_else(|| err("the epoch (before `:`) must be a number"))?,
                r,
            ),
            None => (Num::zero(), s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(err("the upstream version is empty"));
        }
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("the upstream version must start with a digit"));
        }
        if !upstream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':'))
        {
            return Err(err(
                "the upstream version may contain only [A-Za-z0-9.+~-:]",
            ));
        }
        if rest.contains('-') && revision.is_empty() {
            return Err(err("the revision after `-` is empty"));
        }
        if !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~'))
        {
            return Err(err("the revision may contain only [A-Za-z0-9.+~]"));
        }
        Ok(DebVersion {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

/// The sort weight of one character in a non-digit run (dpkg's `order()`).
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
pub(crate) fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit run.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = weight(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = weight(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Digit run.
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let na = std::str::from_utf8(&a[si..i])
            .ok()
            .and_then(Num::parse)
            .unwrap_or_else(Num::zero);
        let nb = std::str::from_utf8(&b[sj..j])
            .ok()
            .and_then(Num::parse)
            .unwrap_or_else(Num::zero);
        match na.cmp(&nb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.epoch.is_zero() {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::DebVersion;
    use proptest::prelude::*;
    use std::cmp::Ordering::{self, Equal, Greater, Less};

    fn cmp(a: &str, b: &str) -> Ordering {
        crate::version::laws::cmp(crate::version::Scheme::Debian, a, b)
    }

    #[test]
    fn dpkg_table() {
        // Cases from dpkg's own test suite (t-version.c) and Debian Policy §5.6.12.
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-0", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0", "1.00", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~~a", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0+", Less),
            ("1.0+", "1.0.1", Less),
            ("1:0.1", "2.0", Greater),
            ("1.2-3", "1.2-10", Less),
            ("1.2-3a", "1.2-3", Greater),
            ("2.30-1", "2.4-1", Greater),
            ("1.1.1w-0+deb11u1", "1.1.1n-0+deb11u3", Greater),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("3.0.11-1~deb12u2", "3.0.11-1~deb12u1", Greater),
            ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", Less),
            ("2:1.2", "10:0.1", Less),
            ("1.0-1-1", "1.0-1-2", Less),
            (
                "9999999999999999999999.0",
                "9999999999999999999998.0",
                Greater,
            ),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rejects_what_policy_forbids() {
        for bad in [
            "", "a1.0", "x:1.0", "1.0-", "1.0_1", "1.0-1_1", ":1.0", "1.0 1",
        ] {
            assert!(DebVersion::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            DebVersion::parse("1:2.0-1").map(|v| v.to_string()).ok(),
            Some("1:2.0-1".to_owned())
        );
    }

    fn version() -> impl Strategy<Value = String> {
        (
            proptest::option::of(0u8..3),
            "[0-9][0-9a-z.+~]{0,6}",
            proptest::option::of("[0-9a-z.+~]{1,5}"),
        )
            .prop_map(|(e, u, r)| {
                let mut s = String::new();
                if let Some(e) = e {
                    s.push_str(&format!("{e}:"));
                }
                s.push_str(&u);
                if let Some(r) = r {
                    s.push('-');
                    s.push_str(&r);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            crate::version::laws::total_order(crate::version::Scheme::Debian, &a, &b, &c)?;
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = DebVersion::parse(&s);
        }
    }
}
