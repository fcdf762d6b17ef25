//! Caches: directories saved after a step and restored before the next run of it.
//!
//! A cache is a tar named by a key, `cache_dir/<key>.tar`. [`cache_key`] derives the key
//! from the cached paths and the contents of key files (lock files, typically), so a
//! changed lock file means a new cache instead of a stale one. Saving is write-once: an
//! existing key is never overwritten, which makes concurrent saves of the same key safe.
//! Unlike artifacts, caches keep real mtimes and permission bits, because build tools
//! compare mtimes to decide what is fresh.
//!
//! Everything here is synchronous filesystem work; async callers use `spawn_blocking`.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::artifact::{self, ArtifactError};
use crate::walk::{self, Matcher, Mode};

/// Longest accepted cache key, in bytes.
const MAX_KEY_LEN: usize = 200;

/// Errors computing, saving or restoring caches.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The key would not make a safe file name.
    #[error(
        "invalid cache key {key:?}: use 1 to 200 letters, digits, '.', '_' or '-', not starting with '.'"
    )]
    InvalidKey {
        /// The key as given.
        key: String,
    },
    /// A cache path or key-file pattern is absolute or leaves the workspace.
    #[error("invalid cache path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A key file could not be read.
    #[error("could not read {path}: {source}; check the file's permissions")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Packing or unpacking the cache tar failed.
    #[error("cache archive: {0}")]
    Archive(#[from] ArtifactError),
}

impl From<walk::BadPattern> for CacheError {
    fn from(bad: walk::BadPattern) -> Self {
        CacheError::InvalidPath {
            path: bad.pattern,
            reason: bad.reason,
        }
    }
}

/// Key = sha256 over the cache paths and the sorted (path, sha256(content)) of files
/// matching key_files under root.
///
/// Cache paths are normalised (`./a/` is `a`) and sorted, so their order does not matter.
/// Key-file patterns that match nothing contribute nothing. The result is 64 hex digits.
pub fn cache_key(
    root: &Path,
    paths: &[String],
    key_files: &[String],
) -> Result<String, CacheError> {
    let mut hasher = Sha256::new();
    hasher.update(b"sluice-cache-v1\n");
    for path in normalised_paths(paths)? {
        hasher.update(b"path\0");
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
    }
    let matcher = Matcher::new(key_files)?;
    let files = walk::find(root, &matcher, Mode::Files).map_err(|source| CacheError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    for file in files {
        let digest = file_sha256(&file.abs).map_err(|source| CacheError::Io {
            path: file.abs.clone(),
            source,
        })?;
        hasher.update(b"file\0");
        hasher.update(file.rel.as_os_str().as_encoded_bytes());
        hasher.update(b"\0");
        hasher.update(digest.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Restores `cache_dir/<key>.tar` into root if present; returns whether it was a hit.
///
/// Restored files overwrite existing ones; the archive gets the same path-traversal checks
/// as [`crate::unpack`]. A corrupt archive is an error: callers may treat it as a miss.
pub fn restore(cache_dir: &Path, key: &str, root: &Path) -> Result<bool, CacheError> {
    let path = tar_path(cache_dir, key)?;
    if !path.is_file() {
        return Ok(false);
    }
    artifact::unpack_tar(&path, root, true)?;
    Ok(true)
}

/// Saves the given directories under root as `cache_dir/<key>.tar` (atomic); no-op if it
/// exists.
///
/// Paths are literal (not globs), relative to root; missing ones are skipped, so a first
/// run that produced nothing still saves a (small) cache.
pub fn save(cache_dir: &Path, key: &str, root: &Path, paths: &[String]) -> Result<(), CacheError> {
    let path = tar_path(cache_dir, key)?;
    if path.exists() {
        return Ok(());
    }
    let mut entries = Vec::new();
    for rel in normalised_paths(paths)? {
        let found =
            walk::everything_under(root, Path::new(&rel)).map_err(|source| CacheError::Io {
                path: root.join(&rel),
                source,
            })?;
        entries.extend(found);
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    entries.dedup_by(|a, b| a.rel == b.rel);
    artifact::write_tar(cache_dir, &entries, false, |_| format!("{key}.tar"))?;
    Ok(())
}

fn tar_path(cache_dir: &Path, key: &str) -> Result<PathBuf, CacheError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(CacheError::InvalidKey {
            key: key.to_owned(),
        });
    }
    Ok(cache_dir.join(format!("{key}.tar")))
}

fn normalised_paths(paths: &[String]) -> Result<Vec<String>, CacheError> {
    let mut out = paths
        .iter()
        .map(|p| walk::normalise_pattern(p))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn file_sha256(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        let dir = Path::new("/tmp");
        for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(
                matches!(tar_path(dir, bad), Err(CacheError::InvalidKey { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            tar_path(dir, "cargo-abc_1.2").unwrap(),
            dir.join("cargo-abc_1.2.tar")
        );
    }

    #[test]
    fn key_ignores_path_order_and_refuses_escapes() {
        let root = tempfile::tempdir().unwrap();
        let a = cache_key(root.path(), &["b".into(), "./a/".into()], &[]).unwrap();
        let b = cache_key(root.path(), &["a".into(), "b".into()], &[]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(a, cache_key(root.path(), &["a".into()], &[]).unwrap());
        assert!(matches!(
            cache_key(root.path(), &["../up".into()], &[]),
            Err(CacheError::InvalidPath { .. })
        ));
    }
}
