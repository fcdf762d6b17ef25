//! The `sluice.yml` model: the desired state that lives in each repository.
//!
//! [`parse`] turns the text into a validated [`Config`] or a list of [`Diagnostic`]s that
//! each say `file:line:column`, the field, what is wrong and what to do. [`json_schema`]
//! and [`reference_markdown`] are generated from the same types, so editors, the docs and
//! the parser cannot drift apart. Architecture invariant: no IO here; callers read files.

mod model;

pub use model::*;

/// One problem found in a `sluice.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to [`parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted path of the field, e.g. `services.api.steps.test.needs[0]`; empty for the root.
    pub field: String,
    /// What is wrong, lower-case, no trailing period.
    pub message: String,
    /// What to do about it, if there is something specific.
    pub hint: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// All problems found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// Parses and validates a `sluice.yml`. `file` is only used in messages.
pub fn parse(_source: &str, _file: &str) -> Result<Config, Diagnostics> {
    todo!("spec helper")
}

/// Checks the services' path filters against the files of a commit: a filter that matches
/// no file is almost always a typo, so it is reported (with the position of the filter).
pub fn check_paths(
    _source: &str,
    _file: &str,
    _config: &Config,
    _files: &[String],
) -> Vec<Diagnostic> {
    todo!("spec helper")
}

/// The JSON Schema (draft 2020-12) of `sluice.yml`, pretty-printed.
pub fn json_schema() -> String {
    todo!("spec helper")
}

/// The `sluice.yml` reference in Markdown, generated from the same doc comments as the schema.
pub fn reference_markdown() -> String {
    todo!("spec helper")
}
