//! The gate's policy: the severity at which a finding fails the gate, and an allowlist whose
//! every entry names an advisory, says why it is acceptable, and expires.
//!
//! An allowlist file (`--allow-file`, or the pipeline's configuration) is YAML or JSON:
//!
//! ```yaml
//! fail_on: high            # optional; none | low | medium | high | critical
//! allow:
//!   - id: RUSTSEC-2020-0071   # the advisory id or any of its aliases (CVE-..., GHSA-...)
//!     reason: only used in tests, never with untrusted input
//!     expires: 2026-12-31     # the entry stops suppressing after this day
//! ```

use serde::{Deserialize, Serialize};

pub use crate::cvss::Severity;
use crate::date::Date;
use crate::error::{Error, one_line};

/// The gate's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Findings at or above this severity fail the gate (informational ones never do).
    pub fail_on: Severity,
    /// Accepted advisories.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// Whether a vulnerability without any severity information fails the gate. On by
    /// default: a vulnerability nobody scored is not known to be harmless.
    #[serde(default = "yes")]
    pub unknown_fails: bool,
}

fn yes() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            fail_on: Severity::Low,
            allow: Vec::new(),
            unknown_fails: true,
        }
    }
}

/// An accepted advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    /// Advisory id or alias.
    pub id: String,
    /// Why it is acceptable.
    pub reason: String,
    /// Last day the entry applies.
    pub expires: Date,
}

impl AllowEntry {
    /// True if the entry still applies on `today` (it applies through its expiry day).
    pub fn active(&self, today: Date) -> bool {
        today <= self.expires
    }
}

impl Policy {
    /// Checks every allow entry has an id and a reason (the expiry is required by its type).
    pub fn validate(&self) -> Result<(), Error> {
        for (i, e) in self.allow.iter().enumerate() {
            if e.id.trim().is_empty() {
                return Err(Error::Policy(format!(
                    "allow[{i}] has an empty `id`; name the advisory (RUSTSEC-..., GHSA-..., CVE-...)"
                )));
            }
            if e.reason.trim().is_empty() {
                return Err(Error::Policy(format!(
                    "allow[{i}] ({}) has an empty `reason`; say why this advisory is acceptable",
                    e.id
                )));
            }
        }
        Ok(())
    }

    /// Whether a finding of this severity fails the gate (informational findings and allowed
    /// ones are decided by the caller).
    pub fn fails(&self, severity: Severity) -> bool {
        match severity {
            Severity::Unknown => self.unknown_fails,
            s => s >= self.fail_on,
        }
    }
}

/// The allowlist file as written, with every field optional so that a missing one gets a
/// precise message rather than a generic "missing field".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Optional threshold.
    #[serde(default)]
    pub fail_on: Option<String>,
    /// Optional unknown-severity rule.
    #[serde(default)]
    pub unknown_fails: Option<bool>,
    /// Entries.
    #[serde(default)]
    pub allow: Vec<RawAllowEntry>,
}

/// An allow entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllowEntry {
    /// Advisory id or alias.
    #[serde(default)]
    pub id: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Until when (YYYY-MM-DD).
    #[serde(default)]
    pub expires: Option<String>,
}

impl PolicyFile {
    /// Parses an allowlist file (YAML, or JSON which YAML reads too) and turns it into a
    /// policy on top of `base` (the file's `fail_on` wins over the base's). `path` is for
    /// messages.
    pub fn parse(text: &str, path: &str, base: Policy) -> Result<Policy, Error> {
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! { max_depth: 16 },
        };
        let file: Option<PolicyFile> =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| {
                let inner = e.without_snippet();
                Error::Parse {
                    path: path.to_owned(),
                    line: inner
                        .location()
                        .and_then(|l| usize::try_from(l.line()).ok()),
                    field: None,
                    message: format!(
                        "{}; an allowlist has `allow:` entries with `id`, `reason` and `expires`",
                        one_line(&inner.to_string())
                    ),
                }
            })?;
        let Some(file) = file else {
            return Ok(base);
        };
        let mut policy = base;
        if let Some(f) = &file.fail_on {
            policy.fail_on = match f.parse::<Severity>() {
                Ok(Severity::Unknown) | Err(_) => {
                    return Err(Error::parse_field(
                        path,
                        "fail_on",
                        format!("`{f}` is not a severity; use none, low, medium, high or critical"),
                    ));
                }
                Ok(s) => s,
            };
        }
        if let Some(u) = file.unknown_fails {
            policy.unknown_fails = u;
        }
        for (i, e) in file.allow.into_iter().enumerate() {
            let field = |name: &str| format!("allow[{i}].{name}");
            let id = e.id.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                Error::parse_field(
                    path,
                    field("id"),
                    "missing; name the advisory (RUSTSEC-..., GHSA-..., CVE-...)",
                )
            })?;
            let reason = e.reason.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                Error::parse_field(
                    path,
                    field("reason"),
                    format!("missing for {id}; say why this advisory is acceptable"),
                )
            })?;
            let expires = e.expires.ok_or_else(|| {
                Error::parse_field(
                    path,
                    field("expires"),
                    format!(
                        "missing for {id}; every allowlist entry needs an expiry date (YYYY-MM-DD)"
                    ),
                )
            })?;
            let expires: Date = expires
                .trim()
                .parse()
                .map_err(|err| Error::parse_field(path, field("expires"), format!("{err}")))?;
            policy.allow.push(AllowEntry {
                id,
                reason,
                expires,
            });
        }
        policy.validate()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_allowlists_and_names_missing_fields() {
        let text = "fail_on: high\nallow:\n  - id: RUSTSEC-2020-0071\n    reason: tests only\n    expires: 2026-12-31\n";
        let p = PolicyFile::parse(text, "allow.yml", Policy::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.fail_on, Severity::High);
        assert_eq!(p.allow.len(), 1);
        let msg = |t: &str| {
            PolicyFile::parse(t, "allow.yml", Policy::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            msg("allow:\n  - reason: x\n    expires: 2026-01-01\n")
                .contains("field `allow[0].id`: missing")
        );
        assert!(
            msg("allow:\n  - id: A\n    expires: 2026-01-01\n")
                .contains("field `allow[0].reason`: missing for A")
        );
        assert!(msg("allow:\n  - id: A\n    reason: r\n").contains("needs an expiry date"));
        assert!(
            msg("allow:\n  - id: A\n    reason: r\n    expires: soon\n").contains("not a date")
        );
        assert!(msg("fail_on: severe\n").contains("`severe` is not a severity"));
        assert!(
            msg("alow: []\n").starts_with("allow.yml:1"),
            "{}",
            msg("alow: []\n")
        );
        let json = r#"{"allow": [{"id": "A", "reason": "r", "expires": "2026-01-01"}]}"#;
        assert!(PolicyFile::parse(json, "allow.json", Policy::default()).is_ok());
        assert_eq!(
            PolicyFile::parse("", "empty.yml", Policy::default()).ok(),
            Some(Policy::default())
        );
    }

    #[test]
    fn thresholds_and_expiry() {
        let p = Policy {
            fail_on: Severity::High,
            ..Policy::default()
        };
        assert!(
            p.fails(Severity::Critical) && p.fails(Severity::High) && !p.fails(Severity::Medium)
        );
        assert!(p.fails(Severity::Unknown));
        let e = AllowEntry {
            id: "X".into(),
            reason: "r".into(),
            expires: Date::new(2026, 6, 30).unwrap_or_else(|| panic!("date")),
        };
        assert!(e.active(Date::new(2026, 6, 30).unwrap_or_else(|| panic!("date"))));
        assert!(!e.active(Date::new(2026, 7, 1).unwrap_or_else(|| panic!("date"))));
        let bad = Policy {
            allow: vec![AllowEntry {
                reason: " ".into(),
                ..e
            }],
            ..Policy::default()
        };
        assert!(bad.validate().is_err());
    }
}
