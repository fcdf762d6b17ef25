//! Integration tests for sluice-vuln against real data: the RustSec advisory database in both
//! its own layout and its OSV JSON export (`../shared/advisory-db`, see its SOURCE.md), real
//! Cargo.lock files of released Rust programs compared with cargo-audit's findings, a root
//! filesystem tar built here, the gate's policy rules, and arbitrary bytes fed to every
//! parser.
//!
//! The advisory data is `../shared/advisory-db` beside the checkout, or the copy of that
//! snapshot committed under `tests/fixtures/` (see `support/advisory_data.rs`): these tests
//! never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use sluice_vuln::inventory::{self, FileKind, OsRelease};
use sluice_vuln::osv::{self, Advisory, Format};
use sluice_vuln::{
    AllowEntry, Database, Date, Ecosystem, ImportOptions, Inventory, Policy, Severity, gate,
    import, scan_dir, scan_rootfs_tar,
};

#[path = "support/advisory_data.rs"]
mod advisory_data;

fn today() -> Date {
    Date::new(2026, 9, 1).unwrap_or_else(|| panic!("valid date"))
}

/// The RustSec layout and the OSV export, each imported once into its own database.
struct Imported {
    _dir: tempfile::TempDir,
    rustsec: PathBuf,
    osv: PathBuf,
}

fn imported() -> &'static Imported {
    static CELL: OnceLock<Imported> = OnceLock::new();
    CELL.get_or_init(|| {
        let src = advisory_data::advisory_data();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let rustsec = dir.path().join("db-rustsec");
        let osv = dir.path().join("db-osv");
        let opts = ImportOptions::default();
        let a = import(&[src.join("rustsec")], &rustsec, &opts).unwrap_or_else(|e| panic!("{e}"));
        let b = import(&[src.join("osv-rustsec")], &osv, &opts).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.advisories > 1000, "{a:?}");
        assert_eq!(a.rejected.len() + b.rejected.len(), 0);
        assert!(a.replaced.is_empty() && b.replaced.is_empty());
        Imported {
            _dir: dir,
            rustsec,
            osv,
        }
    })
}

/// What matching depends on, per advisory: a comparable summary.
fn essence(a: &Advisory) -> String {
    let mut aliases = a.aliases.clone();
    aliases.sort();
    let ranges: Vec<String> = a
        .affected
        .iter()
        .map(|x| {
            let p = x
                .package
                .as_ref()
                .map(|p| format!("{}/{}", p.ecosystem, p.name));
            let events: Vec<String> = x
                .ranges
                .iter()
                .flat_map(|r| {
                    r.events
                        .iter()
                        .map(move |e| format!("{}:{}={}", r.kind, e.single().0, e.single().1))
                })
                .collect();
            format!("{p:?} {events:?} {:?}", x.versions)
        })
        .collect();
    let sev: Vec<String> = a
        .severity
        .iter()
        .map(|s| format!("{}={}", s.kind, s.score))
        .collect();
    format!(
        "aliases={aliases:?} withdrawn={} informational={:?} severity={sev:?} affected={ranges:?}",
        a.withdrawn.is_some(),
        a.informational()
    )
}

#[test]
fn rustsec_layout_and_osv_export_yield_the_same_advisories() {
    let db = imported();
    let a = Database::open(&db.rustsec).unwrap_or_else(|e| panic!("{e}"));
    let b = Database::open(&db.osv).unwrap_or_else(|e| panic!("{e}"));
    let map = |d: &Database| -> BTreeMap<String, String> {
        d.advisories()
            .iter()
            .filter(|a| {
                a.affected.iter().any(|x| {
                    x.package
                        .as_ref()
                        .is_some_and(|p| p.ecosystem == "crates.io")
                })
            })
            .map(|a| (a.id.clone(), essence(a)))
            .collect()
    };
    let (ra, rb) = (map(&a), map(&b));
    let ids_a: BTreeSet<&String> = ra.keys().collect();
    let ids_b: BTreeSet<&String> = rb.keys().collect();
    // Known difference: the OSV export (its branch is regenerated separately) still holds
    // RUSTSEC-2025-0000, a copy of RUSTSEC-2025-0065 under the placeholder id an advisory has
    // before it is numbered (same package, same aliases). Any other difference fails.
    let placeholder_copy = |id: &str| {
        id.ends_with("-0000")
            && b.advisories().iter().find(|x| x.id == id).is_some_and(|x| {
                a.advisories()
                    .iter()
                    .any(|y| y.id != x.id && y.aliases.iter().any(|al| x.aliases.contains(al)))
            })
    };
    let only: Vec<String> = ids_a
        .symmetric_difference(&ids_b)
        .filter(|id| ra.contains_key(**id) || !placeholder_copy(id))
        .map(|id| {
            format!(
                "{id} only in {}",
                if ra.contains_key(*id) {
                    "rustsec/"
                } else {
                    "osv-rustsec/"
                }
            )
        })
        .collect();
    assert!(
        only.is_empty(),
        "the two copies list different advisories: {only:?}"
    );
    assert_eq!(
        ids_b.len() - ids_a.len(),
        1,
        "expected exactly the one known placeholder copy"
    );
    let differing: Vec<String> = ra
        .iter()
        .filter(|(id, e)| rb.get(*id).is_some_and(|x| x != *e))
        .map(|(id, e)| {
            format!(
                "{id}\n  rustsec: {e}\n  osv:     {}",
                rb.get(id).map_or("-", String::as_str)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{} advisories differ:\n{}",
        differing.len(),
        differing.join("\n")
    );
    println!("{} crates.io advisories identical in both copies", ra.len());
}

/// The advisories cargo-audit reported for one lockfile, in the reduced form the bench
/// writes (`bench/scanner_agreement.sh --update-golden` regenerates these files by running
/// cargo-audit offline against the same RustSec snapshot): `"ID name@version"` strings.
#[derive(serde::Deserialize)]
struct Golden {
    vulnerabilities: BTreeSet<String>,
    warnings: BTreeMap<String, BTreeSet<String>>,
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cargo-locks");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .collect();
    v.sort();
    v
}

#[test]
fn cargo_lock_findings_equal_cargo_audit() {
    let db = imported();
    let db = Database::open(&db.rustsec).unwrap_or_else(|e| panic!("{e}"));
    let locks = fixtures();
    assert!(locks.len() >= 10, "expected at least 10 fixture lockfiles");
    let mut total = (0, 0);
    let mut diffs = Vec::new();
    for lock in &locks {
        let text = std::fs::read_to_string(lock).unwrap_or_else(|e| panic!("{e}"));
        let name = lock
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let inv = inventory::parse_file(FileKind::CargoLock, &text, &name, &OsRelease::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let report = gate(&db, &inv, &Policy::default(), today());
        let mut vulns = BTreeSet::new();
        let mut warns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &report.findings {
            let key = format!("{} {}@{}", f.advisory_id, f.package, f.installed_version);
            match &f.informational {
                None => {
                    vulns.insert(key);
                }
                // cargo-audit reports these three kinds as warnings and no others.
                Some(k) if ["unmaintained", "unsound", "notice"].contains(&k.as_str()) => {
                    warns.entry(k.clone()).or_default().insert(key);
                }
                Some(_) => {}
            }
        }
        let golden_path = lock.with_extension("cargo-audit.json");
        let golden: Golden = serde_json::from_str(
            &std::fs::read_to_string(&golden_path)
                .unwrap_or_else(|e| panic!("{}: {e}", golden_path.display())),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        total.0 += vulns.len();
        total.1 += golden.vulnerabilities.len();
        for x in vulns.symmetric_difference(&golden.vulnerabilities) {
            let side = if vulns.contains(x) {
                "only sluice"
            } else {
                "only cargo-audit"
            };
            diffs.push(format!("{name}: vulnerability {x}: {side}"));
        }
        let kinds: BTreeSet<&String> = warns.keys().chain(golden.warnings.keys()).collect();
        for k in kinds {
            let empty = BTreeSet::new();
            let ours = warns.get(k).unwrap_or(&empty);
            let theirs = golden.warnings.get(k).unwrap_or(&empty);
            for x in ours.symmetric_difference(theirs) {
                let side = if ours.contains(x) {
                    "only sluice"
                } else {
                    "only cargo-audit"
                };
                diffs.push(format!("{name}: {k} warning {x}: {side}"));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(
        total.1 > 50,
        "the fixtures should carry real findings: {total:?}"
    );
    println!(
        "{} lockfiles, {} vulnerabilities, identical to cargo-audit",
        locks.len(),
        total.0
    );
}

fn osv_json(id: &str, eco: &str, name: &str, events: &str, extra: &str) -> Advisory {
    let text = format!(
        r#"{{"id": "{id}", "summary": "{id} summary", "aliases": ["CVE-{id}"], "affected": [{{"package": {{"ecosystem": "{eco}", "name": "{name}"}}, "ranges": [{{"type": "ECOSYSTEM", "events": {events}}}]}}]{extra}}}"#
    );
    osv::parse(&text, Format::Json, id).unwrap_or_else(|e| panic!("{e}"))
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "./usr/lib/os-release-link", "../../etc/os-release")
        .unwrap_or_else(|e| panic!("{e}"));
    b.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

const DPKG_STATUS: &str = "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u1\n\nPackage: openssl\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\n\nPackage: zlib1g\nStatus: install ok installed\nSource: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1+b1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n";

fn image_db() -> Database {
    Database::from_advisories(vec![
        osv_json(
            "DSA-1",
            "Debian:12",
            "openssl",
            r#"[{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]"#,
            r#", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]"#,
        ),
        osv_json(
            "DSA-2",
            "Debian:11",
            "openssl",
            r#"[{"introduced": "0"}]"#,
            "",
        ),
        osv_json(
            "DSA-3",
            "Debian:12",
            "zlib",
            r#"[{"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-1"}]"#,
            "",
        ),
        osv_json(
            "ALPINE-1",
            "Alpine:v3.19",
            "openssl",
            r#"[{"introduced": "0"}, {"fixed": "3.1.4-r6"}]"#,
            r#", "database_specific": {"severity": "CRITICAL"}"#,
        ),
        osv_json(
            "GHSA-py",
            "PyPI",
            "django",
            r#"[{"introduced": "3.0"}, {"fixed": "3.2.1"}]"#,
            r#", "database_specific": {"severity": "MODERATE"}"#,
        ),
        osv_json(
            "WITHDRAWN-1",
            "PyPI",
            "django",
            r#"[{"introduced": "0"}]"#,
            r#", "withdrawn": "2024-01-01T00:00:00Z""#,
        ),
    ])
}

#[test]
fn rootfs_tar_finds_os_packages_and_lockfiles() {
    let tar = tar_of(&[
        ("./etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        ("./var/lib/dpkg/status", DPKG_STATUS),
        ("./app/requirements.txt", "Django==3.1.0\nflask>=2\n"),
        ("./app/node_modules/x/package-lock.json", "not even json"),
        ("./usr/share/doc/readme", "ignored"),
    ]);
    let inv = scan_rootfs_tar(&tar[..]).unwrap_or_else(|e| panic!("{e}"));
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    assert_eq!(inv.files, ["/app/requirements.txt", "/var/lib/dpkg/status"]);
    let report = gate(
        &image_db(),
        &inv,
        &Policy {
            fail_on: Severity::High,
            ..Policy::default()
        },
        today(),
    );
    let got: Vec<(String, String, String, bool)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.advisory_id.clone(),
                f.package.clone(),
                f.source_file.clone(),
                f.failing,
            )
        })
        .collect();
    // DSA-1 names the source package openssl: both binaries built from it are affected.
    // DSA-2 is for Debian 11, DSA-3's fix is the installed source version, the withdrawn
    // advisory never matches, and the medium PyPI finding is below the threshold.
    assert_eq!(
        got,
        [
            (
                "DSA-1".into(),
                "libssl3".into(),
                "/var/lib/dpkg/status".into(),
                true
            ),
            (
                "DSA-1".into(),
                "openssl".into(),
                "/var/lib/dpkg/status".into(),
                true
            ),
            (
                "GHSA-py".into(),
                "django".into(),
                "/app/requirements.txt".into(),
                false
            ),
        ]
    );
    assert!(!report.passed);
    assert_eq!(report.findings[0].fixed_versions, ["3.0.11-1~deb12u2"]);
    assert_eq!(report.findings[0].cvss_score, Some(7.5));
    assert_eq!(report.findings[0].ecosystem, "Debian:12");
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);

    // Alpine: the apk database and the release from os-release.
    let apk = "P:libcrypto3\nV:3.1.4-r5\no:openssl\n\nP:musl\nV:1.2.4_git20230717-r4\n";
    let tar = tar_of(&[
        ("etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n"),
        ("lib/apk/db/installed", apk),
    ]);
    let inv = scan_rootfs_tar(&tar[..]).unwrap_or_else(|e| panic!("{e}"));
    let report = gate(&image_db(), &inv, &Policy::default(), today());
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].severity, Severity::Critical);
    assert_eq!(
        report.findings[0].source_package.as_deref(),
        Some("openssl 3.1.4-r5")
    );
}

#[test]
fn bad_tars_and_bad_files_inside_are_reported() {
    assert!(
        scan_rootfs_tar(&b"\x1f\x8b\x08\x00rest"[..])
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("gzip")
    );
    assert!(scan_rootfs_tar(&b"short"[..]).is_err());
    let mut garbage = vec![0x41u8; 2048];
    garbage[100] = 0;
    assert!(scan_rootfs_tar(&garbage[..]).is_err());
    // An unparsable dpkg status inside an image fails the gate with its path and line.
    let tar = tar_of(&[("var/lib/dpkg/status", "Package: a\nno colon here\n")]);
    let inv = scan_rootfs_tar(&tar[..]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.errors.len(), 1);
    assert!(
        inv.errors[0]
            .message
            .starts_with("/var/lib/dpkg/status:2: "),
        "{:?}",
        inv.errors
    );
    let report = gate(&image_db(), &inv, &Policy::default(), today());
    assert!(!report.passed);
    assert!(report.reasons[0].starts_with("could not read /var/lib/dpkg/status"));
}

#[test]
fn scan_dir_finds_lockfiles_and_skips_vendored_trees() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = |rel: &str, body: &str| {
        let p = dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(p, body).unwrap_or_else(|e| panic!("{e}"));
    };
    w(
        "Cargo.lock",
        "version = 3\n\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    );
    w(
        "web/package-lock.json",
        r#"{"lockfileVersion": 3, "packages": {"node_modules/lodash": {"version": "4.17.20"}}}"#,
    );
    w(
        "py/poetry.lock",
        "[[package]]\nname = \"Django\"\nversion = \"3.1.0\"\n",
    );
    w("go/go.sum", "golang.org/x/text v0.3.5 h1:x\n");
    w(
        "web/node_modules/dep/package-lock.json",
        "ignored: not json",
    );
    w("target/debug/Cargo.lock", "ignored");
    w(".git/Cargo.lock", "ignored");
    w("broken/requirements.txt", "Django==3.1.0\n");
    w("bad/go.sum", "only two\n");
    let inv = scan_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        inv.files,
        [
            "Cargo.lock",
            "broken/requirements.txt",
            "go/go.sum",
            "py/poetry.lock",
            "web/package-lock.json"
        ]
    );
    assert_eq!(inv.errors.len(), 1);
    assert!(
        inv.errors[0].message.starts_with("bad/go.sum:1: "),
        "{:?}",
        inv.errors
    );
    let ecos: BTreeSet<String> = inv
        .packages
        .iter()
        .map(|p| p.ecosystem.to_string())
        .collect();
    assert_eq!(
        ecos,
        ["Go", "PyPI", "crates.io", "npm"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let report = gate(&image_db(), &inv, &Policy::default(), today());
    let django: Vec<&str> = report
        .findings
        .iter()
        .map(|f| f.source_file.as_str())
        .collect();
    assert_eq!(django.len(), 2);
    assert!(django.contains(&"py/poetry.lock") && django.contains(&"broken/requirements.txt"));
    assert!(!report.passed);
}

#[test]
fn allowlist_and_thresholds_decide_the_gate() {
    let inv = Inventory {
        packages: vec![sluice_vuln::Package {
            ecosystem: Ecosystem::PyPI,
            name: "Django".into(),
            version: "3.1".into(),
            source_package: None,
            source_file: "requirements.txt".into(),
        }],
        ..Inventory::default()
    };
    let db = image_db();
    let entry = |expires: Date| AllowEntry {
        id: "CVE-GHSA-py".into(),
        reason: "not reachable from our code".into(),
        expires,
    };
    let medium = Policy {
        fail_on: Severity::Medium,
        ..Policy::default()
    };
    let r = gate(&db, &inv, &medium, today());
    assert!(!r.passed && r.counts.failing == 1 && r.counts.medium == 1);
    assert!(r.reasons[0].contains("GHSA-py"), "{:?}", r.reasons);
    // An active entry (matched by alias) suppresses; on its expiry day it still does.
    let allowed = Policy {
        allow: vec![entry(today())],
        ..medium.clone()
    };
    let r = gate(&db, &inv, &allowed, today());
    assert!(r.passed, "{:?}", r.reasons);
    assert_eq!(
        r.findings[0].allowed_by.as_ref().map(|a| a.id.as_str()),
        Some("CVE-GHSA-py")
    );
    assert_eq!(r.counts.allowed, 1);
    // The day after, it no longer does, and the report says so.
    let expired = Policy {
        allow: vec![entry(Date::new(2026, 8, 31).unwrap_or_else(|| panic!()))],
        ..medium.clone()
    };
    let r = gate(&db, &inv, &expired, today());
    assert!(!r.passed);
    assert_eq!(r.expired_allows.len(), 1);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("expired on 2026-08-31")),
        "{:?}",
        r.reasons
    );
    // Above the finding's severity the gate passes; unused allow entries are listed.
    let high = Policy {
        fail_on: Severity::High,
        allow: vec![AllowEntry {
            id: "OTHER".into(),
            ..entry(today())
        }],
        ..Policy::default()
    };
    let r = gate(&db, &inv, &high, today());
    assert!(r.passed);
    assert_eq!(r.unused_allows, ["OTHER"]);
    // Renderings carry the verdict and the table.
    let text = r.to_text();
    assert!(
        text.contains("below threshold") && text.contains("GHSA-py") && text.contains("3.2.1"),
        "{text}"
    );
    let md = r.to_markdown();
    assert!(
        md.starts_with("### Vulnerability gate: passed") && md.contains("| GHSA-py |"),
        "{md}"
    );
    let json = serde_json::to_string(&r).unwrap_or_else(|e| panic!("{e}"));
    let back: sluice_vuln::Report = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, r);
}

#[test]
fn informational_warns_and_unknown_severity_fails() {
    let db = imported();
    let db = Database::open(&db.rustsec).unwrap_or_else(|e| panic!("{e}"));
    let lock = |name: &str, version: &str| {
        let text = format!(
            "version = 3\n\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
        );
        inventory::parse_file(
            FileKind::CargoLock,
            &text,
            "Cargo.lock",
            &OsRelease::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // term_size 0.3.2: RUSTSEC-2020-0163, unmaintained: a warning, never a failure.
    let r = gate(
        &db,
        &lock("term_size", "0.3.2"),
        &Policy::default(),
        today(),
    );
    assert!(r.passed, "{}", r.to_text());
    assert!(!r.findings.is_empty());
    assert!(
        r.findings
            .iter()
            .all(|f| f.informational.as_deref() == Some("unmaintained")),
        "{}",
        r.to_text()
    );
    // thread_local 1.0.1: RUSTSEC-2022-0006 has no CVSS vector: unknown, fails at any
    // threshold unless the policy says otherwise.
    let critical = Policy {
        fail_on: Severity::Critical,
        ..Policy::default()
    };
    let r = gate(&db, &lock("thread_local", "1.0.1"), &critical, today());
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].severity, Severity::Unknown);
    assert!(!r.passed);
    let lenient = Policy {
        unknown_fails: false,
        ..critical
    };
    assert!(gate(&db, &lock("thread_local", "1.0.1"), &lenient, today()).passed);
}

#[test]
fn import_errors_name_the_file_and_keep_the_old_database() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
    let good = r#"{"id": "GHSA-good", "affected": [{"package": {"ecosystem": "npm", "name": "x"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}"#;
    std::fs::write(src.join("a.json"), good).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(src.join("b.yaml"), "id: GHSA-yaml\naffected:\n  - package: {ecosystem: npm, name: y}\n    ranges: [{type: SEMVER, events: [{introduced: \"0\"}]}]\n").unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("db");
    let stats = import(std::slice::from_ref(&src), &db, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.advisories, stats.files), (2, 2));
    std::fs::write(src.join("c.json"), "{\"id\": \"X\", \"affected\": [{\"ranges\": [{\"type\": \"SEMVER\", \"events\": [{\"fixed\": \"banana\"}]}], \"package\": {\"ecosystem\": \"npm\", \"name\": \"z\"}}]}").unwrap_or_else(|e| panic!("{e}"));
    let err = import(std::slice::from_ref(&src), &db, &ImportOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("c.json: field `affected[0].ranges[0].events[0].fixed`"),
        "{err}"
    );
    // The previous database is untouched.
    assert_eq!(Database::open(&db).map(|d| d.len()).ok(), Some(2));
    // keep_going imports the rest and lists the rejected file.
    let stats =
        import(&[src], &db, &ImportOptions { keep_going: true }).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.advisories, 2);
    assert_eq!(stats.rejected.len(), 1);
    assert!(stats.rejected[0].path.ends_with("c.json"));
    // A directory that is not a database is refused.
    let msg = Database::open(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("is not a sluice advisory database")
            && msg.contains("sluice advisories import"),
        "{msg}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every parser returns Ok or Err on arbitrary bytes, never panics.
    #[test]
    fn no_parser_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = osv::parse(&text, Format::Json, "x.json");
        let _ = osv::parse(&text, Format::Yaml, "x.yaml");
        let _ = sluice_vuln::rustsec::parse(&text, sluice_vuln::rustsec::Collection::Crates, "x.md");
        let _ = sluice_vuln::rustsec::parse(&format!("```toml\n{text}\n```\n"), sluice_vuln::rustsec::Collection::Crates, "x.md");
        for kind in [FileKind::CargoLock, FileKind::NpmLock, FileKind::Requirements, FileKind::PoetryLock, FileKind::GoSum, FileKind::DpkgStatus, FileKind::ApkInstalled] {
            let _ = inventory::parse_file(kind, &text, "f", &OsRelease::default());
        }
        let _ = scan_rootfs_tar(&bytes[..]);
        let _ = sluice_vuln::PolicyFile::parse(&text, "allow.yml", Policy::default());
    }

    /// Structured near-misses reach deeper into the parsers.
    #[test]
    fn no_parser_panics_on_near_valid_input(
        name in "[a-z@/._-]{0,12}",
        version in "[0-9a-z.~+:_-]{0,14}",
        field in "[a-zA-Z_]{0,10}",
    ) {
        let lock = format!("version = 3\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n");
        let _ = inventory::parse_file(FileKind::CargoLock, &lock, "Cargo.lock", &OsRelease::default());
        let npm = format!(r#"{{"lockfileVersion": 1, "dependencies": {{"{name}": {{"version": "npm:{name}@{version}"}}}}}}"#);
        let _ = inventory::parse_file(FileKind::NpmLock, &npm, "package-lock.json", &OsRelease::default());
        let dpkg = format!("Package: {name}\nStatus: install ok installed\nVersion: {version}\nSource: {name} ({version})\n{field}: x\n");
        let _ = inventory::parse_file(FileKind::DpkgStatus, &dpkg, "status", &OsRelease::default());
        let apk = format!("P:{name}\nV:{version}\n");
        let _ = inventory::parse_file(FileKind::ApkInstalled, &apk, "installed", &OsRelease::default());
        let osv_text = format!(r#"{{"id": "X", "affected": [{{"package": {{"ecosystem": "Debian:12", "name": "{name}"}}, "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "{version}"}}, {{"limit": "{version}"}}]}}]}}]}}"#);
        if let Ok(a) = osv::parse(&osv_text, Format::Json, "x.json") {
            let db = Database::from_advisories(vec![a]);
            let inv = inventory::parse_file(FileKind::DpkgStatus, &dpkg, "status", &OsRelease::default()).unwrap_or_default();
            let _ = gate(&db, &inv, &Policy::default(), today()).to_markdown();
        }
        let rs = format!("```toml\n[advisory]\nid = \"RUSTSEC-0\"\npackage = \"{name}\"\ndate = \"2020-01-01\"\n[versions]\npatched = [\"{version}\"]\nunaffected = [\">= {version}\"]\n```\n# t\n");
        let _ = sluice_vuln::rustsec::parse(&rs, sluice_vuln::rustsec::Collection::Crates, "x.md");
    }
}
