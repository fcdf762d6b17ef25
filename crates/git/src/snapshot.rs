//! The per-commit snapshot cache behind [`crate::Mirror::checkout`].
//!
//! A snapshot is the tree of one commit, extracted once from `git archive` into
//! `<mirror>/snapshots/<sha>/`. It is built in a temporary directory and renamed into place,
//! so a snapshot that exists is complete. Checkouts copy it (real copies, never hard links:
//! steps may modify their files) with modes and symlinks preserved, without running git.
//!
//! Everything here is blocking filesystem work, called through `spawn_blocking`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::GitError;
use crate::cmd;

/// Prefix of directories being built (or left behind by a crash).
const TMP_PREFIX: &str = ".tmp-";
/// Prefix of directories being deleted by a prune.
const TRASH_PREFIX: &str = ".trash-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str, name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{name}-{}-{n}", std::process::id())
}

/// Builds the snapshot of `sha` under `root` unless it exists. Returns its path.
pub(crate) fn build(git_dir: &Path, root: &Path, sha: &str) -> Result<PathBuf, GitError> {
    let final_dir = root.join(sha);
    if final_dir.is_dir() {
        return Ok(final_dir);
    }
    fs::create_dir_all(root)?;
    let tmp = root.join(unique(TMP_PREFIX, sha));
    fs::create_dir(&tmp)?;
    if let Err(e) = extract(git_dir, sha, &tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, &final_dir) {
        Ok(()) => Ok(final_dir),
        // Another checkout of the same commit won the race; its snapshot is as good.
        Err(_) if final_dir.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(final_dir)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e.into())
        }
    }
}

/// Streams `git archive <sha>` into the in-process tar extractor.
fn extract(git_dir: &Path, sha: &str, into: &Path) -> Result<(), GitError> {
    let mut command = cmd::git(Some(git_dir));
    // The default tar.umask (002) would make files group-writable; a checkout has 644/755.
    command.args(["-c", "tar.umask=022", "archive", "--format=tar", sha]);
    let args = cmd::describe(&command);
    command.stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(GitError::Io(io::Error::other("git archive has no stdout")));
    };
    // Read stderr on the side so git never blocks on a full stderr pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let mut archive = tar::Archive::new(stdout);
    archive.set_overwrite(false);
    let unpacked = archive.unpack(into);
    if unpacked.is_err() {
        // Stop git before waiting, or it would block writing to a pipe nobody reads.
        let _ = child.kill();
    }
    let status = child.wait()?;
    let stderr = stderr
        .and_then(|h| h.join().ok())
        .unwrap_or_default()
        .trim()
        .to_string();
    if !status.success() {
        return Err(GitError::Command { args, stderr });
    }
    unpacked.map_err(|e| GitError::Command {
        args,
        stderr: format!("extracting the archive failed: {e}"),
    })
}

/// Copies the tree `src` into the existing empty directory `dst`: files with their modes,
/// directories, and symlinks as symlinks.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        if kind.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if kind.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
        } else {
            // fs::copy copies the permission bits too.
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Marks a snapshot as just used, for [`prune`]'s least-recently-used order.
pub(crate) fn touch(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.set_modified(SystemTime::now());
    }
}

/// Deletes all but the `keep` most recently used snapshots under `root`, and temporary
/// directories older than an hour. Returns how many snapshots were deleted.
pub(crate) fn prune(root: &Path, keep: usize) -> Result<usize, GitError> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let now = SystemTime::now();
    let mut snapshots = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if name.starts_with(TMP_PREFIX) || name.starts_with(TRASH_PREFIX) {
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            if age > Duration::from_secs(3600) || name.starts_with(TRASH_PREFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
            continue;
        }
        snapshots.push((modified, name));
    }
    snapshots.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut removed = 0;
    for (_, name) in snapshots.into_iter().skip(keep) {
        // Rename first so a concurrent checkout never sees a half-deleted snapshot as whole.
        let trash = root.join(unique(TRASH_PREFIX, &name));
        fs::rename(root.join(&name), &trash)?;
        fs::remove_dir_all(&trash)?;
        removed += 1;
    }
    Ok(removed)
}
