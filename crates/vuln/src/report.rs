//! The gate's verdict: [`gate`] matches an inventory against the database under a policy and
//! returns a [`Report`] (serde JSON for storing on a release), with a plain-text table for
//! terminals and logs and a Markdown rendering for the run page.
//!
//! A finding fails the gate when it is not informational, not allowed by an active allowlist
//! entry, and its severity is at or above `fail_on` (or unknown, when `unknown_fails`). The
//! gate also fails when a file could not be read: it cannot vouch for what it did not see.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cvss::Severity;
use crate::date::Date;
use crate::db::Database;
use crate::inventory::{Inventory, InventoryError, Skipped};
use crate::matcher;
use crate::policy::{AllowEntry, Policy};

/// One advisory affecting one installed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The package's ecosystem (`crates.io`, `Debian:12` ...).
    pub ecosystem: String,
    /// Package name.
    pub package: String,
    /// Installed version.
    pub installed_version: String,
    /// The source package the advisory may name instead (OS packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_package: Option<String>,
    /// The file the package was found in.
    pub source_file: String,
    /// Advisory id.
    pub advisory_id: String,
    /// Its aliases (CVE, GHSA ...).
    pub aliases: Vec<String>,
    /// Severity (from the CVSS base score when there is one).
    pub severity: Severity,
    /// CVSS base score.
    pub cvss_score: Option<f64>,
    /// Versions that fix it (empty: no fix released).
    pub fixed_versions: Vec<String>,
    /// One-line summary.
    pub summary: String,
    /// RustSec informational kind (`unmaintained`, `unsound`, `notice` ...): a warning, not a
    /// vulnerability, and never a gate failure.
    pub informational: Option<String>,
    /// The allowlist entry that accepts it, if one is active.
    pub allowed_by: Option<AllowEntry>,
    /// Whether this finding fails the gate.
    pub failing: bool,
}

/// Findings counted by severity and status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Vulnerabilities (not informational), by severity.
    pub critical: usize,
    /// See `critical`.
    pub high: usize,
    /// See `critical`.
    pub medium: usize,
    /// See `critical`.
    pub low: usize,
    /// See `critical`.
    pub none: usize,
    /// See `critical`.
    pub unknown: usize,
    /// Informational findings (warnings).
    pub informational: usize,
    /// Findings accepted by the allowlist.
    pub allowed: usize,
    /// Findings that fail the gate.
    pub failing: usize,
    /// Packages checked.
    pub packages: usize,
}

/// The gate's verdict and everything behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Every finding: failing first, then by severity, package and advisory.
    pub findings: Vec<Finding>,
    /// Counts.
    pub counts: Counts,
    /// Whether the gate passed.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    /// The threshold applied.
    pub fail_on: Severity,
    /// The date allowlist expiries were checked against.
    pub today: Date,
    /// Allowlist entries past their expiry (they no longer suppress anything).
    pub expired_allows: Vec<AllowEntry>,
    /// Active allowlist entries that matched no finding (candidates for removal).
    pub unused_allows: Vec<String>,
    /// Files read.
    pub files: Vec<String>,
    /// Packages seen but not checked, with the reason.
    pub skipped: Vec<Skipped>,
    /// Files that could not be read.
    pub errors: Vec<InventoryError>,
    /// Comparisons that could not be made.
    pub warnings: Vec<String>,
    /// Advisories in the database.
    pub advisories_in_db: usize,
}

/// Runs the gate: matches `inventory` against `db` under `policy`, on `today`.
pub fn gate(db: &Database, inventory: &Inventory, policy: &Policy, today: Date) -> Report {
    let (matches, warnings) = matcher::find(db, inventory);
    let mut used_allows = vec![false; policy.allow.len()];
    let mut findings = Vec::with_capacity(matches.len());
    for m in matches {
        let Some(pkg) = inventory.packages.get(m.package) else {
            continue;
        };
        let adv = m.advisory;
        let informational = adv.informational().map(str::to_owned);
        let allow = policy
            .allow
            .iter()
            .enumerate()
            .find(|(_, e)| e.active(today) && (e.id == adv.id || adv.aliases.contains(&e.id)));
        if let Some((i, _)) = allow
            && let Some(slot) = used_allows.get_mut(i)
        {
            *slot = true;
        }
        let allowed_by = allow.map(|(_, e)| e.clone());
        let (severity, cvss_score) = m.severity;
        let failing = informational.is_none() && allowed_by.is_none() && policy.fails(severity);
        let summary = adv
            .summary
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                adv.details
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        findings.push(Finding {
            ecosystem: pkg.ecosystem.to_string(),
            package: pkg.name.clone(),
            installed_version: pkg.version.clone(),
            source_package: pkg
                .source_package
                .as_ref()
                .map(|s| format!("{} {}", s.name, s.version)),
            source_file: pkg.source_file.clone(),
            advisory_id: adv.id.clone(),
            aliases: adv.aliases.clone(),
            severity,
            cvss_score,
            fixed_versions: m.fixed_versions,
            summary: summary.chars().take(200).collect(),
            informational,
            allowed_by,
            failing,
        });
    }
    findings.sort_by(|a, b| {
        b.failing
            .cmp(&a.failing)
            .then(a.informational.is_some().cmp(&b.informational.is_some()))
            .then(rank(b.severity).cmp(&rank(a.severity)))
            .then(a.package.cmp(&b.package))
            .then(a.installed_version.cmp(&b.installed_version))
            .then(a.advisory_id.cmp(&b.advisory_id))
            .then(a.source_file.cmp(&b.source_file))
    });
    let mut counts = Counts {
        packages: inventory.packages.len(),
        ..Counts::default()
    };
    for f in &findings {
        if f.informational.is_some() {
            counts.informational += 1;
        } else {
            *match f.severity {
                Severity::Critical => &mut counts.critical,
                Severity::High => &mut counts.high,
                Severity::Medium => &mut counts.medium,
                Severity::Low => &mut counts.low,
                Severity::None => &mut counts.none,
                Severity::Unknown => &mut counts.unknown,
            } += 1;
        }
        if f.allowed_by.is_some() {
            counts.allowed += 1;
        }
        if f.failing {
            counts.failing += 1;
        }
    }
    let expired_allows: Vec<AllowEntry> = policy
        .allow
        .iter()
        .filter(|e| !e.active(today))
        .cloned()
        .collect();
    let unused_allows = policy
        .allow
        .iter()
        .zip(&used_allows)
        .filter(|(e, used)| e.active(today) && !**used)
        .map(|(e, _)| e.id.clone())
        .collect();
    let mut reasons = Vec::new();
    if counts.failing > 0 {
        let mut ids: Vec<&str> = findings
            .iter()
            .filter(|f| f.failing)
            .map(|f| f.advisory_id.as_str())
            .collect();
        ids.sort();
        ids.dedup();
        let threshold = if policy.unknown_fails {
            format!("at or above {} (or of unknown severity)", policy.fail_on)
        } else {
            format!("at or above {}", policy.fail_on)
        };
        reasons.push(format!(
            "{} finding{} {threshold} and not allowed: {}",
            counts.failing,
            if counts.failing == 1 { "" } else { "s" },
            ids.join(", ")
        ));
    }
    for e in &inventory.errors {
        reasons.push(format!("could not read {}: {}", e.source_file, e.message));
    }
    for e in &expired_allows {
        if findings
            .iter()
            .any(|f| f.failing && (f.advisory_id == e.id || f.aliases.contains(&e.id)))
        {
            reasons.push(format!(
                "the allowlist entry for {} expired on {}; renew it with a new reason or fix the dependency",
                e.id, e.expires
            ));
        }
    }
    Report {
        passed: counts.failing == 0 && inventory.errors.is_empty(),
        findings,
        counts,
        reasons,
        fail_on: policy.fail_on,
        today,
        expired_allows,
        unused_allows,
        files: inventory.files.clone(),
        skipped: inventory.skipped.clone(),
        errors: inventory.errors.clone(),
        warnings,
        advisories_in_db: db.len(),
    }
}

/// Sort rank of a severity (unknown sorts with high: it may be anything).
fn rank(s: Severity) -> u8 {
    match s {
        Severity::Critical => 6,
        Severity::High => 5,
        Severity::Unknown => 4,
        Severity::Medium => 3,
        Severity::Low => 2,
        Severity::None => 1,
    }
}

fn fixed(f: &Finding) -> String {
    if f.fixed_versions.is_empty() {
        "no fix".into()
    } else {
        f.fixed_versions.join(", ")
    }
}

fn status(f: &Finding) -> String {
    if f.failing {
        "FAIL".into()
    } else if let Some(a) = &f.allowed_by {
        format!("allowed until {}", a.expires)
    } else if let Some(kind) = &f.informational {
        format!("warning ({kind})")
    } else {
        "below threshold".into()
    }
}

fn severity_cell(f: &Finding) -> String {
    match (f.informational.is_some(), f.cvss_score) {
        (true, _) => "info".into(),
        (false, Some(s)) => format!("{} {s:.1}", f.severity),
        (false, None) => f.severity.to_string(),
    }
}

impl Report {
    /// One-line verdict.
    pub fn headline(&self) -> String {
        let c = &self.counts;
        format!(
            "{}: {} packages in {} file{}, {} vulnerabilit{} ({} critical, {} high, {} medium, {} low, {} unknown), {} warning{}, {} allowed, {} failing (fail on {})",
            if self.passed { "passed" } else { "FAILED" },
            c.packages,
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            c.critical + c.high + c.medium + c.low + c.none + c.unknown,
            if c.critical + c.high + c.medium + c.low + c.none + c.unknown == 1 {
                "y"
            } else {
                "ies"
            },
            c.critical,
            c.high,
            c.medium,
            c.low,
            c.unknown,
            c.informational,
            if c.informational == 1 { "" } else { "s" },
            c.allowed,
            c.failing,
            self.fail_on,
        )
    }

    /// A plain-text table for terminals and step logs.
    pub fn to_text(&self) -> String {
        let header = [
            "STATUS",
            "SEVERITY",
            "PACKAGE",
            "INSTALLED",
            "ADVISORY",
            "FIXED IN",
            "FILE",
        ];
        let rows: Vec<[String; 7]> = self
            .findings
            .iter()
            .map(|f| {
                [
                    status(f),
                    severity_cell(f),
                    f.package.clone(),
                    f.installed_version.clone(),
                    f.advisory_id.clone(),
                    fixed(f),
                    f.source_file.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<w$}  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        if !rows.is_empty() {
            line(&header.map(str::to_owned), &mut out);
            for r in &rows {
                line(r, &mut out);
            }
            out.push('\n');
        }
        self.notes(&mut out, "");
        let _ = writeln!(out, "{}", self.headline());
        out
    }

    fn notes(&self, out: &mut String, bullet: &str) {
        for r in &self.reasons {
            let _ = writeln!(out, "{bullet}reason: {r}");
        }
        for e in &self.expired_allows {
            let _ = writeln!(
                out,
                "{bullet}expired allowlist entry: {} (expired {}; {})",
                e.id, e.expires, e.reason
            );
        }
        for id in &self.unused_allows {
            let _ = writeln!(
                out,
                "{bullet}unused allowlist entry: {id} (matches no finding; remove it?)"
            );
        }
        for w in &self.warnings {
            let _ = writeln!(out, "{bullet}warning: {w}");
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(
                out,
                "{bullet}not checked: {} package{} (path, git or unpinned; see the JSON report's `skipped`)",
                self.skipped.len(),
                if self.skipped.len() == 1 { "" } else { "s" }
            );
        }
    }

    /// Markdown for the run page and the release.
    pub fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### Vulnerability gate: {}\n",
            if self.passed { "passed" } else { "failed" }
        );
        let _ = writeln!(out, "{}\n", esc(&self.headline()));
        if !self.findings.is_empty() {
            out.push_str("| status | severity | package | installed | advisory | fixed in | file | summary |\n|---|---|---|---|---|---|---|---|\n");
            for f in &self.findings {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    esc(&status(f)),
                    esc(&severity_cell(f)),
                    esc(&f.package),
                    esc(&f.installed_version),
                    esc(&f.advisory_id),
                    esc(&fixed(f)),
                    esc(&f.source_file),
                    esc(&f.summary),
                );
            }
            out.push('\n');
        }
        let mut notes = String::new();
        self.notes(&mut notes, "- ");
        out.push_str(&esc_lines(&notes));
        out
    }
}

fn esc_lines(s: &str) -> String {
    s.lines()
        .map(|l| format!("{}\n", l.replace('|', "\\|")))
        .collect()
}
