//! Arbitrary-length non-negative decimal numbers, compared by value without overflow.
//!
//! Version strings are untrusted: `1.99999999999999999999999` must order correctly and must
//! not overflow a `u64` (nor panic), so numeric components are kept as digit strings.

use std::cmp::Ordering;

/// A decimal number kept as its digits, leading zeros removed (`"0"` for zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Num(String);

impl Num {
    /// Parses a non-empty run of ASCII digits; `None` otherwise.
    pub(crate) fn parse(s: &str) -> Option<Num> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = s.trim_start_matches('0');
        Some(Num(if trimmed.is_empty() {
            "0".to_owned()
        } else {
            trimmed.to_owned()
        }))
    }

    /// Zero.
    pub(crate) fn zero() -> Num {
        Num("0".to_owned())
    }

    /// The digits.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// True for zero.
    pub(crate) fn is_zero(&self) -> bool {
        self.0 == "0"
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Num;

    #[test]
    fn compares_by_value() {
        let n = |s| Num::parse(s).unwrap_or_else(Num::zero);
        assert!(n("10") > n("9"));
        assert_eq!(n("007"), n("7"));
        assert_eq!(n("000"), n("0"));
        assert!(n("99999999999999999999999999") > n("18446744073709551615"));
        assert!(Num::parse("").is_none());
        assert!(Num::parse("1a").is_none());
    }
}
