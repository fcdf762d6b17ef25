//! Artifacts: deterministic, content-addressed tars of files a step produced.
//!
//! [`pack`] selects files under a workspace by glob, writes them into a tar whose bytes
//! depend only on the paths, contents, executable bits and symlink targets (sorted paths,
//! mtime 0, uid/gid 0, modes 0644/0755) and stores it as `<sha256>.tar`, so packing the
//! same tree twice yields the same digest and one stored file. [`unpack`] is the careful
//! inverse: it refuses absolute paths, `..`, links leaving the destination and entry types
//! other than files, directories and symlinks.
//!
//! Everything here is synchronous filesystem work; async callers use `spawn_blocking`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tar::{Builder, EntryType, Header};

use crate::walk::{self, Found, Kind, Matcher, Mode};

/// A packed artifact stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    /// Lower-case hex SHA-256 of the tar file.
    pub sha256: String,
    /// Size of the tar file in bytes.
    pub bytes: u64,
    /// Number of entries (regular files and symlinks) in the tar.
    pub files: u64,
    /// Where the tar is stored: `store_dir/<sha256>.tar`.
    pub path: PathBuf,
}

/// Errors packing or unpacking artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A pattern is not a usable relative glob.
    #[error("invalid artifact pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error(
        "could not {action} {path}: {source}; check that the path exists and is readable and writable by sluice"
    )]
    Io {
        /// What was being done, e.g. `read`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An archive entry would land outside the destination.
    #[error(
        "archive entry {path:?} would be written outside the destination; the archive is unsafe, so unpacking stopped"
    )]
    UnsafePath {
        /// The entry path as stored.
        path: String,
    },
    /// An archive symlink points outside the destination, or sits under another symlink.
    #[error(
        "archive entry {path:?} is a link to {target:?} that leaves the destination; the archive is unsafe, so unpacking stopped"
    )]
    UnsafeLink {
        /// The entry path as stored.
        path: String,
        /// The link target as stored.
        target: String,
    },
    /// An archive entry has a type sluice does not unpack.
    #[error(
        "archive entry {path:?} has unsupported type {kind}; only files, directories and symlinks can be unpacked"
    )]
    UnsupportedEntry {
        /// The entry path as stored.
        path: String,
        /// The entry type as tar names it.
        kind: String,
    },
}

impl ArtifactError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| ArtifactError::Io {
            action,
            path,
            source,
        }
    }
}

impl From<walk::BadPattern> for ArtifactError {
    fn from(bad: walk::BadPattern) -> Self {
        ArtifactError::Pattern {
            pattern: bad.pattern,
            reason: bad.reason,
        }
    }
}

/// Packs the files under `root` that match `patterns` (globs relative to root; a pattern
/// naming a directory takes everything under it) into a deterministic tar (sorted paths,
/// mtime 0, uid/gid 0, mode 0644/0755 by exec bit, regular files and symlinks that stay
/// inside root), stores it content-addressed as `store_dir/<sha256>.tar` (write to a temp
/// file in store_dir, fsync, rename; skip if it already exists) and returns it. No
/// patterns -> an empty but valid tar.
///
/// Symlinks whose target is absolute or climbs out of `root` are left out (see the rule in
/// the crate's link check); so are sockets, fifos and devices. Patterns that match nothing
/// are not an error: the step's own exit code says whether it built what it should.
pub fn pack(root: &Path, patterns: &[String], store_dir: &Path) -> Result<Artifact, ArtifactError> {
    let matcher = Matcher::new(patterns)?;
    let entries =
        walk::find(root, &matcher, Mode::Trees).map_err(ArtifactError::io("walk", root))?;
    let written = write_tar(store_dir, &entries, true, |sha| format!("{sha}.tar"))?;
    Ok(Artifact {
        sha256: written.sha256,
        bytes: written.bytes,
        files: written.files,
        path: written.path,
    })
}

/// Unpacks an artifact into `dest`, refusing absolute paths, `..` and links escaping dest.
///
/// `dest` is created if missing. Unpacked files get the current time as mtime. On an
/// unsafe entry, unpacking stops with an error; entries before it stay unpacked.
pub fn unpack(artifact: &Path, dest: &Path) -> Result<(), ArtifactError> {
    unpack_tar(artifact, dest, false)
}

/// The result of [`write_tar`].
pub(crate) struct Written {
    pub sha256: String,
    pub bytes: u64,
    pub files: u64,
    pub path: PathBuf,
}

/// Writes `entries` as a tar into `dir` under the name `name(sha256)`, atomically.
///
/// With `deterministic`, metadata is normalised (artifacts); without, real mtimes and
/// permission bits are kept (caches, where build tools compare mtimes).
pub(crate) fn write_tar(
    dir: &Path,
    entries: &[Found],
    deterministic: bool,
    name: impl FnOnce(&str) -> String,
) -> Result<Written, ArtifactError> {
    std::fs::create_dir_all(dir).map_err(ArtifactError::io("create", dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".tar")
        .tempfile_in(dir)
        .map_err(ArtifactError::io("create a temporary file in", dir))?;
    let temp_path = temp.path().to_path_buf();
    // The writer borrows the temp file; the block ends that borrow before the rename.
    let (sha256, bytes, files) = {
        let writer = HashingWriter {
            inner: BufWriter::new(temp.as_file()),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut builder = Builder::new(writer);
        let mut files = 0u64;
        for entry in entries {
            if append(&mut builder, entry, deterministic)? {
                files += 1;
            }
        }
        let mut writer = builder
            .into_inner()
            .map_err(ArtifactError::io("write", &temp_path))?;
        writer
            .inner
            .flush()
            .map_err(ArtifactError::io("write", &temp_path))?;
        (hex::encode(writer.hasher.finalize()), writer.bytes, files)
    };
    let path = dir.join(name(&sha256));
    if path.exists() {
        // Same name means same content (or the same cache key): keep the existing file.
        return Ok(Written {
            sha256,
            bytes,
            files,
            path,
        });
    }
    temp.as_file()
        .sync_all()
        .map_err(ArtifactError::io("sync", &temp_path))?;
    temp.persist(&path).map_err(|err| ArtifactError::Io {
        action: "rename a temporary file to",
        path: path.clone(),
        source: err.error,
    })?;
    // Make the rename itself durable.
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(Written {
        sha256,
        bytes,
        files,
        path,
    })
}

/// Appends one found entry; returns whether something was written.
fn append<W: Write>(
    builder: &mut Builder<W>,
    entry: &Found,
    deterministic: bool,
) -> Result<bool, ArtifactError> {
    let mut header = Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    match entry.kind {
        Kind::File => {
            let file = File::open(&entry.abs).map_err(ArtifactError::io("read", &entry.abs))?;
            let meta = file
                .metadata()
                .map_err(ArtifactError::io("read", &entry.abs))?;
            if !meta.is_file() {
                return Ok(false);
            }
            let mode = meta.permissions().mode();
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            if deterministic {
                header.set_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
                header.set_mtime(0);
            } else {
                header.set_mode(mode & 0o777);
                header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
            }
            let reader = ExactReader {
                inner: BufReader::new(file).take(meta.len()),
                remaining: meta.len(),
            };
            builder
                .append_data(&mut header, &entry.rel, reader)
                .map_err(ArtifactError::io("pack", &entry.abs))?;
            Ok(true)
        }
        Kind::Symlink => {
            let target =
                std::fs::read_link(&entry.abs).map_err(ArtifactError::io("read", &entry.abs))?;
            if !walk::link_stays_inside(&entry.rel, &target) {
                return Ok(false);
            }
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            header.set_mtime(0);
            builder
                .append_link(&mut header, &entry.rel, &target)
                .map_err(ArtifactError::io("pack", &entry.abs))?;
            Ok(true)
        }
        Kind::Dir => Ok(false),
    }
}

/// Unpacks `archive` into `dest` with the safety checks of [`unpack`].
pub(crate) fn unpack_tar(
    archive: &Path,
    dest: &Path,
    keep_mtime: bool,
) -> Result<(), ArtifactError> {
    std::fs::create_dir_all(dest).map_err(ArtifactError::io("create", dest))?;
    let file = File::open(archive).map_err(ArtifactError::io("open", archive))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    tar.set_overwrite(true);
    tar.set_preserve_mtime(keep_mtime);
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    let entries = tar.entries().map_err(ArtifactError::io("read", archive))?;
    for entry in entries {
        let mut entry = entry.map_err(ArtifactError::io("read", archive))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = entry
            .path()
            .map_err(ArtifactError::io("read", archive))?
            .into_owned();
        if rel.is_absolute() || !walk::is_safe_relative(&rel) {
            return Err(ArtifactError::UnsafePath { path: raw });
        }
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ArtifactError::io("read", archive))?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !walk::link_stays_inside(&rel, &target) || parent_has_symlink(dest, &rel) {
                    return Err(ArtifactError::UnsafeLink {
                        path: raw,
                        target: target.to_string_lossy().into_owned(),
                    });
                }
            }
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(ArtifactError::UnsupportedEntry {
                    path: raw,
                    kind: format!("{other:?}"),
                });
            }
        }
        // `unpack_in` also canonicalises the parent directory and refuses to write through
        // a symlink that leads outside `dest`, and replaces existing files instead of
        // writing through them.
        let inside = entry
            .unpack_in(dest)
            .map_err(ArtifactError::io("unpack into", dest))?;
        if !inside {
            return Err(ArtifactError::UnsafePath { path: raw });
        }
    }
    Ok(())
}

/// Whether any existing ancestor of `dest/rel` (below `dest`) is a symlink.
fn parent_has_symlink(dest: &Path, rel: &Path) -> bool {
    let mut current = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return false;
    };
    for component in parent.components() {
        if let Component::Normal(part) = component {
            current.push(part);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
    false
}

/// Hashes and counts everything written through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads exactly the size recorded in the tar header: a file that shrank while being packed
/// is an error instead of a corrupt archive, and growth is cut off by `take`.
struct ExactReader<R: Read> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being packed; do not modify outputs after the step",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn listing(tar_path: &Path) -> Vec<(String, u32, u64)> {
        let mut archive = tar::Archive::new(File::open(tar_path).unwrap());
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn selects_by_glob_and_directory_and_normalises_metadata() {
        let root = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        write(root.path(), "dist/app.js", "js");
        write(root.path(), "dist/sub/deep.css", "css");
        write(root.path(), "bin/tool", "#!/bin/sh\n");
        std::fs::set_permissions(
            root.path().join("bin/tool"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        write(root.path(), "reports/a.xml", "<x/>");
        write(root.path(), "reports/nested/b.xml", "<x/>");
        write(root.path(), "src/main.rs", "fn main() {}");
        symlink("app.js", root.path().join("dist/latest.js")).unwrap();
        symlink("/etc/passwd", root.path().join("dist/passwd")).unwrap();
        symlink("../../outside", root.path().join("dist/escape")).unwrap();

        let patterns = [
            "dist".to_owned(),
            "bin/*".to_owned(),
            "reports/*.xml".to_owned(),
        ];
        let artifact = pack(root.path(), &patterns, store.path()).unwrap();
        assert_eq!(
            artifact.path,
            store.path().join(format!("{}.tar", artifact.sha256))
        );
        assert_eq!(
            artifact.bytes,
            std::fs::metadata(&artifact.path).unwrap().len()
        );
        let entries = listing(&artifact.path);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin/tool",
                "dist/app.js",
                "dist/latest.js",
                "dist/sub/deep.css",
                "reports/a.xml"
            ]
        );
        assert_eq!(artifact.files, 5);
        assert_eq!(entries[0].1, 0o755);
        assert_eq!(entries[1].1, 0o644);
        assert!(entries.iter().all(|e| e.2 == 0));
    }

    #[test]
    fn no_patterns_gives_an_empty_valid_tar() {
        let root = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        write(root.path(), "a.txt", "a");
        let artifact = pack(root.path(), &[], store.path()).unwrap();
        assert_eq!(artifact.files, 0);
        assert!(listing(&artifact.path).is_empty());
        assert_eq!(artifact.bytes, 1024);
    }

    #[test]
    fn refuses_escaping_patterns() {
        let root = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../b"] {
            let err = pack(root.path(), &[bad.to_owned()], store.path()).unwrap_err();
            assert!(matches!(err, ArtifactError::Pattern { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn round_trip_preserves_content_modes_and_links() {
        let root = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        write(root.path(), "out/a.txt", "alpha");
        write(root.path(), "out/run.sh", "echo hi");
        std::fs::set_permissions(
            root.path().join("out/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink("a.txt", root.path().join("out/link")).unwrap();
        let artifact = pack(root.path(), &["out/**".to_owned()], store.path()).unwrap();
        unpack(&artifact.path, dest.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.path().join("out/a.txt")).unwrap(),
            "alpha"
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("out/link")).unwrap(),
            "alpha"
        );
        let mode = std::fs::metadata(dest.path().join("out/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }
}
