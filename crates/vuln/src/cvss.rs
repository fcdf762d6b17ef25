//! CVSS scores from vectors, and the qualitative ratings the gate compares.
//!
//! CVSS v3.0 and v3.1 base scores are computed here from the specification's formula
//! (FIRST, "CVSS v3.1 Specification Document" §7.1 and Appendix A for `Roundup`; v3.0 rounds
//! up to one decimal directly). Temporal and environmental metrics in a vector are accepted
//! and ignored: advisories carry base scores. CVSS v4.0 scores come from the `cvss` crate,
//! whose implementation follows FIRST's reference calculator (v4 scoring is a lookup over
//! macro-vectors, not a formula).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A CVSS v3 vector's base metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V3 {
    minor: u8,
    av: u8,
    ac: u8,
    pr: u8,
    ui: u8,
    scope_changed: bool,
    c: u8,
    i: u8,
    a: u8,
}

/// Why a vector is not a valid CVSS vector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{vector}` is not a valid CVSS vector: {reason}")]
pub struct CvssError {
    /// The vector (shortened).
    pub vector: String,
    /// What is wrong.
    pub reason: String,
}

fn cvss_err(vector: &str, reason: impl Into<String>) -> CvssError {
    CvssError {
        vector: vector.chars().take(120).collect(),
        reason: reason.into(),
    }
}

/// Metrics allowed after the base metrics (temporal and environmental), with their values.
const OTHER_V3: [(&str, &str); 11] = [
    ("E", "XUPFH"),
    ("RL", "XOTWU"),
    ("RC", "XURC"),
    ("CR", "XLMH"),
    ("IR", "XLMH"),
    ("AR", "XLMH"),
    ("MAV", "XNALP"),
    ("MAC", "XLH"),
    ("MPR", "XNLH"),
    ("MUI", "XNR"),
    ("MS", "XUC"),
];
const OTHER_V3_CIA: [&str; 3] = ["MC", "MI", "MA"];

impl V3 {
    /// Parses `CVSS:3.0/...` or `CVSS:3.1/...` with all eight base metrics.
    pub fn parse(vector: &str) -> Result<V3, CvssError> {
        let mut parts = vector.trim().split('/');
        let minor = match parts.next() {
            Some("CVSS:3.0") => 0,
            Some("CVSS:3.1") => 1,
            _ => {
                return Err(cvss_err(
                    vector,
                    "it must start with CVSS:3.0/ or CVSS:3.1/",
                ));
            }
        };
        let mut base: [Option<u8>; 8] = [None; 8];
        let names = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];
        let values = ["NALP", "LH", "NLH", "NR", "UC", "HLN", "HLN", "HLN"];
        let mut seen_other: Vec<&str> = Vec::new();
        for part in parts {
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| cvss_err(vector, format!("`{part}` is not METRIC:VALUE")))?;
            if let Some(k) = names.iter().position(|n| *n == name) {
                let idx = (value.len() == 1)
                    .then(|| values[k].find(value))
                    .flatten()
                    .ok_or_else(|| cvss_err(vector, format!("`{part}` has an unknown value")))?;
                if base[k].is_some() {
                    return Err(cvss_err(vector, format!("metric {name} appears twice")));
                }
                base[k] = Some(u8::try_from(idx).unwrap_or(0));
            } else {
                let allowed = OTHER_V3
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
                    .or_else(|| OTHER_V3_CIA.contains(&name).then_some("XHLN"));
                match allowed {
                    Some(v) if value.len() == 1 && v.contains(value) => {}
                    _ => return Err(cvss_err(vector, format!("unknown metric `{part}`"))),
                }
                if seen_other.contains(&name) {
                    return Err(cvss_err(vector, format!("metric {name} appears twice")));
                }
                seen_other.push(name);
            }
        }
        let mut got = [0u8; 8];
        for (k, slot) in base.iter().enumerate() {
            got[k] = slot
                .ok_or_else(|| cvss_err(vector, format!("base metric {} is missing", names[k])))?;
        }
        Ok(V3 {
            minor,
            av: got[0],
            ac: got[1],
            pr: got[2],
            ui: got[3],
            scope_changed: got[4] == 1,
            c: got[5],
            i: got[6],
            a: got[7],
        })
    }

    /// The base score, 0.0 to 10.0 with one decimal.
    pub fn base_score(&self) -> f64 {
        let av = [0.85, 0.62, 0.55, 0.2][usize::from(self.av)];
        let ac = [0.77, 0.44][usize::from(self.ac)];
        let pr = match (self.pr, self.scope_changed) {
            (0, _) => 0.85,
            (1, false) => 0.62,
            (1, true) => 0.68,
            (_, false) => 0.27,
            (_, true) => 0.5,
        };
        let ui = [0.85, 0.62][usize::from(self.ui)];
        let cia = |m: u8| [0.56, 0.22, 0.0][usize::from(m)];
        let iss = 1.0 - (1.0 - cia(self.c)) * (1.0 - cia(self.i)) * (1.0 - cia(self.a));
        let impact = if self.scope_changed {
            7.52 * (iss - 0.029) - 3.25 * (iss - 0.02_f64).powi(15)
        } else {
            6.42 * iss
        };
        let exploitability = 8.22 * av * ac * pr * ui;
        if impact <= 0.0 {
            return 0.0;
        }
        let raw = if self.scope_changed {
            (1.08 * (impact + exploitability)).min(10.0)
        } else {
            (impact + exploitability).min(10.0)
        };
        if self.minor == 0 {
            (raw * 10.0).ceil() / 10.0
        } else {
            roundup_31(raw)
        }
    }
}

/// CVSS v3.1 Appendix A `Roundup`: the smallest one-decimal number >= input, computed on
/// integers so floating-point noise (4.000000000000001) does not round up a whole tenth.
fn roundup_31(input: f64) -> f64 {
    let int_input = (input * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// The base score of a CVSS v4.0 vector.
pub fn v4_score(vector: &str) -> Result<f64, CvssError> {
    let parsed: cvss::v4::Vector = vector
        .trim()
        .parse()
        .map_err(|e: cvss::Error| cvss_err(vector, e.to_string()))?;
    // The scorer indexes tables with the parsed metrics; a bug there must not take down a
    // scan, so a panic becomes an error.
    std::panic::catch_unwind(|| parsed.score().value())
        .map_err(|_| cvss_err(vector, "the CVSS v4 scorer failed on this vector"))
}

/// Qualitative severity, ordered from none to critical, plus `unknown` (no usable score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// CVSS 0.0.
    None,
    /// CVSS 0.1 to 3.9.
    Low,
    /// CVSS 4.0 to 6.9.
    Medium,
    /// CVSS 7.0 to 8.9.
    High,
    /// CVSS 9.0 to 10.0.
    Critical,
    /// No score and no rating in the advisory.
    Unknown,
}

impl Severity {
    /// The CVSS v3/v4 qualitative rating of a score.
    pub fn from_score(score: f64) -> Severity {
        if score <= 0.0 {
            Severity::None
        } else if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Medium
        } else if score < 9.0 {
            Severity::High
        } else {
            Severity::Critical
        }
    }

    /// Reads a textual rating as databases write it (`HIGH`, `moderate`, `negligible` ...).
    pub fn from_label(label: &str) -> Option<Severity> {
        match label.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Severity::None),
            "low" | "negligible" | "unimportant" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" | "important" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
            Severity::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unknown" => Ok(Severity::Unknown),
            other => Severity::from_label(other).ok_or_else(|| {
                format!("`{other}` is not a severity; use none, low, medium, high or critical")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn score(v: &str) -> f64 {
        V3::parse(v).map(|v| v.base_score()).unwrap_or(-1.0)
    }

    #[test]
    fn known_vectors() {
        // Published base scores (NVD / FIRST calculator).
        for (vector, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 6.5),
            ("CVSS:3.1/AV:L/AC:H/PR:H/UI:N/S:U/C:N/I:L/A:N", 1.9),
            // Temporal metrics are accepted and do not change the base score.
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C",
                9.8,
            ),
        ] {
            assert_eq!(score(vector), want, "{vector}");
        }
    }

    #[test]
    fn invalid_vectors_are_errors() {
        for bad in [
            "",
            "CVSS:2.0/AV:N",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1",
            "CVSS:3.1/AV:NN/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        ] {
            assert!(V3::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ratings() {
        assert_eq!(Severity::from_score(0.0), Severity::None);
        assert_eq!(Severity::from_score(3.9), Severity::Low);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(7.0), Severity::High);
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_label("MODERATE"), Some(Severity::Medium));
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::None);
    }

    #[test]
    fn v4_vectors_score() {
        let s = v4_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N");
        assert_eq!(s.ok(), Some(9.3));
        assert!(v4_score("CVSS:4.0/AV:N").is_err());
    }

    fn v3_vector() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["3.0", "3.1"]),
            prop::sample::select(vec!["N", "A", "L", "P"]),
            prop::sample::select(vec!["L", "H"]),
            prop::sample::select(vec!["N", "L", "H"]),
            prop::sample::select(vec!["N", "R"]),
            prop::sample::select(vec!["U", "C"]),
            prop::sample::select(vec!["H", "L", "N"]),
            prop::sample::select(vec!["H", "L", "N"]),
            prop::sample::select(vec!["H", "L", "N"]),
        )
            .prop_map(|(m, av, ac, pr, ui, s, c, i, a)| {
                format!("CVSS:{m}/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}")
            })
    }

    proptest! {
        /// Our formula agrees with the independent implementation in the `cvss` crate on
        /// every v3.1 base vector (v3.0 differs only in rounding, tested above).
        #[test]
        fn agrees_with_cvss_crate(v in v3_vector()) {
            prop_assume!(v.starts_with("CVSS:3.1"));
            let theirs: cvss::v3::Base = v.parse().map_err(|e: cvss::Error| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(score(&v), theirs.score().value());
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = V3::parse(&s);
            let _ = v4_score(&s);
        }

        #[test]
        fn never_panics_on_near_vectors(suffix in "[A-Z:/]{0,60}") {
            let _ = v4_score(&format!("CVSS:4.0/{suffix}"));
            let _ = V3::parse(&format!("CVSS:3.1/{suffix}"));
        }
    }
}
