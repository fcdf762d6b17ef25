//! Git sources for sluice: one bare mirror per project, fetched from the project's source
//! (a local path or a git URL), and everything the engine reads from it: branch heads,
//! revisions, files, changed paths, commit metadata and fast checkouts.
//!
//! It drives the `git` executable through `tokio::process` (so credentials, ssh and URL
//! rewriting behave as users expect) and never links a git library. It knows nothing of
//! pipelines, webhooks or the store: callers pass revisions and paths, and every value that
//! reaches a git command line is validated so it cannot be read as an option.
//!
//! Checkouts run for every pipeline run, so they come from a per-commit snapshot cache
//! under the mirror (see [`Mirror::checkout`]); after the first checkout of a commit, later
//! ones start no git process at all.

mod cmd;
mod error;
mod snapshot;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::GitError;

/// Largest file [`Mirror::read_file`] returns, in bytes (1 MiB).
pub const MAX_READ_FILE: u64 = 1024 * 1024;

/// How long [`ls_remote`] waits for a source before giving up.
pub const LS_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Mirror::fetch`] waits for a source before giving up.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Metadata of one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full commit sha.
    pub sha: String,
    /// Author name.
    pub author: String,
    /// Author time, seconds since the Unix epoch.
    pub time_s: i64,
    /// First line of the commit message.
    pub subject: String,
}

/// A bare mirror of one git source, kept in sluice's data directory.
///
/// Cheap to clone: clones share the same mirror and its fetch lock.
#[derive(Clone, Debug)]
pub struct Mirror {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The bare repository, absolute.
    dir: PathBuf,
    /// The source as git will be given it (local paths made absolute).
    source: String,
    /// Serialises fetches (the only operation that changes refs). Reads do not take it:
    /// git updates refs atomically, so a read during a fetch sees the old or the new head.
    fetch_lock: tokio::sync::Mutex<()>,
}

/// True if `source` is a URL (`scheme://...`) or scp-like ssh (`user@host:path`), the same
/// rule git applies; anything else is a local path.
fn is_url(source: &str) -> bool {
    if source.contains("://") {
        return true;
    }
    match (source.find(':'), source.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The source as handed to git: URLs unchanged, local paths made absolute.
fn normalise_source(source: &str) -> Result<String, GitError> {
    validate::source(source)?;
    if is_url(source) {
        return Ok(source.to_string());
    }
    let abs = std::path::absolute(source)?;
    Ok(abs.to_string_lossy().into_owned())
}

/// (branch, sha) pairs sorted by branch name.
fn sorted_branches(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort();
    pairs
}

/// Lists the branches of a source without a mirror (`git ls-remote --heads`), to validate
/// a source before registering it: (branch name, full sha), sorted by name.
///
/// Gives up after [`LS_REMOTE_TIMEOUT`] and never prompts for credentials.
pub async fn ls_remote(source: &str) -> Result<Vec<(String, String)>, GitError> {
    let normalised = normalise_source(source)?;
    let mut command = cmd::git(None);
    command.args(["ls-remote", "--heads", "--", &normalised]);
    let unreachable = |reason: String| GitError::Unreachable {
        source: source.to_string(),
        reason,
    };
    let done = match cmd::run(command, None, LS_REMOTE_TIMEOUT).await {
        Ok(done) => done,
        Err(Some(e)) => return Err(GitError::Io(e)),
        Err(None) => {
            return Err(unreachable(format!(
                "no answer within {} s",
                LS_REMOTE_TIMEOUT.as_secs()
            )));
        }
    };
    if !done.success() {
        return Err(unreachable(done.stderr));
    }
    let text = String::from_utf8_lossy(&done.stdout);
    let pairs = text
        .lines()
        .filter_map(|line| {
            let (sha, name) = line.split_once('\t')?;
            let branch = name.strip_prefix("refs/heads/")?;
            Some((branch.to_string(), sha.to_string()))
        })
        .collect();
    Ok(sorted_branches(pairs))
}

impl Mirror {
    /// Opens the mirror at `dir`, creating an empty bare repo there if missing. `source`
    /// is a local path (absolute or relative, to a working or bare repo) or a git URL
    /// (file://, https://, ssh://, user@host:path).
    pub async fn open(dir: &Path, source: &str) -> Result<Mirror, GitError> {
        let source = normalise_source(source)?;
        let dir = std::path::absolute(dir)?;
        if !dir.join("HEAD").is_file() {
            tokio::fs::create_dir_all(&dir).await?;
            let mut command = cmd::git(None);
            command
                .args(["-c", "init.defaultBranch=main", "init", "--bare", "--quiet"])
                .arg(&dir);
            cmd::output(command, None).await?;
        }
        // The checkout is "the tree's files": attributes in the repository must not make
        // `git archive` drop files (export-ignore) or rewrite them (export-subst).
        // $GIT_DIR/info/attributes has the highest precedence.
        let info = dir.join("info");
        tokio::fs::create_dir_all(&info).await?;
        tokio::fs::write(info.join("attributes"), "* -export-ignore -export-subst\n").await?;
        Ok(Mirror {
            inner: Arc::new(Inner {
                dir,
                source,
                fetch_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The bare repository's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The source this mirror fetches from (local paths made absolute).
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    fn git(&self) -> std::process::Command {
        cmd::git(Some(&self.inner.dir))
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.inner.dir.join("snapshots")
    }

    /// Fetches all branches from the source, force-updating (`+refs/heads/*:refs/heads/*`,
    /// with --prune), so force-pushes and deleted branches are seen.
    pub async fn fetch(&self) -> Result<(), GitError> {
        let _guard = self.inner.fetch_lock.lock().await;
        let mut command = self.git();
        command.args([
            "fetch",
            "--prune",
            "--no-tags",
            "--quiet",
            "--no-write-fetch-head",
            "--",
            &self.inner.source,
            "+refs/heads/*:refs/heads/*",
        ]);
        let unreachable = |reason: String| GitError::Unreachable {
            source: self.inner.source.clone(),
            reason,
        };
        match cmd::run(command, None, FETCH_TIMEOUT).await {
            Ok(done) if done.success() => Ok(()),
            Ok(done) => Err(unreachable(done.stderr)),
            Err(Some(e)) => Err(GitError::Io(e)),
            Err(None) => Err(unreachable(format!(
                "fetch did not finish within {} s",
                FETCH_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Branch heads in the mirror: (branch name without refs/heads/, full sha), sorted by
    /// name.
    pub async fn branches(&self) -> Result<Vec<(String, String)>, GitError> {
        let mut command = self.git();
        command.args([
            "for-each-ref",
            "--format=%(refname)%00%(objectname)",
            "refs/heads/",
        ]);
        let out = cmd::output(command, None).await?;
        let text = String::from_utf8_lossy(&out);
        let pairs = text
            .lines()
            .filter_map(|line| {
                let (name, sha) = line.split_once('\0')?;
                Some((
                    name.strip_prefix("refs/heads/")?.to_string(),
                    sha.to_string(),
                ))
            })
            .collect();
        Ok(sorted_branches(pairs))
    }

    /// Resolves a revision (branch, sha, short sha) to a full commit sha; UnknownCommit if
    /// unknown.
    pub async fn resolve(&self, rev: &str) -> Result<String, GitError> {
        validate::rev(rev)?;
        let mut command = self.git();
        command.args([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ]);
        let args = cmd::describe(&command);
        let done = cmd::finish(&args, cmd::run(command, None, cmd::LOCAL_TIMEOUT).await)?;
        match done.code {
            Some(0) => {
                let sha = String::from_utf8_lossy(&done.stdout).trim().to_string();
                if validate::is_full_sha(&sha) {
                    Ok(sha)
                } else {
                    Err(GitError::Command {
                        args,
                        stderr: format!("unexpected output {sha:?}"),
                    })
                }
            }
            // --quiet: exit 1 with nothing on stderr means "no such commit".
            Some(1) if done.stderr.is_empty() => Err(GitError::UnknownCommit(rev.to_string())),
            _ if done.stderr.contains("ambiguous") || done.stderr.contains("unknown revision") => {
                Err(GitError::UnknownCommit(rev.to_string()))
            }
            _ => Err(GitError::Command {
                args,
                stderr: done.stderr,
            }),
        }
    }

    /// Turns a failed command on `revs` into UnknownCommit when one of them is unknown.
    async fn explain(&self, err: GitError, revs: &[&str]) -> GitError {
        if !matches!(err, GitError::Command { .. }) {
            return err;
        }
        for rev in revs {
            if let Err(unknown @ GitError::UnknownCommit(_)) = self.resolve(rev).await {
                return unknown;
            }
        }
        err
    }

    /// Contents of `path` at `commit` (None if the file does not exist there). Max
    /// [`MAX_READ_FILE`] bytes, else an error.
    pub async fn read_file(&self, commit: &str, path: &str) -> Result<Option<String>, GitError> {
        validate::rev(commit)?;
        let path = validate::path(path)?;
        // One process: cat-file --batch answers "<oid> <type> <size>\n<bytes>\n" or
        // "<name> missing\n". Only the header is read before the size is checked, and the
        // process is killed (on drop) if the file is over the limit.
        let mut command = self.git();
        command.args(["cat-file", "--batch"]);
        let args = cmd::describe(&command);
        let request = format!("{commit}:{path}\n");
        let read = cmd::cat_file(command, request, MAX_READ_FILE);
        let answer = match tokio::time::timeout(cmd::LOCAL_TIMEOUT, read).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(GitError::Io(e)),
            Err(_) => {
                return Err(GitError::Command {
                    args,
                    stderr: format!("timed out after {} s", cmd::LOCAL_TIMEOUT.as_secs()),
                });
            }
        };
        match answer {
            cmd::CatFile::Missing => {
                // The file is absent (or a directory): distinguish an unknown commit.
                self.resolve(commit).await?;
                Ok(None)
            }
            cmd::CatFile::TooLarge(size) => Err(GitError::FileTooLarge {
                path: path.to_string(),
                size,
                max: MAX_READ_FILE,
            }),
            cmd::CatFile::Blob(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Ok(Some(text)),
                Err(_) => Err(GitError::NotText {
                    path: path.to_string(),
                }),
            },
            cmd::CatFile::Failed(stderr) => Err(GitError::Command { args, stderr }),
        }
    }

    /// All file paths at `commit` (recursive, `/`-separated), sorted. Symlinks count as
    /// files; submodules do not.
    pub async fn list_files(&self, commit: &str) -> Result<Vec<String>, GitError> {
        validate::rev(commit)?;
        let mut command = self.git();
        command.args([
            "ls-tree",
            "-r",
            "-z",
            "--full-tree",
            "--end-of-options",
            commit,
        ]);
        let out = match cmd::output(command, None).await {
            Ok(out) => out,
            Err(e) => return Err(self.explain(e, &[commit]).await),
        };
        let mut files: Vec<String> = out
            .split(|&b| b == 0)
            .filter_map(|entry| {
                // "<mode> SP <type> SP <object> TAB <path>"
                let entry = std::str::from_utf8(entry).ok()?;
                let (meta, path) = entry.split_once('\t')?;
                (meta.split(' ').nth(1) == Some("blob")).then(|| path.to_string())
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// Paths that differ between `base` and `commit` (both sides of renames; added,
    /// deleted, modified), sorted. Works whether or not base is an ancestor of commit
    /// (force-push); if `base` is not in the mirror, returns UnknownCommit so the caller
    /// can fall back.
    pub async fn changed_files(&self, base: &str, commit: &str) -> Result<Vec<String>, GitError> {
        validate::rev(base)?;
        validate::rev(commit)?;
        let mut command = self.git();
        command.args([
            "diff-tree",
            "-r",
            "-z",
            "--name-only",
            "--no-renames",
            "--no-commit-id",
            "--end-of-options",
            &format!("{base}^{{commit}}"),
            &format!("{commit}^{{commit}}"),
        ]);
        let out = match cmd::output(command, None).await {
            Ok(out) => out,
            Err(e) => return Err(self.explain(e, &[base, commit]).await),
        };
        let mut files: Vec<String> = out
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// True if `ancestor` is an ancestor of `commit` (a commit is its own ancestor).
    pub async fn is_ancestor(&self, ancestor: &str, commit: &str) -> Result<bool, GitError> {
        validate::rev(ancestor)?;
        validate::rev(commit)?;
        let mut command = self.git();
        command.args(["merge-base", "--is-ancestor", "--", ancestor, commit]);
        let args = cmd::describe(&command);
        let done = cmd::finish(&args, cmd::run(command, None, cmd::LOCAL_TIMEOUT).await)?;
        match done.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => {
                let err = GitError::Command {
                    args,
                    stderr: done.stderr,
                };
                Err(self.explain(err, &[ancestor, commit]).await)
            }
        }
    }

    /// Sha, author, time and subject of `commit`.
    pub async fn commit_info(&self, commit: &str) -> Result<CommitInfo, GitError> {
        validate::rev(commit)?;
        let mut command = self.git();
        command.args([
            "log",
            "-1",
            "--no-show-signature",
            "--format=%H%x00%an%x00%at%x00%s",
            "--end-of-options",
            &format!("{commit}^{{commit}}"),
            "--",
        ]);
        let args = cmd::describe(&command);
        let out = match cmd::output(command, None).await {
            Ok(out) => out,
            Err(e) => return Err(self.explain(e, &[commit]).await),
        };
        let text = String::from_utf8_lossy(&out);
        let mut fields = text.trim_end_matches('\n').splitn(4, '\0');
        let (sha, author, time, subject) = (
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
            fields.next().unwrap_or(""),
        );
        let time_s = time.parse().map_err(|_| GitError::Command {
            args,
            stderr: format!("unexpected log output {text:?}"),
        })?;
        Ok(CommitInfo {
            sha: sha.to_string(),
            author: author.to_string(),
            time_s,
            subject: subject.to_string(),
        })
    }

    /// The commits reachable from `commit` but not from `base` (all its ancestors when
    /// `base` is None), newest first, at most `limit`, each with its committer time in
    /// seconds: the changes a deploy of `commit` brings after one of `base`.
    pub async fn commits_between(
        &self,
        base: Option<&str>,
        commit: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, GitError> {
        validate::rev(commit)?;
        if let Some(b) = base {
            validate::rev(b)?;
        }
        let mut command = self.git();
        command.args([
            "log",
            "--no-show-signature",
            "--format=%H %ct",
            &format!("--max-count={limit}"),
            "--end-of-options",
            &format!("{commit}^{{commit}}"),
        ]);
        if let Some(b) = base {
            command.arg(format!("^{b}^{{commit}}"));
        }
        command.arg("--");
        let revs: Vec<&str> = base.into_iter().chain([commit]).collect();
        let out = match cmd::output(command, None).await {
            Ok(out) => out,
            Err(e) => return Err(self.explain(e, &revs).await),
        };
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let (sha, t) = l.split_once(' ')?;
                Some((sha.to_owned(), t.trim().parse().ok()?))
            })
            .collect())
    }

    /// Writes a fresh checkout of `commit` into `dest` (which must not exist, or be
    /// empty): the tree's files with exec bits and symlinks, no .git.
    ///
    /// The first checkout of a commit extracts `git archive` into the snapshot cache
    /// (`<mirror>/snapshots/<sha>/`); later ones given the full sha run no git process and
    /// only copy the snapshot. Copies are real copies, never hard links.
    pub async fn checkout(&self, commit: &str, dest: &Path) -> Result<(), GitError> {
        validate::rev(commit)?;
        let root = self.snapshots_dir();
        let sha = if validate::is_full_sha(commit) && root.join(commit).is_dir() {
            commit.to_string()
        } else {
            self.resolve(commit).await?
        };
        let git_dir = self.inner.dir.clone();
        let dest = dest.to_path_buf();
        let result = tokio::task::spawn_blocking(move || -> Result<(), GitError> {
            prepare_dest(&dest)?;
            let snap = snapshot::build(&git_dir, &root, &sha)?;
            snapshot::touch(&snap);
            match snapshot::copy_tree(&snap, &dest) {
                Ok(()) => Ok(()),
                // A concurrent prune removed the snapshot under us: rebuild it once.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !snap.is_dir() => {
                    clear_dir(&dest)?;
                    let snap = snapshot::build(&git_dir, &root, &sha)?;
                    Ok(snapshot::copy_tree(&snap, &dest)?)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await;
        match result {
            Ok(done) => done,
            Err(join) => Err(GitError::Io(std::io::Error::other(format!(
                "checkout task failed: {join}"
            )))),
        }
    }

    /// Deletes all but the `keep` most recently used checkout snapshots (and leftovers of
    /// interrupted builds); returns how many snapshots were deleted. Blocking filesystem
    /// work: call it from a background task.
    pub fn prune_snapshots(&self, keep: usize) -> Result<usize, GitError> {
        snapshot::prune(&self.snapshots_dir(), keep)
    }
}

/// Makes sure `dest` is an empty directory, creating it if missing.
fn prepare_dest(dest: &Path) -> Result<(), GitError> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(GitError::Io(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "checkout destination {} is not empty: give a new or empty directory",
                        dest.display()
                    ),
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Empties a directory we filled ourselves.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_detection() {
        assert!(is_url("https://example.com/a.git"));
        assert!(is_url("file:///srv/a.git"));
        assert!(is_url("git@github.com:org/repo.git"));
        assert!(is_url("host:repo"));
        assert!(!is_url("/srv/repo"));
        assert!(!is_url("./a:b"));
        assert!(!is_url("repo"));
    }
}
