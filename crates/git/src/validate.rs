//! Checks on revisions, paths and sources given by callers, so that nothing a user or a
//! webhook supplies can be taken by git as an option or smuggle a second argument.

use crate::GitError;

fn refuse(what: &'static str, value: &str, reason: &'static str) -> GitError {
    let mut shown: String = value.chars().take(80).collect();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    GitError::InvalidArgument {
        what,
        value: shown,
        reason,
    }
}

fn common(what: &'static str, value: &str, max: usize) -> Result<(), GitError> {
    if value.is_empty() {
        return Err(refuse(what, value, "it is empty"));
    }
    if value.len() > max {
        return Err(refuse(what, value, "it is too long"));
    }
    if value.starts_with('-') {
        return Err(refuse(
            what,
            value,
            "it starts with '-' and would be read as a git option",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(refuse(
            what,
            value,
            "it contains a control character (NUL, newline, ...)",
        ));
    }
    Ok(())
}

/// A revision: a branch, a full or short sha, or rev syntax such as `main~1`.
pub(crate) fn rev(value: &str) -> Result<(), GitError> {
    common("revision", value, 256)?;
    if value.contains(':') || value.contains(char::is_whitespace) {
        return Err(refuse(
            "revision",
            value,
            "it contains ':' or whitespace, which no branch or sha has",
        ));
    }
    Ok(())
}

/// A path inside the tree, `/`-separated and relative. Returns it without a leading `./`.
pub(crate) fn path(value: &str) -> Result<&str, GitError> {
    let trimmed = value.strip_prefix("./").unwrap_or(value);
    common("path", trimmed, 4096)?;
    if trimmed.starts_with('/') {
        return Err(refuse(
            "path",
            value,
            "it is absolute; give it relative to the repository root",
        ));
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(refuse(
            "path",
            value,
            "it has an empty, '.' or '..' component",
        ));
    }
    Ok(trimmed)
}

/// A git source: a local path or a URL.
pub(crate) fn source(value: &str) -> Result<(), GitError> {
    common("source", value, 4096)
}

/// True for a full hexadecimal object id (SHA-1 or SHA-256), lower case.
pub(crate) fn is_full_sha(value: &str) -> bool {
    (value.len() == 40 || value.len() == 64)
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions() {
        for ok in ["main", "feature/x", "abc123", "main~1", "HEAD^"] {
            assert!(rev(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "--output=/tmp/x",
            "a\nb",
            "a\0b",
            "main:file",
            "a b",
        ] {
            assert!(rev(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(path("./a/b.txt").ok(), Some("a/b.txt"));
        assert_eq!(path("sluice.yml").ok(), Some("sluice.yml"));
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "-rf", "a\nb", "."] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shas() {
        assert!(is_full_sha(&"a".repeat(40)));
        assert!(is_full_sha(&"0".repeat(64)));
        assert!(!is_full_sha(&"A".repeat(40)));
        assert!(!is_full_sha("abc"));
    }
}
