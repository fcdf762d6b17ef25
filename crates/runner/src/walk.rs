//! Finding files under a root by glob patterns, shared by JUnit, artifacts and caches.
//!
//! Patterns are relative to the root, use `/` separators and are matched with
//! `literal_separator` (so `*` never crosses a directory, `**` does). Absolute patterns and
//! patterns with `..` are refused: nothing here may look outside the root. The walk never
//! follows symbolic links, so it cannot loop or escape, and it only descends into
//! directories that can still lead to a match (the literal prefix of each pattern), so
//! `reports/*.xml` does not crawl `node_modules`.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// What kind of filesystem object a [`Found`] entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Symlink,
    Dir,
}

/// One entry found under the root.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Path relative to the root.
    pub rel: PathBuf,
    /// Absolute (root-joined) path.
    pub abs: PathBuf,
    /// What it is (links are not followed).
    pub kind: Kind,
}

/// A pattern that cannot be used, with the reason.
#[derive(Debug)]
pub(crate) struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

/// Compiled patterns plus the literal directory prefix of each.
pub(crate) struct Matcher {
    set: GlobSet,
    prefixes: Vec<Vec<String>>,
}

/// Normalises a user pattern: strips `./` and trailing `/`, refuses escapes.
pub(crate) fn normalise_pattern(pattern: &str) -> Result<String, BadPattern> {
    let bad = |reason: &str| BadPattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    if pattern.starts_with('/') {
        return Err(bad(
            "patterns are relative to the workspace; drop the leading /",
        ));
    }
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad(
            "patterns may not contain .. (they must stay inside the workspace)",
        ));
    }
    if parts.is_empty() {
        return Err(bad(
            "the pattern names no file; write a path or glob such as dist/**",
        ));
    }
    Ok(parts.join("/"))
}

impl Matcher {
    /// Compiles `patterns`.
    pub(crate) fn new(patterns: &[String]) -> Result<Matcher, BadPattern> {
        let mut builder = GlobSetBuilder::new();
        let mut prefixes = Vec::with_capacity(patterns.len());
        for raw in patterns {
            let pattern = normalise_pattern(raw)?;
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| BadPattern {
                    pattern: raw.clone(),
                    reason: err.kind().to_string(),
                })?;
            builder.add(glob);
            prefixes.push(
                pattern
                    .split('/')
                    .take_while(|part| !part.contains(['*', '?', '[', '{', '\\']))
                    .map(str::to_owned)
                    .collect(),
            );
        }
        let set = builder.build().map_err(|err| BadPattern {
            pattern: patterns.join(", "),
            reason: err.to_string(),
        })?;
        Ok(Matcher { set, prefixes })
    }

    fn is_match(&self, rel: &Path) -> bool {
        self.set.is_match(rel)
    }

    /// Whether some pattern could match `dir` or something below it.
    fn may_descend(&self, dir: &[String]) -> bool {
        self.prefixes.iter().any(|prefix| {
            let n = prefix.len().min(dir.len());
            prefix[..n] == dir[..n]
        })
    }
}

/// How matches are expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only regular files that match (JUnit reports, cache key files).
    Files,
    /// Files and symlinks that match, plus everything under a matching directory
    /// (artifacts).
    Trees,
}

/// Finds entries under `root` matching `matcher`, sorted by relative path.
pub(crate) fn find(root: &Path, matcher: &Matcher, mode: Mode) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    if matcher.prefixes.is_empty() {
        return Ok(out);
    }
    walk(root, root, &mut Vec::new(), matcher, mode, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Everything under `dir` (relative path `rel` from root), recursively, sorted.
pub(crate) fn everything_under(root: &Path, rel: &Path) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    let abs = root.join(rel);
    let meta = match std::fs::symlink_metadata(&abs) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(err) => return Err(err),
    };
    let kind = kind_of(&meta);
    match kind {
        Some(Kind::Dir) => {
            let mut names: Vec<OsString> =
                rel.components().map(|c| c.as_os_str().to_owned()).collect();
            walk_all(root, &abs, &mut names, &mut out)?;
        }
        Some(kind) => out.push(Found {
            rel: rel.to_path_buf(),
            abs,
            kind,
        }),
        None => {}
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn kind_of(meta: &std::fs::Metadata) -> Option<Kind> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        Some(Kind::Symlink)
    } else if ft.is_dir() {
        Some(Kind::Dir)
    } else if ft.is_file() {
        Some(Kind::File)
    } else {
        // Sockets, fifos and devices are never packed or parsed.
        None
    }
}

fn read_sorted(dir: &Path) -> io::Result<Vec<(OsString, std::fs::Metadata)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match std::fs::symlink_metadata(entry.path()) {
            Ok(meta) => meta,
            // Deleted while we looked: nothing to find.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        entries.push((entry.file_name(), meta));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn rel_of(names: &[OsString]) -> PathBuf {
    names.iter().collect()
}

fn walk(
    root: &Path,
    dir: &Path,
    names: &mut Vec<OsString>,
    matcher: &Matcher,
    mode: Mode,
    out: &mut Vec<Found>,
) -> io::Result<()> {
    let entries = match read_sorted(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound && names.is_empty() => {
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    for (name, meta) in entries {
        let Some(kind) = kind_of(&meta) else { continue };
        names.push(name);
        let rel = rel_of(names);
        let abs = root.join(&rel);
        let matched = matcher.is_match(&rel);
        match (kind, mode) {
            (Kind::Dir, Mode::Trees) if matched => walk_all(root, &abs, names, out)?,
            (Kind::Dir, _) => {
                let parts: Vec<String> = names
                    .iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                if matcher.may_descend(&parts) {
                    walk(root, &abs, names, matcher, mode, out)?;
                }
            }
            (Kind::File, _) | (Kind::Symlink, Mode::Trees) if matched => {
                out.push(Found { rel, abs, kind });
            }
            _ => {}
        }
        names.pop();
    }
    Ok(())
}

fn walk_all(
    root: &Path,
    dir: &Path,
    names: &mut Vec<OsString>,
    out: &mut Vec<Found>,
) -> io::Result<()> {
    for (name, meta) in read_sorted(dir)? {
        let Some(kind) = kind_of(&meta) else { continue };
        names.push(name);
        let rel = rel_of(names);
        let abs = root.join(&rel);
        if kind == Kind::Dir {
            walk_all(root, &abs, names, out)?;
        } else {
            out.push(Found { rel, abs, kind });
        }
        names.pop();
    }
    Ok(())
}

/// Checks that `path` is a plain relative path (no root, no `..`), as stored in a tar or
/// given as a cache path.
pub(crate) fn is_safe_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Whether a symlink at relative path `link` with target `target` stays inside the root.
///
/// The rule is deliberately stricter than a lexical check: the target must be relative,
/// may climb with `..` only at its start (not above the root), and then only descends.
/// A `..` after a normal component could climb out through another symlink
/// (`d -> .` then `x -> d/../y`), so it is refused. Callers must also make sure the
/// link's own parent directories are real directories, not symlinks.
pub(crate) fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.as_os_str().is_empty() {
        return false;
    }
    let mut depth = link.parent().map_or(0, |p| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    let mut descending = false;
    for component in target.components() {
        match component {
            Component::Normal(_) => descending = true,
            Component::CurDir => {}
            Component::ParentDir if !descending && depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn links_are_judged_lexically() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("c")));
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("b"), Path::new("/etc/passwd")));
        assert!(!link_stays_inside(
            Path::new("a/b"),
            Path::new("x/../../../y")
        ));
        assert!(!link_stays_inside(Path::new("x"), Path::new("d/../y")));
        assert!(link_stays_inside(
            Path::new("lib/libfoo.so"),
            Path::new("./libfoo.so.1")
        ));
        assert!(!link_stays_inside(Path::new("x"), Path::new("")));
    }

    #[test]
    fn patterns_are_normalised_and_escapes_refused() {
        assert_eq!(normalise_pattern("./dist/").ok().as_deref(), Some("dist"));
        assert!(normalise_pattern("/etc/*").is_err());
        assert!(normalise_pattern("a/../../b").is_err());
        assert!(normalise_pattern("./").is_err());
    }
}
