//! Package inventories: which packages, at which versions, a checkout or an image contains,
//! and the file each one came from.
//!
//! Readers, one module each: `Cargo.lock` ([`cargo_lock`]), `package-lock.json` and
//! `npm-shrinkwrap.json` ([`npm`]), `requirements*.txt` and `poetry.lock` ([`python`]),
//! `go.sum` ([`gosum`]), Debian's dpkg status ([`dpkg`]) and Alpine's installed database
//! ([`apk`]). Each takes the file's text and its name (for messages) and either adds all its
//! packages or returns an error naming the file and line: a file is never half-read.
//!
//! Packages a reader sees but does not check (path and git dependencies, unpinned
//! requirements, go.sum entries only used for module resolution, packages not installed) are
//! listed in [`Inventory::skipped`] with the reason, never dropped silently. Files that do not
//! parse are listed in [`Inventory::errors`]; the gate fails on them, since it cannot vouch
//! for what it could not read.

pub mod apk;
pub mod cargo_lock;
pub mod dpkg;
pub mod gosum;
pub mod npm;
pub mod python;

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ecosystem::Ecosystem;
use crate::error::Error;

/// Directories never searched: VCS data, build output, installed npm packages.
pub const SKIP_DIRS: [&str; 3] = [".git", "target", "node_modules"];
/// Files larger than this are not read (reported as skipped).
pub const MAX_FILE: u64 = 64 << 20;

/// One package to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// The ecosystem (with the distribution release for OS packages, when known).
    pub ecosystem: Ecosystem,
    /// Name as the ecosystem spells it.
    pub name: String,
    /// Installed or locked version.
    pub version: String,
    /// For OS packages built from a differently named or versioned source package (dpkg
    /// `Source:`, apk `o:`): that source package. Distribution advisories name source packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_package: Option<SourcePackage>,
    /// The file it was read from (relative to the scanned directory, or the path in the image).
    pub source_file: String,
}

/// A source package name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePackage {
    /// Source package name.
    pub name: String,
    /// Source package version.
    pub version: String,
}

/// A package seen but not checked, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The file it was read from.
    pub source_file: String,
    /// The package name, or the line's text when there is no name.
    pub name: String,
    /// The version, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it is not checked.
    pub reason: String,
}

/// A file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryError {
    /// The file.
    pub source_file: String,
    /// The error (names the line or field where known).
    pub message: String,
}

/// Everything found in a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Packages to check.
    pub packages: Vec<Package>,
    /// Packages seen but not checked.
    pub skipped: Vec<Skipped>,
    /// Files that could not be read.
    pub errors: Vec<InventoryError>,
    /// Files read.
    pub files: Vec<String>,
}

impl Inventory {
    fn skip(&mut self, file: &str, name: &str, version: Option<&str>, reason: &str) {
        self.skipped.push(Skipped {
            source_file: file.to_owned(),
            name: name.to_owned(),
            version: version.map(str::to_owned),
            reason: reason.to_owned(),
        });
    }

    fn add(&mut self, ecosystem: Ecosystem, name: &str, version: &str, file: &str) {
        self.packages.push(Package {
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            source_package: None,
            source_file: file.to_owned(),
        });
    }

    /// Adds another inventory's content.
    pub fn extend(&mut self, other: Inventory) {
        self.packages.extend(other.packages);
        self.skipped.extend(other.skipped);
        self.errors.extend(other.errors);
        self.files.extend(other.files);
    }
}

/// The kinds of file an inventory is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `Cargo.lock`
    CargoLock,
    /// `package-lock.json`, `npm-shrinkwrap.json`
    NpmLock,
    /// `requirements*.txt`
    Requirements,
    /// `poetry.lock`
    PoetryLock,
    /// `go.sum`
    GoSum,
    /// `var/lib/dpkg/status` or a file in `var/lib/dpkg/status.d/`
    DpkgStatus,
    /// `lib/apk/db/installed`
    ApkInstalled,
}

/// The kind of a lockfile, from its file name.
pub fn lockfile_kind(file_name: &str) -> Option<FileKind> {
    match file_name {
        "Cargo.lock" => Some(FileKind::CargoLock),
        "package-lock.json" | "npm-shrinkwrap.json" => Some(FileKind::NpmLock),
        "poetry.lock" => Some(FileKind::PoetryLock),
        "go.sum" => Some(FileKind::GoSum),
        n if n.starts_with("requirements") && n.ends_with(".txt") => Some(FileKind::Requirements),
        _ => None,
    }
}

/// The kind of a file at a root-filesystem path (`var/lib/dpkg/status`, lockfiles anywhere).
fn rootfs_kind(rel: &str) -> Option<FileKind> {
    if rel == "var/lib/dpkg/status" {
        return Some(FileKind::DpkgStatus);
    }
    if let Some(name) = rel.strip_prefix("var/lib/dpkg/status.d/") {
        // Distroless images keep one status paragraph per package here, next to md5sums.
        if !name.contains('/') && !name.ends_with(".md5sums") && !name.is_empty() {
            return Some(FileKind::DpkgStatus);
        }
    }
    if rel == "lib/apk/db/installed" {
        return Some(FileKind::ApkInstalled);
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    lockfile_kind(name)
}

/// Parses one lockfile's text into a fresh inventory (the ecosystem release for OS package
/// databases comes from `os`).
pub fn parse_file(
    kind: FileKind,
    text: &str,
    file: &str,
    os: &OsRelease,
) -> Result<Inventory, Error> {
    let mut inv = Inventory::default();
    match kind {
        FileKind::CargoLock => cargo_lock::parse(text, file, &mut inv)?,
        FileKind::NpmLock => npm::parse(text, file, &mut inv)?,
        FileKind::Requirements => python::parse_requirements(text, file, &mut inv),
        FileKind::PoetryLock => python::parse_poetry(text, file, &mut inv)?,
        FileKind::GoSum => gosum::parse(text, file, &mut inv)?,
        FileKind::DpkgStatus => dpkg::parse(text, file, os.dpkg_ecosystem(), &mut inv)?,
        FileKind::ApkInstalled => apk::parse(text, file, os.apk_ecosystem(), &mut inv)?,
    }
    inv.files.push(file.to_owned());
    Ok(inv)
}

/// `/etc/os-release`: which distribution and release a root filesystem is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `alpine` ...).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `22.04`, `3.19.1`).
    pub version_id: Option<String>,
}

impl OsRelease {
    /// Parses the `KEY=value` lines of os-release(5).
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches(['"', '\'']).to_owned();
            match k.trim() {
                "ID" => os.id = Some(v),
                "VERSION_ID" => os.version_id = Some(v),
                _ => {}
            }
        }
        os
    }

    fn dpkg_ecosystem(&self) -> Ecosystem {
        match self.id.as_deref() {
            Some("ubuntu") => Ecosystem::Ubuntu(self.version_id.clone()),
            Some("debian") => Ecosystem::Debian(
                self.version_id
                    .as_ref()
                    .map(|v| v.split('.').next().unwrap_or(v).to_owned()),
            ),
            _ => Ecosystem::Debian(None),
        }
    }

    fn apk_ecosystem(&self) -> Ecosystem {
        let release = self.version_id.as_ref().and_then(|v| {
            let mut parts = v.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            Some(format!("v{major}.{minor}"))
        });
        Ecosystem::Alpine(release)
    }
}

/// Collects files of interest while walking a directory or a tar, then parses them (OS
/// package databases last, once the os-release is known).
#[derive(Default)]
struct Collector {
    inv: Inventory,
    os_release: Option<String>,
    os_release_fallback: Option<String>,
    pending: Vec<(FileKind, String, String)>,
}

impl Collector {
    /// Whether a path (relative, `/`-separated) is worth reading.
    fn wants(rel: &str) -> bool {
        rel == "etc/os-release" || rel == "usr/lib/os-release" || rootfs_kind(rel).is_some()
    }

    fn offer(&mut self, rel: &str, shown: &str, bytes: &[u8]) {
        if rel == "etc/os-release" {
            self.os_release = Some(String::from_utf8_lossy(bytes).into_owned());
            return;
        }
        if rel == "usr/lib/os-release" {
            self.os_release_fallback = Some(String::from_utf8_lossy(bytes).into_owned());
            return;
        }
        let Some(kind) = rootfs_kind(rel) else { return };
        match std::str::from_utf8(bytes) {
            Ok(text) => self.pending.push((kind, shown.to_owned(), text.to_owned())),
            Err(e) => self.inv.errors.push(InventoryError {
                source_file: shown.to_owned(),
                message: format!(
                    "{shown}: the file is not UTF-8 text (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            }),
        }
    }

    fn finish(mut self) -> Inventory {
        let os = self
            .os_release
            .as_deref()
            .or(self.os_release_fallback.as_deref())
            .map(OsRelease::parse)
            .unwrap_or_default();
        for (kind, shown, text) in std::mem::take(&mut self.pending) {
            match parse_file(kind, &text, &shown, &os) {
                Ok(found) => self.inv.extend(found),
                Err(e) => self.inv.errors.push(InventoryError {
                    source_file: shown,
                    message: e.to_string(),
                }),
            }
        }
        self.inv
    }
}

/// Finds and reads every lockfile under `root` (skipping [`SKIP_DIRS`]; symbolic links are
/// not followed). A directory holding a root filesystem (`var/lib/dpkg/status`,
/// `lib/apk/db/installed`) is read as one. Source files are named relative to `root`.
pub fn scan_dir(root: &Path) -> Result<Inventory, Error> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io("read", root.display(), e))?;
    if !meta.is_dir() {
        return Err(Error::parse(
            root.display().to_string(),
            "not a directory; pass a checkout directory, a lockfile or a root-filesystem tar",
        ));
    }
    let mut c = Collector::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                c.inv.errors.push(InventoryError {
                    source_file: display_rel(&rel_dir),
                    message: format!("cannot read directory {}: {e}", dir.display()),
                });
                continue;
            }
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) {
                    stack.push((e.path(), rel));
                }
            } else if ft.is_file() && Collector::wants(&rel) {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                if size > MAX_FILE {
                    c.inv
                        .skip(&rel, &rel, None, "file larger than 64 MiB, not read");
                    continue;
                }
                match std::fs::read(e.path()) {
                    Ok(bytes) => c.offer(&rel, &rel, &bytes),
                    Err(err) => c.inv.errors.push(InventoryError {
                        source_file: rel.clone(),
                        message: format!("cannot read {rel}: {err}"),
                    }),
                }
            }
        }
    }
    let mut inv = c.finish();
    inv.files.sort();
    Ok(inv)
}

fn display_rel(rel: &str) -> String {
    if rel.is_empty() {
        ".".into()
    } else {
        rel.into()
    }
}

/// Guesses a lockfile's kind from its content, for files saved under another name
/// (`ripgrep-13.0.0.lock`). `requirements.txt` has no telltale content and is only recognised
/// by name.
pub fn sniff(text: &str) -> Option<FileKind> {
    let head: String = text.chars().take(8192).collect();
    let trimmed = head.trim_start();
    if trimmed.starts_with('{') && head.contains("\"lockfileVersion\"") {
        return Some(FileKind::NpmLock);
    }
    if head.contains("[[package]]") {
        let poetry = text.contains("python-versions") || text.contains("content-hash");
        return Some(if poetry {
            FileKind::PoetryLock
        } else {
            FileKind::CargoLock
        });
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    if lines.peek().is_some()
        && lines.all(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 3 && f[2].starts_with("h1:")
        })
    {
        return Some(FileKind::GoSum);
    }
    None
}

/// Reads one lockfile, recognised by its file name or, failing that, its content ([`sniff`]).
/// Parse errors are returned, not listed.
pub fn scan_file(path: &Path) -> Result<Inventory, Error> {
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", &shown, e))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::parse(&shown, "the file is not UTF-8 text"))?;
    let kind = lockfile_kind(&name).or_else(|| sniff(text)).ok_or_else(|| {
        Error::parse(
            &shown,
            "not a lockfile sluice reads; expected Cargo.lock, package-lock.json, npm-shrinkwrap.json, requirements*.txt, poetry.lock or go.sum",
        )
    })?;
    parse_file(kind, text, &shown, &OsRelease::default())
}

/// Scans a path: a directory ([`scan_dir`]), a tar ([`scan_rootfs_tar`], recognised by its
/// `.tar` name or its header) or a single lockfile ([`scan_file`]).
pub fn scan_path(path: &Path) -> Result<Inventory, Error> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read", &shown, e))?;
    if meta.is_dir() {
        return scan_dir(path);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if lockfile_kind(&name).is_some() {
        return scan_file(path);
    }
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("read", &shown, e))?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io("read", &shown, e))?;
    if name.ends_with(".tar") || is_tar_header(&head[..n]) || is_gzip(&head[..n]) {
        let f = std::fs::File::open(path).map_err(|e| Error::io("read", &shown, e))?;
        return scan_rootfs_tar(std::io::BufReader::new(f)).map_err(|e| match e {
            Error::Parse {
                line,
                field,
                message,
                ..
            } => Error::Parse {
                path: shown.clone(),
                line,
                field,
                message,
            },
            other => other,
        });
    }
    if meta.len() <= MAX_FILE
        && let Ok(text) = std::fs::read_to_string(path)
        && sniff(&text).is_some()
    {
        return scan_file(path);
    }
    Err(Error::parse(
        &shown,
        "not a directory, a lockfile sluice reads, or a tar; pass a checkout, a lockfile (Cargo.lock, package-lock.json, requirements.txt, poetry.lock, go.sum) or a root-filesystem tar from `docker export`",
    ))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_tar_header(b: &[u8]) -> bool {
    b.len() >= 262 && &b[257..262] == b"ustar"
}

fn is_gzip(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b
}

/// Normalises a tar member path: no leading `./` or `/`, no `.` components; `None` for
/// paths that climb out with `..`.
fn tar_rel(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// Reads a flat root-filesystem tar, as `docker export` writes it: the dpkg status (and
/// distroless `status.d`), the apk database, `etc/os-release` for the release, and lockfiles
/// anywhere outside [`SKIP_DIRS`]. Source files are named by their absolute path in the
/// image (`/var/lib/dpkg/status`). A compressed tar is an error (decompress it first).
pub fn scan_rootfs_tar<R: Read>(reader: R) -> Result<Inventory, Error> {
    const LABEL: &str = "image tar";
    let mut reader = reader;
    let mut head = vec![0u8; 512];
    let n = read_up_to(&mut reader, &mut head).map_err(|e| Error::io("read", LABEL, e))?;
    head.truncate(n);
    if is_gzip(&head) {
        return Err(Error::parse(
            LABEL,
            "the tar is gzip-compressed; decompress it first (`docker export` writes a plain tar)",
        ));
    }
    if n > 0 && n < 512 {
        return Err(Error::parse(
            LABEL,
            "the file is too short to be a tar archive",
        ));
    }
    let mut archive = tar::Archive::new(std::io::Cursor::new(head).chain(reader));
    let entries = archive
        .entries()
        .map_err(|e| Error::parse(LABEL, format!("not a readable tar archive: {e}")))?;
    let mut c = Collector::default();
    for entry in entries {
        let mut entry =
            entry.map_err(|e| Error::parse(LABEL, format!("the tar archive is damaged: {e}")))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let Ok(path) = entry.path() else { continue };
        let Some(raw) = path.to_str() else { continue };
        let Some(rel) = tar_rel(raw) else { continue };
        if rel.split('/').any(|c| SKIP_DIRS.contains(&c)) || !Collector::wants(&rel) {
            continue;
        }
        let shown = format!("/{rel}");
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > MAX_FILE {
            c.inv
                .skip(&shown, &shown, None, "file larger than 64 MiB, not read");
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
        entry
            .by_ref()
            .take(MAX_FILE)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::parse(LABEL, format!("cannot read {shown} from the tar: {e}")))?;
        c.offer(&rel, &shown, &bytes);
    }
    let mut inv = c.finish();
    inv.files.sort();
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_lockfile_names() {
        assert_eq!(lockfile_kind("Cargo.lock"), Some(FileKind::CargoLock));
        assert_eq!(
            lockfile_kind("requirements-dev.txt"),
            Some(FileKind::Requirements)
        );
        assert_eq!(lockfile_kind("requirements.in"), None);
        assert_eq!(
            rootfs_kind("var/lib/dpkg/status"),
            Some(FileKind::DpkgStatus)
        );
        assert_eq!(
            rootfs_kind("var/lib/dpkg/status.d/base"),
            Some(FileKind::DpkgStatus)
        );
        assert_eq!(rootfs_kind("var/lib/dpkg/status.d/base.md5sums"), None);
        assert_eq!(rootfs_kind("app/Cargo.lock"), Some(FileKind::CargoLock));
        assert_eq!(
            tar_rel("./var//lib/./dpkg/status").as_deref(),
            Some("var/lib/dpkg/status")
        );
        assert_eq!(tar_rel("../etc/passwd"), None);
    }

    #[test]
    fn sniffs_renamed_lockfiles() {
        assert_eq!(
            sniff("version = 3\n\n[[package]]\nname = \"a\"\n"),
            Some(FileKind::CargoLock)
        );
        assert_eq!(
            sniff("[[package]]\nname = \"a\"\npython-versions = \"*\"\n"),
            Some(FileKind::PoetryLock)
        );
        assert_eq!(
            sniff("{\n  \"lockfileVersion\": 3\n}"),
            Some(FileKind::NpmLock)
        );
        assert_eq!(sniff("a v1.0.0 h1:x=\n"), Some(FileKind::GoSum));
        assert_eq!(sniff("Django==3.0\n"), None);
        assert_eq!(sniff(""), None);
    }

    #[test]
    fn os_release_gives_the_distribution_release() {
        let d = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(d.dpkg_ecosystem(), Ecosystem::Debian(Some("12".into())));
        let a = OsRelease::parse("ID=alpine\nVERSION_ID=3.19.1\n");
        assert_eq!(a.apk_ecosystem(), Ecosystem::Alpine(Some("v3.19".into())));
        assert_eq!(
            OsRelease::default().dpkg_ecosystem(),
            Ecosystem::Debian(None)
        );
    }
}
