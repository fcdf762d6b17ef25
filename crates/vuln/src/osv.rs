//! The OSV advisory format (ossf.github.io/osv-schema): parsing JSON and YAML files,
//! validating them, and the normalised form the database stores.
//!
//! Unknown fields are ignored (the schema grows); `null` is accepted wherever a list or an
//! object may be absent. Validation checks what matching relies on: range types, one event
//! per entry, and, for the ecosystems sluice can order, that every range version parses under
//! that ecosystem's rules. An error names the file, the field (`affected[0].ranges[1]...`) or
//! the line, and what to fix.

use serde::{Deserialize, Deserializer, Serialize};

use crate::ecosystem::Ecosystem;
use crate::error::{Error, line_of, one_line};
use crate::version::{Scheme, Version};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_null(v: &serde_json::Value) -> bool {
    v.is_null()
}

/// One OSV advisory (the fields sluice reads and keeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// Schema version the file declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// Identifier, e.g. `RUSTSEC-2021-0001`, `GHSA-...`, `PYSEC-...`, `DSA-...`.
    pub id: String,
    /// Last modification time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Publication time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// Set when the advisory was withdrawn; withdrawn advisories never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// Other identifiers of the same vulnerability (CVE, GHSA ...).
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    /// Related but different vulnerabilities.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub related: Vec<String>,
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Longer description (Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Severity scores (CVSS vectors and others).
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<SeverityEntry>,
    /// Affected packages.
    #[serde(default, deserialize_with = "null_default")]
    pub affected: Vec<Affected>,
    /// Links.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub references: Vec<Reference>,
    /// Database-specific data, kept verbatim.
    #[serde(default, skip_serializing_if = "is_null")]
    pub database_specific: serde_json::Value,
}

/// A severity score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityEntry {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu` ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector or rating.
    pub score: String,
}

/// A link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// `ADVISORY`, `REPORT`, `FIX`, `WEB` ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The URL.
    #[serde(default)]
    pub url: String,
}

/// One affected package and its ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The package; absent for advisories that name only repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageRef>,
    /// Severity specific to this package.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub severity: Vec<SeverityEntry>,
    /// Affected version ranges.
    #[serde(default, deserialize_with = "null_default")]
    pub ranges: Vec<Range>,
    /// Affected versions listed one by one.
    #[serde(default, deserialize_with = "null_default")]
    pub versions: Vec<String>,
    /// Ecosystem-specific data, kept verbatim.
    #[serde(default, skip_serializing_if = "is_null")]
    pub ecosystem_specific: serde_json::Value,
    /// Database-specific data, kept verbatim (RustSec puts `informational` here).
    #[serde(default, skip_serializing_if = "is_null")]
    pub database_specific: serde_json::Value,
}

/// A package reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    /// OSV ecosystem, e.g. `crates.io`, `PyPI`, `Debian:12`.
    pub ecosystem: String,
    /// Package name as the ecosystem spells it.
    pub name: String,
    /// Package URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// A version range: events in some ordering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// `SEMVER`, `ECOSYSTEM` or `GIT` (ignored when matching).
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository of a `GIT` range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The events.
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<Event>,
    /// Database-specific data, kept verbatim.
    #[serde(default, skip_serializing_if = "is_null")]
    pub database_specific: serde_json::Value,
}

/// One range event; exactly one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Event {
    /// Versions from here on are affected (`"0"`: from the first version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// Versions from here on are not affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// Versions after this one are not affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    /// Only versions below this are considered (`"*"`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Advisory {
    /// The RustSec informational kind (`unmaintained`, `unsound`, `notice` ...), if any.
    pub fn informational(&self) -> Option<&str> {
        let top = self.database_specific.get("informational");
        std::iter::once(top)
            .chain(
                self.affected
                    .iter()
                    .map(|a| a.database_specific.get("informational")),
            )
            .flatten()
            .find_map(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
    }

    /// Checks what matching relies on; the error names the field.
    pub fn validate(&self, path: &str) -> Result<(), Error> {
        let field_err = |field: String, message: String| Error::parse_field(path, field, message);
        if self.id.trim().is_empty() {
            return Err(field_err(
                "id".into(),
                "the advisory has no id; every OSV advisory needs one".into(),
            ));
        }
        if self.id.len() > 200
            || self
                .id
                .chars()
                .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(field_err(
                "id".into(),
                "the id is longer than 200 characters or contains `/`, `\\` or control characters"
                    .into(),
            ));
        }
        for (i, s) in self.severity.iter().enumerate() {
            check_severity(s).map_err(|m| field_err(format!("severity[{i}]"), m))?;
        }
        for (i, a) in self.affected.iter().enumerate() {
            for (k, s) in a.severity.iter().enumerate() {
                check_severity(s)
                    .map_err(|m| field_err(format!("affected[{i}].severity[{k}]"), m))?;
            }
            let eco = a.package.as_ref().map(|p| Ecosystem::parse(&p.ecosystem));
            if let Some(p) = &a.package
                && (p.ecosystem.trim().is_empty() || p.name.trim().is_empty())
            {
                return Err(field_err(
                    format!("affected[{i}].package"),
                    "the package needs both an ecosystem and a name".into(),
                ));
            }
            for (j, r) in a.ranges.iter().enumerate() {
                let at = format!("affected[{i}].ranges[{j}]");
                let scheme = match r.kind.as_str() {
                    "GIT" => continue,
                    "SEMVER" => Some(match eco {
                        Some(Ecosystem::Go) => Scheme::Go,
                        _ => Scheme::Semver,
                    }),
                    "ECOSYSTEM" => eco.as_ref().and_then(Ecosystem::scheme),
                    other => {
                        return Err(field_err(
                            format!("{at}.type"),
                            format!(
                                "unknown range type `{}`; OSV knows SEMVER, ECOSYSTEM and GIT",
                                other.chars().take(40).collect::<String>()
                            ),
                        ));
                    }
                };
                if r.events.is_empty() {
                    return Err(field_err(
                        format!("{at}.events"),
                        "a range needs at least one event".into(),
                    ));
                }
                for (k, e) in r.events.iter().enumerate() {
                    let set = [&e.introduced, &e.fixed, &e.last_affected, &e.limit]
                        .iter()
                        .filter(|f| f.is_some())
                        .count();
                    if set != 1 {
                        return Err(field_err(
                            format!("{at}.events[{k}]"),
                            "each event sets exactly one of introduced, fixed, last_affected, limit"
                                .into(),
                        ));
                    }
                    let Some(scheme) = scheme else { continue };
                    let (name, value) = e.single();
                    if (name == "introduced" && value == "0") || (name == "limit" && value == "*") {
                        continue;
                    }
                    if let Err(err) = Version::parse(scheme, value) {
                        return Err(field_err(
                            format!("{at}.events[{k}].{name}"),
                            format!("{err}; correct the version or leave this advisory out"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Event {
    /// The one field that is set, as (name, value).
    pub fn single(&self) -> (&'static str, &str) {
        if let Some(v) = &self.introduced {
            ("introduced", v)
        } else if let Some(v) = &self.fixed {
            ("fixed", v)
        } else if let Some(v) = &self.last_affected {
            ("last_affected", v)
        } else if let Some(v) = &self.limit {
            ("limit", v)
        } else {
            ("", "")
        }
    }
}

fn check_severity(s: &SeverityEntry) -> Result<(), String> {
    match s.kind.as_str() {
        "CVSS_V3" => crate::cvss::V3::parse(&s.score)
            .map(|_| ())
            .map_err(|e| format!("{e}; fix the vector or remove it")),
        "CVSS_V4" => crate::cvss::v4_score(&s.score)
            .map(|_| ())
            .map_err(|e| format!("{e}; fix the vector or remove it")),
        _ => Ok(()),
    }
}

/// The serialisation formats an OSV file may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`
    Json,
    /// `.yaml` / `.yml`
    Yaml,
}

/// Parses and validates one OSV advisory. `path` is only used in error messages.
pub fn parse(text: &str, format: Format, path: &str) -> Result<Advisory, Error> {
    let advisory: Advisory = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            line: (e.line() > 0).then_some(e.line()),
            field: None,
            message: format!(
                "{}; the file must be one OSV advisory in JSON",
                one_line(&e.to_string())
            ),
        })?,
        Format::Yaml => {
            let options = serde_saphyr::options! {
                budget: serde_saphyr::budget! { max_depth: 64 },
            };
            serde_saphyr::from_str_with_options(text, options).map_err(|e| {
                let inner = e.without_snippet();
                Error::Parse {
                    path: path.to_owned(),
                    line: inner.location().map(|l| l.line() as usize),
                    field: None,
                    message: format!(
                        "{}; the file must be one OSV advisory in YAML",
                        one_line(&inner.to_string())
                    ),
                }
            })?
        }
    };
    advisory.validate(path)?;
    Ok(advisory)
}

/// Parses a JSON file's bytes (checking UTF-8 first).
pub fn parse_bytes(bytes: &[u8], format: Format, path: &str) -> Result<Advisory, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::parse_at(
            path,
            line_of(&String::from_utf8_lossy(bytes), e.valid_up_to()),
            "the file is not UTF-8 text",
        )
    })?;
    parse(text, format, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"id": "GHSA-1", "aliases": null, "affected": [{"package": {"ecosystem": "PyPI", "name": "Django"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.2.1"}]}]}]}"#;

    #[test]
    fn parses_json_and_yaml_alike() {
        let a = parse(MINIMAL, Format::Json, "a.json").unwrap_or_else(|e| panic!("{e}"));
        let yaml = "id: GHSA-1\naliases:\naffected:\n  - package: {ecosystem: PyPI, name: Django}\n    ranges:\n      - type: ECOSYSTEM\n        events: [{introduced: \"0\"}, {fixed: 3.2.1}]\n";
        let b = parse(yaml, Format::Yaml, "a.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse("{\n\"id\": 5}", Format::Json, "x.json").map(|_| ());
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("x.json:2: "), "{msg}");

        let bad_version = MINIMAL.replace("3.2.1", "three");
        let msg = parse(&bad_version, Format::Json, "y.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("y.json: field `affected[0].ranges[0].events[1].fixed`"),
            "{msg}"
        );
        assert!(msg.contains("PEP 440"), "{msg}");

        let two = MINIMAL.replace(
            r#"{"fixed": "3.2.1"}"#,
            r#"{"fixed": "3.2.1", "limit": "4"}"#,
        );
        assert!(parse(&two, Format::Json, "z.json").is_err());

        let bad_type = MINIMAL.replace("ECOSYSTEM", "RANGE");
        let msg = parse(&bad_type, Format::Json, "t.json")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("unknown range type `RANGE`"), "{msg}");

        let yaml = "id: [1, 2\n";
        let msg = parse(yaml, Format::Yaml, "b.yaml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.starts_with("b.yaml:"), "{msg}");
    }

    #[test]
    fn unknown_ecosystems_are_kept_unvalidated() {
        let maven = MINIMAL
            .replace("PyPI", "Maven")
            .replace("3.2.1", "1.0-SNAPSHOT");
        assert!(parse(&maven, Format::Json, "m.json").is_ok());
    }
}
