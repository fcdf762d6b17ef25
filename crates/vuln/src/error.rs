//! The one error type of the crate. Every variant names the file it is about and, where the
//! parser knows them, the line and the field, and its message says what to do next.

use std::fmt;

/// What went wrong, where, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "create directory" ...).
        action: &'static str,
        /// The file or directory.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is not what its format requires.
    #[error("{}", ParseDisplay(self))]
    Parse {
        /// The file.
        path: String,
        /// 1-based line, where known.
        line: Option<usize>,
        /// The field (OSV path such as `affected[0].ranges[1].events[0].fixed`), where known.
        field: Option<String>,
        /// What is wrong and what to do.
        message: String,
    },
    /// The directory given as the advisory database was not written by `import`.
    #[error(
        "{path} is not a sluice advisory database ({reason}); create it with `sluice advisories import <SOURCES>... --db {path}`"
    )]
    NotADatabase {
        /// The directory.
        path: String,
        /// Why it is not one.
        reason: String,
    },
    /// A policy (threshold, allowlist) is invalid.
    #[error("invalid policy: {0}")]
    Policy(String),
}

struct ParseDisplay<'a>(&'a Error);

impl fmt::Display for ParseDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Error::Parse {
            path,
            line,
            field,
            message,
        } = self.0
        {
            write!(f, "{path}")?;
            if let Some(l) = line {
                write!(f, ":{l}")?;
            }
            if let Some(field) = field {
                write!(f, ": field `{field}`")?;
            }
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl Error {
    /// A parse error in `path` with a message.
    pub(crate) fn parse(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.into(),
            line: None,
            field: None,
            message: message.into(),
        }
    }

    /// A parse error at a line.
    pub(crate) fn parse_at(
        path: impl Into<String>,
        line: usize,
        message: impl Into<String>,
    ) -> Self {
        Error::Parse {
            path: path.into(),
            line: Some(line),
            field: None,
            message: message.into(),
        }
    }

    /// A parse error in a field.
    pub(crate) fn parse_field(
        path: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Parse {
            path: path.into(),
            line: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An IO error.
    pub(crate) fn io(
        action: &'static str,
        path: impl fmt::Display,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.to_string(),
            source,
        }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            Error::Io { path, .. }
            | Error::Parse { path, .. }
            | Error::NotADatabase { path, .. } => Some(path),
            Error::Policy(_) => None,
        }
    }
}

/// The 1-based line of a byte offset in a text.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Makes a third-party parser message fit our style: one line, no trailing period.
pub(crate) fn one_line(message: &str) -> String {
    let s: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.trim_end_matches('.').to_owned()
}
