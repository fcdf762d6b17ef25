//! Alpine package versions (apk-tools): `1.2.3[a][_suffix[N]]...[~hash][-rN]`, ordered as
//! `apk version -t` does.
//!
//! The version is read as a sequence of tokens compared pairwise: digit groups (the first
//! numerically; later ones numerically too, unless either starts with `0`, in which case they
//! compare as decimal fractions, i.e. as strings), one optional letter, suffixes in the order
//! `_alpha` < `_beta` < `_pre` < `_rc` < (none) < `_cvs` < `_svn` < `_git` < `_hg` < `_p`,
//! each with an optional number, an optional `~hash`, and the package revision `-rN`. When the
//! token kinds differ, a pre-release suffix makes its version older; otherwise the version
//! with more to say is newer (`1.2.1` > `1.2a` > `1.2_p1` > `1.2-r1` > `1.2`).

use std::cmp::Ordering;
use std::fmt;

use crate::num::Num;
use crate::version::VersionError;

const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
/// Index of the first post-release suffix in [`SUFFIXES`].
const FIRST_POST: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A digit group: its text (for the leading-zero rule) and value.
    Digit(String, Num),
    Letter(u8),
    Suffix(usize),
    SuffixNo(Num),
    Hash(String),
    Revision(Num),
}

impl Token {
    /// apk's token order: when kinds differ, the lower rank is the newer version.
    fn rank(&self) -> u8 {
        match self {
            Token::Digit(..) => 0,
            Token::Letter(_) => 1,
            Token::Suffix(_) => 2,
            Token::SuffixNo(_) => 3,
            Token::Hash(_) => 4,
            Token::Revision(_) => 5,
        }
    }
}

/// A parsed Alpine version.
#[derive(Debug, Clone)]
pub struct ApkVersion {
    text: String,
    tokens: Vec<Token>,
}

impl ApkVersion {
    /// Parses an apk version.
    pub fn parse(input: &str) -> Result<ApkVersion, VersionError> {
        let err = |why: &str| VersionError::new("Alpine", input, why);
        let s = input.trim();
        let b = s.as_bytes();
        let mut i = 0;
        let mut tokens = Vec::new();
        let digits = |i: &mut usize| -> Option<(String, Num)> {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            let t = s.get(start..*i)?;
            Num::parse(t).map(|n| (t.to_owned(), n))
        };
        // Digit groups.
        let (t, n) = digits(&mut i).ok_or_else(|| err("a version starts with a number"))?;
        tokens.push(Token::Digit(t, n));
        while i < b.len() && b[i] == b'.' {
            i += 1;
            let (t, n) = digits(&mut i).ok_or_else(|| err("expected a number after `.`"))?;
            tokens.push(Token::Digit(t, n));
        }
        // One letter.
        if i < b.len() && b[i].is_ascii_lowercase() {
            tokens.push(Token::Letter(b[i]));
            i += 1;
        }
        // Suffixes.
        while i < b.len() && b[i] == b'_' {
            i += 1;
            let rest = s.get(i..).unwrap_or("");
            let (idx, word) = SUFFIXES
                .iter()
                .enumerate()
                .filter(|(_, w)| rest.starts_with(**w))
                .max_by_key(|(_, w)| w.len())
                .ok_or_else(|| {
                    err("unknown suffix; apk knows _alpha _beta _pre _rc _cvs _svn _git _hg _p")
                })?;
            i += word.len();
            tokens.push(Token::Suffix(idx));
            if i < b.len()
                && b[i].is_ascii_digit()
                && let Some((_, n)) = digits(&mut i)
            {
                tokens.push(Token::SuffixNo(n));
            }
        }
        // Hash.
        if i < b.len() && b[i] == b'~' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_hexdigit() && !b[i].is_ascii_uppercase() {
                i += 1;
            }
            if start == i {
                return Err(err("expected a lower-case hex hash after `~`"));
            }
            tokens.push(Token::Hash(s.get(start..i).unwrap_or("").to_owned()));
        }
        // Revision.
        if i < b.len() && b[i] == b'-' {
            if s.get(i..i + 2) != Some("-r") {
                return Err(err("expected `-rN` for the package revision"));
            }
            i += 2;
            let (_, n) = digits(&mut i).ok_or_else(|| err("expected a number after `-r`"))?;
            tokens.push(Token::Revision(n));
        }
        if i != b.len() {
            return Err(err(&format!(
                "unexpected `{}`",
                s.get(i..)
                    .unwrap_or("")
                    .chars()
                    .take(20)
                    .collect::<String>()
            )));
        }
        Ok(ApkVersion {
            text: s.to_owned(),
            tokens,
        })
    }
}

fn cmp_token(a: &Token, b: &Token, first_digit: bool) -> Ordering {
    match (a, b) {
        (Token::Digit(ta, na), Token::Digit(tb, nb)) => {
            if !first_digit && (ta.starts_with('0') || tb.starts_with('0')) {
                ta.cmp(tb)
            } else {
                na.cmp(nb)
            }
        }
        (Token::Letter(x), Token::Letter(y)) => x.cmp(y),
        (Token::Suffix(x), Token::Suffix(y)) => x.cmp(y),
        (Token::SuffixNo(x), Token::SuffixNo(y)) | (Token::Revision(x), Token::Revision(y)) => {
            x.cmp(y)
        }
        (Token::Hash(x), Token::Hash(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut i = 0;
        loop {
            match (self.tokens.get(i), other.tokens.get(i)) {
                (None, None) => return Ordering::Equal,
                (Some(a), Some(b)) if a.rank() == b.rank() => match cmp_token(a, b, i == 0) {
                    Ordering::Equal => i += 1,
                    o => return o,
                },
                (a, b) => {
                    let pre =
                        |t: Option<&Token>| matches!(t, Some(Token::Suffix(s)) if *s < FIRST_POST);
                    if pre(a) {
                        return Ordering::Less;
                    }
                    if pre(b) {
                        return Ordering::Greater;
                    }
                    // The end of the version ranks after every token.
                    let rank = |t: Option<&Token>| t.map_or(6, Token::rank);
                    return rank(b).cmp(&rank(a));
                }
            }
        }
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}

impl fmt::Display for ApkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::ApkVersion;
    use proptest::prelude::*;
    use std::cmp::Ordering::{self, Equal, Greater, Less};

    fn cmp(a: &str, b: &str) -> Ordering {
        crate::version::laws::cmp(crate::version::Scheme::Apk, a, b)
    }

    #[test]
    fn apk_table() {
        // Cases in the style of apk-tools' test/version.data.
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0-r0", Less),
            ("1.0-r1", "1.0-r0", Greater),
            ("1.0-r10", "1.0-r9", Greater),
            ("1.0_alpha", "1.0", Less),
            ("1.0_alpha", "1.0_beta", Less),
            ("1.0_beta", "1.0_pre", Less),
            ("1.0_pre", "1.0_rc", Less),
            ("1.0_rc1", "1.0", Less),
            ("1.0_rc1", "1.0_rc2", Less),
            ("1.0_rc", "1.0_rc1", Less),
            ("1.0", "1.0_cvs", Less),
            ("1.0_cvs", "1.0_svn", Less),
            ("1.0_svn", "1.0_git", Less),
            ("1.0_git", "1.0_hg", Less),
            ("1.0_hg", "1.0_p", Less),
            ("1.0_p1", "1.0_p2", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0b", Less),
            ("1.0a", "1.0.1", Less),
            ("1.0_p1", "1.0a", Less),
            ("1.0", "1.0.0", Less),
            ("1.2", "1.10", Less),
            ("1.01", "1.1", Less),
            ("1.001", "1.01", Less),
            ("3.0.12-r0", "3.0.8-r0", Greater),
            ("3.1.4-r5", "3.1.4_p1-r0", Less),
            ("1.0_alpha1-r1", "1.0_alpha1", Greater),
            ("1.36.1-r15", "1.36.1-r2", Greater),
            ("2.0~abc", "2.0", Greater),
            ("99999999999999999999.0", "99999999999999999998.0", Greater),
        ] {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "a", "1.", "1.0_foo", "1.0-1", "1.0-r", "1.0~", "1.0AB", "1.0_p1x",
        ] {
            assert!(ApkVersion::parse(bad).is_err(), "{bad}");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec("0|[0-9]{1,2}", 1..4),
            proptest::option::of("[a-c]"),
            proptest::collection::vec(
                (
                    prop_oneof![Just("alpha"), Just("rc"), Just("p"), Just("git")],
                    proptest::option::of(0u8..3),
                ),
                0..2,
            ),
            proptest::option::of(0u8..3),
        )
            .prop_map(|(d, l, s, r)| {
                let mut v = d.join(".");
                if let Some(l) = l {
                    v.push_str(&l);
                }
                for (w, n) in s {
                    v.push('_');
                    v.push_str(w);
                    if let Some(n) = n {
                        v.push_str(&n.to_string());
                    }
                }
                if let Some(r) = r {
                    v.push_str(&format!("-r{r}"));
                }
                v
            })
    }

    proptest! {
        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            crate::version::laws::total_order(crate::version::Scheme::Apk, &a, &b, &c)?;
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = ApkVersion::parse(&s);
        }
    }
}
