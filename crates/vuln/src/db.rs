//! The offline advisory database: importing sources into a normalised OSV-JSON directory,
//! and opening that directory for matching.
//!
//! Layout written by [`import`]:
//!
//! ```text
//! <db>/sluice-advisory-db.json   manifest: format version, counts, the sources imported
//! <db>/advisories/<ID>.json      one normalised OSV advisory per file
//! ```
//!
//! An import builds the new database in a sibling directory and swaps it in with renames, so
//! a failed import leaves the previous database as it was. Sources are OSV `.json`/`.yaml`/
//! `.yml` files, directories of them (searched recursively), and RustSec checkouts
//! (directories whose `crates/<name>/` folders hold `RUSTSEC-*.md` files). A file that does
//! not parse stops the import with an error naming it, unless [`ImportOptions::keep_going`]
//! is set, in which case every rejected file is listed in [`ImportStats::rejected`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ecosystem::Ecosystem;
use crate::error::Error;
use crate::osv::{self, Advisory, Format};
use crate::rustsec;

const MANIFEST: &str = "sluice-advisory-db.json";
const ADVISORIES: &str = "advisories";
const FORMAT: u32 = 1;
/// Advisory files larger than this are rejected (the largest real OSV files are a few MB).
const MAX_FILE: u64 = 32 << 20;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Import the files that parse and list the others in [`ImportStats::rejected`], instead
    /// of stopping at the first bad file.
    pub keep_going: bool,
}

/// A file an import rejected, and why.
#[derive(Debug, Serialize)]
pub struct RejectedFile {
    /// The file.
    pub path: String,
    /// The error (names the line or field where known).
    pub error: String,
}

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub struct ImportStats {
    /// Advisories written.
    pub advisories: usize,
    /// Of those, withdrawn (kept, never matched).
    pub withdrawn: usize,
    /// Advisories per ecosystem (an advisory naming two ecosystems counts in both).
    pub by_ecosystem: BTreeMap<String, usize>,
    /// Files read.
    pub files: usize,
    /// Advisories whose id appeared again in a later file; the later one was kept.
    pub replaced: Vec<String>,
    /// Files rejected (only with `keep_going`).
    pub rejected: Vec<RejectedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    advisories: usize,
    sources: Vec<String>,
}

/// Imports `sources` into the database directory `db`, replacing what was there.
pub fn import(
    sources: &[PathBuf],
    db: &Path,
    options: &ImportOptions,
) -> Result<ImportStats, Error> {
    if db.exists()
        && !db.join(MANIFEST).exists()
        && std::fs::read_dir(db)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::NotADatabase {
            path: db.display().to_string(),
            reason: "it exists, is not empty and has no manifest, so import will not replace it; choose an empty or new directory".into(),
        });
    }
    let mut stats = ImportStats::default();
    let mut advisories: BTreeMap<String, Advisory> = BTreeMap::new();
    for source in sources {
        let meta = std::fs::metadata(source).map_err(|e| Error::io("read", source.display(), e))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            collect_files(source, &mut files)?;
        } else {
            files.push((source.clone(), kind_of(source)));
        }
        for (path, kind) in files {
            let Some(kind) = kind else { continue };
            stats.files += 1;
            match read_one(&path, kind) {
                Ok(a) => {
                    if let Some(old) = advisories.insert(a.id.clone(), a) {
                        stats.replaced.push(old.id);
                    }
                }
                Err(e) if options.keep_going => stats.rejected.push(RejectedFile {
                    path: path.display().to_string(),
                    error: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
    }
    // Write to a sibling directory, then swap.
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "advisory-db".into());
    let parent = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io("create directory", parent.display(), e))?;
    let staging = parent.join(format!(".{name}.importing"));
    let old = parent.join(format!(".{name}.old"));
    for leftover in [&staging, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)
                .map_err(|e| Error::io("remove", leftover.display(), e))?;
        }
    }
    let dir = staging.join(ADVISORIES);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", dir.display(), e))?;
    for a in advisories.values() {
        let file = dir.join(format!("{}.json", file_stem(&a.id)));
        let text = serde_json::to_vec_pretty(a).map_err(|e| {
            Error::parse(file.display().to_string(), format!("cannot serialise: {e}"))
        })?;
        std::fs::write(&file, text).map_err(|e| Error::io("write", file.display(), e))?;
        stats.advisories += 1;
        if a.withdrawn.is_some() {
            stats.withdrawn += 1;
        }
        let mut ecos: Vec<String> = a
            .affected
            .iter()
            .filter_map(|x| x.package.as_ref())
            .map(|p| Ecosystem::parse(&p.ecosystem).base().to_owned())
            .collect();
        ecos.sort();
        ecos.dedup();
        for e in ecos {
            *stats.by_ecosystem.entry(e).or_default() += 1;
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        advisories: stats.advisories,
        sources: sources.iter().map(|s| s.display().to_string()).collect(),
    };
    let mpath = staging.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::parse(mpath.display().to_string(), e.to_string()))?;
    std::fs::write(&mpath, text).map_err(|e| Error::io("write", mpath.display(), e))?;
    if db.exists() {
        std::fs::rename(db, &old).map_err(|e| Error::io("move aside", db.display(), e))?;
    }
    std::fs::rename(&staging, db).map_err(|e| Error::io("move into place", db.display(), e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io("remove", old.display(), e))?;
    }
    stats.replaced.sort();
    Ok(stats)
}

/// What a file in an import source is.
#[derive(Debug, Clone, Copy)]
enum FileKind {
    Osv(Format),
    RustSec(rustsec::Collection),
}

fn kind_of(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_string_lossy();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => Some(FileKind::Osv(Format::Json)),
        Some("yaml" | "yml") => Some(FileKind::Osv(Format::Yaml)),
        Some("md") if name.starts_with("RUSTSEC-") => {
            // `rust/<component>/RUSTSEC-*.md`; everything else is a crate.
            let under_rust = path
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|n| n == "rust");
            Some(FileKind::RustSec(if under_rust {
                rustsec::Collection::Rust
            } else {
                rustsec::Collection::Crates
            }))
        }
        _ => None,
    }
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, Option<FileKind>)>) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read directory", dir.display(), e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = e
            .file_type()
            .map_err(|err| Error::io("read", path.display(), err))?;
        if ft.is_dir() {
            collect_files(&path, out)?;
        } else if ft.is_file() {
            out.push((path.clone(), kind_of(&path)));
        }
    }
    Ok(())
}

fn read_one(path: &Path, kind: FileKind) -> Result<Advisory, Error> {
    let shown = path.display().to_string();
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io("read", &shown, e))?
        .len();
    if len > MAX_FILE {
        return Err(Error::parse(
            &shown,
            format!("the file is {len} bytes, over the 32 MiB limit for one advisory"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", &shown, e))?;
    match kind {
        FileKind::Osv(format) => osv::parse_bytes(&bytes, format, &shown),
        FileKind::RustSec(collection) => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| Error::parse(&shown, "the file is not UTF-8 text"))?;
            rustsec::parse(text, collection, &shown)
        }
    }
}

/// A file name for an advisory id: characters other than `[A-Za-z0-9._-]` become `_`.
fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An opened advisory database, indexed by ecosystem and package name.
#[derive(Debug, Default)]
pub struct Database {
    advisories: Vec<Advisory>,
    /// (ecosystem base, normalised name) -> indices of (advisory, affected entry).
    index: HashMap<(String, String), Vec<(usize, usize)>>,
}

impl Database {
    /// Opens a directory written by [`import`].
    pub fn open(dir: &Path) -> Result<Database, Error> {
        let shown = dir.display().to_string();
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read(&mpath).map_err(|e| Error::NotADatabase {
            path: shown.clone(),
            reason: format!("cannot read {}: {e}", mpath.display()),
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| Error::NotADatabase {
                path: shown.clone(),
                reason: format!("its manifest does not parse: {e}"),
            })?;
        if manifest.format != FORMAT {
            return Err(Error::NotADatabase {
                path: shown,
                reason: format!(
                    "it has format {}, this sluice reads format {FORMAT}",
                    manifest.format
                ),
            });
        }
        let adir = dir.join(ADVISORIES);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&adir)
            .map_err(|e| Error::io("read directory", adir.display(), e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        let mut advisories = Vec::with_capacity(names.len());
        for p in names {
            let bytes = std::fs::read(&p).map_err(|e| Error::io("read", p.display(), e))?;
            advisories.push(osv::parse_bytes(
                &bytes,
                Format::Json,
                &p.display().to_string(),
            )?);
        }
        if advisories.len() != manifest.advisories {
            return Err(Error::NotADatabase {
                path: shown,
                reason: format!(
                    "the manifest lists {} advisories but {} files are present; re-run the import",
                    manifest.advisories,
                    advisories.len()
                ),
            });
        }
        Ok(Database::from_advisories(advisories))
    }

    /// A database held in memory (tests, or callers that parsed advisories themselves).
    pub fn from_advisories(advisories: Vec<Advisory>) -> Database {
        let mut index: HashMap<(String, String), Vec<(usize, usize)>> = HashMap::new();
        for (i, a) in advisories.iter().enumerate() {
            for (j, aff) in a.affected.iter().enumerate() {
                if let Some(p) = &aff.package {
                    let eco = Ecosystem::parse(&p.ecosystem);
                    index
                        .entry((eco.base().to_owned(), eco.normalize_name(&p.name)))
                        .or_default()
                        .push((i, j));
                }
            }
        }
        Database { advisories, index }
    }

    /// All advisories, withdrawn ones included.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Number of advisories.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// True if the database has no advisories.
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// The (advisory, affected entry) pairs that name this package in this ecosystem
    /// (release compatibility is the caller's check).
    pub fn candidates(
        &self,
        ecosystem: &Ecosystem,
        name: &str,
    ) -> Vec<(&Advisory, &osv::Affected)> {
        let key = (ecosystem.base().to_owned(), ecosystem.normalize_name(name));
        self.index
            .get(&key)
            .map(|v| {
                v.iter()
                    .filter_map(|(i, j)| {
                        let a = self.advisories.get(*i)?;
                        Some((a, a.affected.get(*j)?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
