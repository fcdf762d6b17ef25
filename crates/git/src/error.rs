//! The error type of the git layer.
//!
//! `Display` and `Error` are written by hand instead of derived with `thiserror`, because
//! the `Unreachable` variant has a field named `source` (the git source URL or path), and
//! `thiserror` would take any field of that name as the error's underlying cause.

use std::fmt;

/// What went wrong while talking to git or the mirror on disk.
#[derive(Debug)]
#[non_exhaustive]
pub enum GitError {
    /// A git command failed; `stderr` is git's own message, trimmed.
    Command {
        /// The git arguments, space-separated, for the log.
        args: String,
        /// git's standard error, trimmed (or a short reason such as a timeout).
        stderr: String,
    },
    /// The source could not be listed or fetched (bad path or URL, network, credentials).
    Unreachable {
        /// The source as given (path or URL).
        source: String,
        /// Why, usually git's standard error.
        reason: String,
    },
    /// The revision or commit is not in the mirror.
    UnknownCommit(String),
    /// A revision, path or source given by a caller was refused before running git.
    InvalidArgument {
        /// What the value is ("revision", "path", "source").
        what: &'static str,
        /// The refused value, escaped for display.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// `read_file` found a file larger than [`crate::MAX_READ_FILE`].
    FileTooLarge {
        /// The path in the tree.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// `read_file` found a file that is not UTF-8 text.
    NotText {
        /// The path in the tree.
        path: String,
    },
    /// A filesystem or process error (including git not being installed).
    Io(std::io::Error),
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitError::Command { args, stderr } => {
                write!(f, "git {args} failed: {stderr}")
            }
            GitError::Unreachable { source, reason } => write!(
                f,
                "cannot reach git source {source}: {reason}; check the path or URL and that \
                 credentials work without a prompt (ssh keys or a credential helper)"
            ),
            GitError::UnknownCommit(rev) => write!(
                f,
                "unknown commit {rev}: fetch the source first, or check the revision"
            ),
            GitError::InvalidArgument {
                what,
                value,
                reason,
            } => write!(f, "invalid {what} {value:?}: {reason}"),
            GitError::FileTooLarge { path, size, max } => write!(
                f,
                "file {path} is {size} bytes, over the {max} byte limit: keep it smaller"
            ),
            GitError::NotText { path } => {
                write!(f, "file {path} is not UTF-8 text: store it as UTF-8")
            }
            GitError::Io(e) => write!(
                f,
                "git i/o error: {e}; check that git is installed and the data directory is writable"
            ),
        }
    }
}

impl std::error::Error for GitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GitError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for GitError {
    fn from(e: std::io::Error) -> Self {
        GitError::Io(e)
    }
}
