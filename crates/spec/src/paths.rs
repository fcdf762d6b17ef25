//! Path filters: which files of the repository belong to a service.
//!
//! Glob semantics are `globset` with `literal_separator(true)` (`*` stays within one
//! directory, `**` crosses directories), plus one convenience: a pattern that names a
//! directory (`services/api` or `services/api/`) also matches everything under it. The
//! engine uses [`path_matches`] for monorepo change detection. No IO: callers list files.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Compiles one pattern with sluice's glob semantics.
pub(crate) fn compile(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Strips what does not change the meaning of a path or pattern: `./` in front, `/` behind.
fn normalize(path: &str) -> &str {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p.trim_end_matches('/')
}

/// A compiled set of path filters, for matching many paths against the same patterns.
#[derive(Debug, Clone)]
pub struct PathFilter {
    set: GlobSet,
    everything: bool,
}

impl PathFilter {
    /// Compiles the patterns; an empty list matches every path. Fails on the first pattern
    /// that is not a valid glob (a validated [`crate::Config`] has none).
    pub fn new(patterns: &[String]) -> Result<PathFilter, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut everything = patterns.is_empty();
        for pattern in patterns {
            let p = normalize(pattern);
            if p.is_empty() || p == "**" {
                everything = true;
                continue;
            }
            builder.add(compile(p)?);
            // A pattern naming a directory also covers everything under it.
            builder.add(compile(&format!("{p}/**"))?);
        }
        Ok(PathFilter {
            set: builder.build()?,
            everything,
        })
    }

    /// True if `path` (relative to the repository root, `/`-separated) is covered.
    pub fn matches(&self, path: &str) -> bool {
        self.everything || self.set.is_match(normalize(path))
    }
}

/// True if `path` (relative to the repository root, `/`-separated) matches any of the
/// patterns; an empty list matches everything. Invalid patterns match nothing.
pub fn path_matches(patterns: &[String], path: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    patterns
        .iter()
        .any(|p| PathFilter::new(std::slice::from_ref(p)).is_ok_and(|filter| filter.matches(path)))
}

impl crate::Service {
    /// True if a change to `path` (relative to the repository root) concerns this service.
    pub fn matches(&self, path: &str) -> bool {
        path_matches(&self.paths, path)
    }
}
