//! PEP 440 versions (PyPI): parsing with the specification's normalisation and its ordering.
//!
//! `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, case-insensitive, with the spellings PEP 440
//! normalises: a leading `v`; `alpha`/`beta`/`c`/`pre`/`preview`; `-`, `_` or `.` (or nothing)
//! before a pre, post or dev part; an omitted number meaning 0; `rev`/`r` for post and the
//! implicit post release `1.0-1`; `-` and `_` in local versions.
//!
//! Ordering (PEP 440 "Summary of permitted suffixes and relative ordering"): epoch, then the
//! release with trailing zeros ignored, then `.devN` (of a final release) < `aN` < `bN` < `rcN`
//! < final < `.postN`, dev releases of a pre or post release sort just before it, and a local
//! version sorts after the same public version, its segments compared numerically when both
//! are numbers, numbers above strings, and a longer local version above its prefix.

use std::cmp::Ordering;
use std::fmt;

use crate::num::Num;
use crate::version::VersionError;

/// A parsed PEP 440 version.
#[derive(Debug, Clone)]
pub struct Pep440 {
    epoch: Num,
    release: Vec<Num>,
    pre: Option<(PreKind, Num)>,
    post: Option<Num>,
    dev: Option<Num>,
    local: Vec<Local>,
}

/// Pre-release kinds in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    A,
    B,
    Rc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Local {
    Num(Num),
    Str(String),
}

impl Ord for Local {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Local::Num(a), Local::Num(b)) => a.cmp(b),
            (Local::Num(_), Local::Str(_)) => Ordering::Greater,
            (Local::Str(_), Local::Num(_)) => Ordering::Less,
            (Local::Str(a), Local::Str(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Local {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A cursor over the lower-cased version text.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    fn digits(&mut self) -> Option<Num> {
        let n = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let d = &self.rest()[..n];
        self.pos += n;
        Num::parse(d)
    }

    fn peek(&self) -> Option<u8> {
        self.rest().bytes().next()
    }

    /// Eats one optional separator and returns where it was, so the caller can back out.
    fn sep(&mut self) -> usize {
        let at = self.pos;
        if matches!(self.peek(), Some(b'-' | b'_' | b'.')) {
            self.pos += 1;
        }
        at
    }
}

impl Pep440 {
    /// Parses and normalises a PEP 440 version.
    pub fn parse(input: &str) -> Result<Pep440, VersionError> {
        let err = |why: &str| VersionError::new("PEP 440", input, why);
        let lower = input.trim().to_ascii_lowercase();
        let mut c = Cursor { s: &lower, pos: 0 };
        c.eat("v");
        // Epoch or first release number.
        let first = c.digits().ok_or_else(|| err("expected a release number"))?;
        let (epoch, first) = if c.eat("!") {
            (
                first,
                c.digits()
                    .ok_or_else(|| err("expected a release number after the epoch"))?,
            )
        } else {
            (Num::zero(), first)
        };
        let mut release = vec![first];
        loop {
            let at = c.pos;
            if c.eat(".") {
                if let Some(n) = c.digits() {
                    release.push(n);
                    continue;
                }
                c.pos = at;
            }
            break;
        }
        // Pre-release.
        let mut pre = None;
        {
            let at = c.sep();
            let kind = [
                ("alpha", PreKind::A),
                ("a", PreKind::A),
                ("beta", PreKind::B),
                ("b", PreKind::B),
                ("preview", PreKind::Rc),
                ("pre", PreKind::Rc),
                ("rc", PreKind::Rc),
                ("c", PreKind::Rc),
            ]
            .into_iter()
            .find(|(word, _)| c.eat(word));
            match kind {
                Some((_, k)) => {
                    let before_num = c.sep();
                    let n = c.digits().unwrap_or_else(|| {
                        c.pos = before_num;
                        Num::zero()
                    });
                    pre = Some((k, n));
                }
                None => c.pos = at,
            }
        }
        // Post release: `-N`, or `[sep](post|rev|r)[sep][N]`.
        let mut post = None;
        {
            let at = c.pos;
            if c.eat("-")
                && let Some(n) = c.digits()
            {
                post = Some(n);
            } else {
                c.pos = at;
                c.sep();
                if c.eat("post") || c.eat("rev") || c.eat("r") {
                    let before_num = c.sep();
                    post = Some(c.digits().unwrap_or_else(|| {
                        c.pos = before_num;
                        Num::zero()
                    }));
                } else {
                    c.pos = at;
                }
            }
        }
        // Dev release.
        let mut dev = None;
        {
            let at = c.sep();
            if c.eat("dev") {
                let before_num = c.sep();
                dev = Some(c.digits().unwrap_or_else(|| {
                    c.pos = before_num;
                    Num::zero()
                }));
            } else {
                c.pos = at;
            }
        }
        // Local version.
        let mut local = Vec::new();
        if c.eat("+") {
            let text = c.rest();
            for seg in text.split(['.', '-', '_']) {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err("local version segments are non-empty [a-z0-9]"));
                }
                local.push(match Num::parse(seg) {
                    Some(n) => Local::Num(n),
                    None => Local::Str(seg.to_owned()),
                });
            }
            c.pos = c.s.len();
        }
        if !c.rest().is_empty() {
            return Err(err(&format!(
                "unexpected `{}`",
                c.rest().chars().take(20).collect::<String>()
            )));
        }
        Ok(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    /// True for pre-releases and development releases.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// The release without trailing zeros, for ordering.
    fn release_key(&self) -> &[Num] {
        let mut n = self.release.len();
        while n > 1 && self.release[n - 1].is_zero() {
            n -= 1;
        }
        &self.release[..n]
    }
}

/// Compares two release lists as if padded with zeros.
fn cmp_release(a: &[Num], b: &[Num]) -> Ordering {
    let zero = Num::zero();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).unwrap_or(&zero);
        let y = b.get(i).unwrap_or(&zero);
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

/// The pre-release slot of the sort key: below every pre-release for a dev release of a
/// final version, above them all for a final (or post) version.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum PreKey<'a> {
    DevOfFinal,
    Pre(PreKind, &'a Num),
    Final,
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        fn pre_key(v: &Pep440) -> PreKey<'_> {
            match (&v.pre, &v.post, &v.dev) {
                (None, None, Some(_)) => PreKey::DevOfFinal,
                (Some((k, n)), _, _) => PreKey::Pre(*k, n),
                _ => PreKey::Final,
            }
        }
        // No post release sorts below every post release; no dev release above every dev one.
        fn post_key(v: &Pep440) -> (bool, Option<&Num>) {
            (v.post.is_some(), v.post.as_ref())
        }
        fn dev_key(v: &Pep440) -> (bool, Option<&Num>) {
            (v.dev.is_none(), v.dev.as_ref())
        }
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| cmp_release(self.release_key(), other.release_key()))
            .then_with(|| pre_key(self).cmp(&pre_key(other)))
            .then_with(|| post_key(self).cmp(&post_key(other)))
            .then_with(|| dev_key(self).cmp(&dev_key(other)))
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pep440 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pep440 {}

impl fmt::Display for Pep440 {
    /// The normalised form (PEP 440 "Normalization").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.epoch.is_zero() {
            write!(f, "{}!", self.epoch)?;
        }
        let release: Vec<&str> = self.release.iter().map(Num::as_str).collect();
        f.write_str(&release.join("."))?;
        if let Some((k, n)) = &self.pre {
            let k = match k {
                PreKind::A => "a",
                PreKind::B => "b",
                PreKind::Rc => "rc",
            };
            write!(f, "{k}{n}")?;
        }
        if let Some(n) = &self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = &self.dev {
            write!(f, ".dev{n}")?;
        }
        if !self.local.is_empty() {
            let segs: Vec<String> = self
                .local
                .iter()
                .map(|l| match l {
                    Local::Num(n) => n.to_string(),
                    Local::Str(s) => s.clone(),
                })
                .collect();
            write!(f, "+{}", segs.join("."))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Pep440;
    use proptest::prelude::*;

    fn v(s: &str) -> Pep440 {
        Pep440::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pep440_example_order() {
        // The ordering example from PEP 440 ("Summary of permitted suffixes"), increasing.
        let chain = [
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn normalisation_table() {
        // (input, normal form) from PEP 440 "Normalization".
        for (input, normal) in [
            ("1.0", "1.0"),
            ("V1.0", "1.0"),
            ("1.0ALPHA1", "1.0a1"),
            ("1.1a", "1.1a0"),
            ("1.1.a1", "1.1a1"),
            ("1.1-a1", "1.1a1"),
            ("1.0a.1", "1.0a1"),
            ("1.1beta2", "1.1b2"),
            ("1.1c3", "1.1rc3"),
            ("1.1pre3", "1.1rc3"),
            ("1.1preview3", "1.1rc3"),
            ("1.2.post", "1.2.post0"),
            ("1.2-post2", "1.2.post2"),
            ("1.2post2", "1.2.post2"),
            ("1.2.r4", "1.2.post4"),
            ("1.2rev4", "1.2.post4"),
            ("1.0-1", "1.0.post1"),
            ("1.2-dev2", "1.2.dev2"),
            ("1.2dev2", "1.2.dev2"),
            ("1.2.dev", "1.2.dev0"),
            ("1.0+ubuntu-1", "1.0+ubuntu.1"),
            ("1.0+UBUNTU_1", "1.0+ubuntu.1"),
            ("01.002", "1.2"),
            ("1!2.0", "1!2.0"),
            ("0!1.0", "1.0"),
            (" 1.0 ", "1.0"),
        ] {
            assert_eq!(v(input).to_string(), normal, "{input}");
        }
    }

    #[test]
    fn comparisons() {
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1.0a"), v("1.0a0"));
        assert!(v("1!0.1") > v("2.0"));
        assert!(v("2.0.1") > v("2.0"));
        assert!(v("1.0.post1") > v("1.0"));
        assert!(v("1.0.dev1") < v("1.0a1"));
        assert!(v("1.0a1.dev1") < v("1.0a1"));
        assert!(v("1.0+1") > v("1.0+abc"));
        assert!(v("1.0+abc.1") > v("1.0+abc"));
        for bad in [
            "", "abc", "1.0-", "1.0+", "1.0+a..b", "1.0.x", "1..0", "1.0 beta",
        ] {
            assert!(Pep440::parse(bad).is_err(), "{bad}");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        (
            proptest::option::of(0u8..3),
            proptest::collection::vec(0u8..12, 1..4),
            proptest::option::of((prop_oneof![Just("a"), Just("b"), Just("rc")], 0u8..3)),
            proptest::option::of(0u8..3),
            proptest::option::of(0u8..3),
            proptest::option::of("[a-z0-9]{1,3}(\\.[a-z0-9]{1,3}){0,2}"),
        )
            .prop_map(|(epoch, rel, pre, post, dev, local)| {
                let mut s = String::new();
                if let Some(e) = epoch {
                    s.push_str(&format!("{e}!"));
                }
                let rel: Vec<String> = rel.iter().map(u8::to_string).collect();
                s.push_str(&rel.join("."));
                if let Some((k, n)) = pre {
                    s.push_str(&format!("{k}{n}"));
                }
                if let Some(n) = post {
                    s.push_str(&format!(".post{n}"));
                }
                if let Some(n) = dev {
                    s.push_str(&format!(".dev{n}"));
                }
                if let Some(l) = local {
                    s.push('+');
                    s.push_str(&l);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn total_order(a in version(), b in version(), c in version()) {
            crate::version::laws::total_order(crate::version::Scheme::Pep440, &a, &b, &c)?;
        }

        #[test]
        fn normal_form_is_stable(a in version()) {
            let once = v(&a).to_string();
            prop_assert_eq!(v(&once).to_string(), once.clone());
            prop_assert_eq!(v(&once), v(&a));
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = Pep440::parse(&s);
        }
    }
}
