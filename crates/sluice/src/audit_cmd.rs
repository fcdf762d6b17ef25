//! `sluice audit`: check and export the tamper-evident event log without trusting the server.
//!
//! `verify` reads the chain and the signed checkpoints straight from the database (or from an
//! export), recomputes every hash, checks every checkpoint signature with the server's public
//! key, and names the first bad entry. `export` writes the chain as JSON lines for a SIEM (and,
//! with `--checkpoints`, the checkpoints as a JSON array), so an export can be verified later
//! on another machine. `public-key` prints the key verifiers need.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sluice_audit::{Checkpoint, PublicKey, StoredEntry, VerifyOptions};
use sluice_store::Store;

use crate::exit::{CliError, Exit};

/// Entries read from the database per query.
const PAGE: i64 = 5000;

/// Where the audit trail is.
#[derive(Args, Debug)]
pub struct Source {
    /// Data directory of the server (its database and `audit/signing.pub`).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = ".sluice")]
    data_dir: PathBuf,
    /// Database URL (postgres://...); default SQLite in the data directory.
    #[arg(long, env = "SLUICE_DATABASE")]
    database: Option<String>,
}

/// `sluice audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the whole event log: every hash, every link, every signed checkpoint; name the
    /// first bad entry. Exit 1 if anything was tampered with.
    Verify(VerifyArgs),
    /// Write the event log as JSON lines (one entry with its hashes per line) to stdout.
    Export(ExportArgs),
    /// Print the server's public key for verifying checkpoints.
    PublicKey(Source),
}

/// `sluice audit verify`
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    /// Verify an export (`sluice audit export`) instead of the database.
    #[arg(long, requires = "checkpoints")]
    file: Option<PathBuf>,
    /// The checkpoints written by `sluice audit export --checkpoints` (with --file).
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// The public key file; default DATA_DIR/audit/signing.pub.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// The server's checkpoint interval, to tell gaps from a stopped server (e.g. 60s).
    #[arg(long, default_value = "60s")]
    interval: String,
}

/// `sluice audit export`
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    source: Source,
    /// Only entries after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Also write the signed checkpoints (a JSON array) to this file.
    #[arg(long)]
    checkpoints: Option<PathBuf>,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::new(
        Exit::Server,
        format!("cannot {what} {}: {e}", path.display()),
    )
}

async fn open(s: &Source) -> Result<Store, CliError> {
    let url = match &s.database {
        Some(u) => u.clone(),
        None => {
            let db = s.data_dir.join("sluice.db");
            if !db.exists() {
                return Err(CliError::new(
                    Exit::NotFound,
                    format!("no database at {}", db.display()),
                )
                .hint("pass the server's --data-dir (or --database)"));
            }
            format!("sqlite://{}", db.display())
        }
    };
    Store::open(&url)
        .await
        .map_err(|e| CliError::new(Exit::Server, format!("cannot open the database: {e}")))
}

fn read_key(path: &Path) -> Result<PublicKey, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io_err("read the public key", path, e)
            .hint("pass --public-key, or run this on the server's machine with its --data-dir")
    })?;
    text.trim().parse().map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("{} is not a sluice audit public key: {e}", path.display()),
        )
    })
}

/// The entries after `after` (page by page) and every checkpoint of the database.
async fn read_db(s: &Source, after: i64) -> Result<(Vec<StoredEntry>, Vec<Checkpoint>), CliError> {
    let store = open(s).await?;
    let mut entries = Vec::new();
    let mut last = after;
    loop {
        let page = store
            .audit_entries(last, PAGE)
            .await
            .map_err(|e| CliError::new(Exit::Server, format!("reading the event log: {e}")))?;
        let full = page.len() as i64 == PAGE;
        if let Some(tail) = page.last() {
            last = tail.seq;
        }
        entries.extend(page);
        if !full {
            break;
        }
    }
    let checkpoints = store
        .checkpoints()
        .await
        .map_err(|e| CliError::new(Exit::Server, format!("reading checkpoints: {e}")))?;
    store.close().await;
    Ok((entries, checkpoints))
}

/// `sluice audit verify`
pub async fn verify(a: VerifyArgs) -> Result<i32, CliError> {
    let interval = sluice_server::config::parse_duration(&a.interval).map_err(|e| {
        CliError::new(Exit::Usage, format!("--interval: {e}"))
            .hint("write a duration such as 60s or 5m")
    })?;
    let key_path = a
        .public_key
        .clone()
        .unwrap_or_else(|| a.source.data_dir.join("audit/signing.pub"));
    let key = read_key(&key_path)?;
    let (entries, checkpoints) = match (&a.file, &a.checkpoints) {
        (Some(file), Some(cps)) => (read_export(file)?, read_checkpoints(cps)?),
        _ => read_db(&a.source, 0).await?,
    };
    let report = sluice_audit::verify(
        entries,
        &checkpoints,
        &key,
        VerifyOptions {
            now_ms: sluice_server::engine::now_ms(),
            checkpoint_interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
        },
    );
    let tampered: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.is_tampering())
        .collect();
    let warnings: Vec<_> = report
        .problems
        .iter()
        .filter(|p| !p.is_tampering())
        .collect();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if let Some(first) = tampered.first() {
        println!(
            "TAMPERED: {first}\n{} problem(s) in {} entries and {} checkpoints",
            tampered.len(),
            report.entries_checked,
            report.checkpoints_checked
        );
        for p in tampered.iter().skip(1).take(20) {
            println!("  also: {p}");
        }
        return Ok(Exit::Failed as i32);
    }
    println!(
        "ok: {} entries, {} checkpoints verified (key {})",
        report.entries_checked,
        report.checkpoints_checked,
        key.key_id()
    );
    Ok(0)
}

fn read_export(path: &Path) -> Result<Vec<StoredEntry>, CliError> {
    let f = std::fs::File::open(path).map_err(|e| io_err("open", path, e))?;
    sluice_audit::read_export(std::io::BufReader::new(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::new(Exit::Failed, format!("{}: {e}", path.display())))
}

fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::new(
            Exit::Failed,
            format!("{}: not a checkpoint list: {e}", path.display()),
        )
    })
}

/// `sluice audit export`
pub async fn export(a: ExportArgs) -> Result<i32, CliError> {
    let (list, cps) = read_db(&a.source, a.after).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for e in &list {
        writeln!(out, "{}", sluice_audit::export_line(e))?;
    }
    out.flush()?;
    if let Some(path) = a.checkpoints {
        let text = serde_json::to_string_pretty(&cps)
            .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| io_err("write", &path, e))?;
    }
    Ok(0)
}

/// `sluice audit public-key`
pub fn public_key(s: &Source) -> Result<i32, CliError> {
    let key = read_key(&s.data_dir.join("audit/signing.pub"))?;
    println!("{key}");
    Ok(0)
}
