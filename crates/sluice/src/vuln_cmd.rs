//! `sluice advisories import` and `sluice scan`: the vulnerability gate on the command line.
//!
//! `import` turns OSV files and RustSec checkouts into the offline advisory database that
//! `scan` (and the server's pipeline gate) read. `scan` checks a checkout, one lockfile or a
//! root-filesystem tar against it under a policy (threshold, allowlist with expiry) and exits
//! 1 when the gate fails. All the work is in `sluice-vuln`; this module only reads flags,
//! supplies today's date, prints, and picks the exit code.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use sluice_vuln::{Database, Date, ImportOptions, Policy, PolicyFile, Severity};

use crate::Output;
use crate::exit::{CliError, Exit};

/// Default advisory database directory.
const DEFAULT_DB: &str = ".sluice/advisories";

/// `sluice advisories ...`
#[derive(Subcommand)]
pub enum AdvisoriesCmd {
    /// Import OSV JSON/YAML files, directories of them, and RustSec advisory-db checkouts
    /// into an offline advisory database (replacing it as a whole).
    Import(ImportArgs),
}

/// `sluice advisories import`
#[derive(Args)]
pub struct ImportArgs {
    /// OSV files (.json, .yaml), directories of them, or RustSec advisory-db checkouts.
    #[arg(required = true, value_name = "SRC")]
    sources: Vec<PathBuf>,
    /// The advisory database directory to write.
    #[arg(long, env = "SLUICE_ADVISORY_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Import the files that parse and list those that do not (then exit 1), instead of
    /// stopping at the first bad file.
    #[arg(long)]
    keep_going: bool,
}

/// Severity thresholds.
#[derive(Clone, Copy, ValueEnum)]
pub enum FailOn {
    /// Every scored vulnerability (even CVSS 0.0).
    None,
    /// CVSS 0.1 and above.
    Low,
    /// CVSS 4.0 and above.
    Medium,
    /// CVSS 7.0 and above.
    High,
    /// CVSS 9.0 and above.
    Critical,
}

impl From<FailOn> for Severity {
    fn from(f: FailOn) -> Severity {
        match f {
            FailOn::None => Severity::None,
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        }
    }
}

/// `sluice scan`
#[derive(Args)]
pub struct ScanArgs {
    /// A checkout directory, a lockfile (Cargo.lock, package-lock.json, requirements.txt,
    /// poetry.lock, go.sum), or a root-filesystem tar as `docker export` writes it.
    path: PathBuf,
    /// The advisory database directory (written by `sluice advisories import`).
    #[arg(long, env = "SLUICE_ADVISORY_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Fail on findings at or above this severity [default: the allow file's `fail_on`,
    /// else low]. Findings without any severity always fail; informational ones never do.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Allowlist (YAML or JSON): `allow: [{id, reason, expires: YYYY-MM-DD}]`, optional
    /// `fail_on`.
    #[arg(long)]
    allow_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The date allowlist expiries are checked against, YYYY-MM-DD [default: today (UTC)].
    #[arg(long)]
    today: Option<String>,
}

/// `sluice advisories ...`
pub fn advisories(cmd: AdvisoriesCmd) -> Result<i32, CliError> {
    let AdvisoriesCmd::Import(a) = cmd;
    let options = ImportOptions {
        keep_going: a.keep_going,
    };
    let stats = sluice_vuln::import(&a.sources, &a.db, &options).map_err(|e| {
        CliError::new(Exit::Failed, e.to_string())
            .hint("fix or remove the file, or pass --keep-going to import the others")
    })?;
    let ecos: Vec<String> = stats
        .by_ecosystem
        .iter()
        .map(|(e, n)| format!("{e} {n}"))
        .collect();
    println!(
        "imported {} advisories ({} withdrawn) from {} files into {}: {}",
        stats.advisories,
        stats.withdrawn,
        stats.files,
        a.db.display(),
        if ecos.is_empty() {
            "no ecosystems".to_owned()
        } else {
            ecos.join(", ")
        }
    );
    if !stats.replaced.is_empty() {
        println!(
            "{} advisories appeared more than once; the last source read was kept: {}",
            stats.replaced.len(),
            stats.replaced.join(", ")
        );
    }
    for r in &stats.rejected {
        eprintln!("rejected: {}", r.error);
    }
    if stats.rejected.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "error: {} file(s) rejected; the database holds the others",
            stats.rejected.len()
        );
        Ok(Exit::Failed as i32)
    }
}

fn today_utc() -> Result<Date, CliError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| {
            CliError::new(
                Exit::Server,
                format!("the system clock is before 1970: {e}"),
            )
        })?
        .as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    Date::from_unix_days(days)
        .ok_or_else(|| CliError::new(Exit::Server, "the system clock is out of range"))
}

/// `sluice scan`
pub fn scan(a: ScanArgs) -> Result<i32, CliError> {
    let today = match &a.today {
        Some(t) => t
            .parse::<Date>()
            .map_err(|e| CliError::new(Exit::Usage, format!("--today: {e}")))?,
        None => today_utc()?,
    };
    let mut policy = Policy::default();
    if let Some(path) = &a.allow_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::new(
                Exit::NotFound,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        policy = PolicyFile::parse(&text, &path.display().to_string(), policy)
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    }
    if let Some(f) = a.fail_on {
        policy.fail_on = f.into();
    }
    let db = Database::open(&a.db).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    if !a.path.exists() {
        return Err(CliError::new(
            Exit::NotFound,
            format!("{} does not exist", a.path.display()),
        ));
    }
    let inventory = sluice_vuln::scan_path(&a.path).map_err(|e| {
        CliError::new(Exit::Failed, e.to_string()).hint(
            "pass a checkout directory, a lockfile, or a root-filesystem tar from `docker export`",
        )
    })?;
    let report = sluice_vuln::gate(&db, &inventory, &policy, today);
    match a.output {
        Output::Json => {
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
            println!("{json}");
        }
        Output::Text => print!("{}", report.to_text()),
    }
    Ok(if report.passed {
        0
    } else {
        Exit::Failed as i32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one crates.io advisory, a lockfile it affects, and scan arguments.
    fn setup(dir: &std::path::Path) -> ScanArgs {
        let src = dir.join("osv");
        std::fs::create_dir_all(&src).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            src.join("RUSTSEC-2099-0001.json"),
            r#"{"id": "RUSTSEC-2099-0001", "summary": "bad", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
               "affected": [{"package": {"ecosystem": "crates.io", "name": "smallvec"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.0"}]}]}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let db = dir.join("db");
        let code = advisories(AdvisoriesCmd::Import(ImportArgs {
            sources: vec![src],
            db: db.clone(),
            keep_going: false,
        }))
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(code, 0);
        let lock = dir.join("Cargo.lock");
        std::fs::write(
            &lock,
            "version = 3\n\n[[package]]\nname = \"smallvec\"\nversion = \"0.6.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        ScanArgs {
            path: lock,
            db,
            fail_on: None,
            allow_file: None,
            output: Output::Json,
            today: Some("2026-09-01".into()),
        }
    }

    #[test]
    fn scan_exit_codes_follow_the_gate() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let args = setup(dir.path());
        // High (7.5) at the default threshold: the gate fails, exit 1.
        let code = scan(ScanArgs { ..args }).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(code, 1);

        let args = setup(dir.path());
        assert_eq!(
            scan(ScanArgs {
                fail_on: Some(FailOn::Critical),
                ..args
            })
            .ok(),
            Some(0)
        );

        // An active allowlist entry passes the gate; an expired one does not.
        let allow = dir.path().join("allow.yml");
        std::fs::write(
            &allow,
            "allow:\n  - id: RUSTSEC-2099-0001\n    reason: not reachable\n    expires: 2026-09-01\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let args = setup(dir.path());
        let with_allow = |today: &str| {
            let a = setup(dir.path());
            scan(ScanArgs {
                allow_file: Some(allow.clone()),
                today: Some(today.into()),
                ..a
            })
            .ok()
        };
        assert_eq!(with_allow("2026-09-01"), Some(0));
        assert_eq!(with_allow("2026-09-02"), Some(1));

        // A bad allow file and a missing database are errors that say what to do.
        std::fs::write(&allow, "allow:\n  - id: X\n    reason: r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = scan(ScanArgs {
            allow_file: Some(allow.clone()),
            ..args
        })
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
        assert!(err.contains("needs an expiry date"), "{err}");
        let args = setup(dir.path());
        let err = scan(ScanArgs {
            db: dir.path().join("nowhere"),
            ..args
        })
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
        assert!(err.contains("sluice advisories import"), "{err}");
    }
}
