//! The `sluice.yml` model: the desired state that lives in each repository.
//!
//! [`parse`] turns the text into a validated [`Config`] or a list of [`Diagnostic`]s that
//! each say `file:line:column`, the field, what is wrong and what to do. [`json_schema`]
//! and [`reference_markdown`] are generated from the same types, so editors, the docs and
//! the parser cannot drift apart. Architecture invariant: no IO here; callers read files.

mod alerting;
mod docs;
mod image;
mod model;
mod node;
mod paths;
mod schema;
mod validate;

pub use image::ImageRef;
pub use paths::{PathFilter, path_matches};

pub use alerting::*;
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
///
/// YAML syntax errors stop parsing and give one diagnostic; otherwise every problem found
/// is reported, in file order.
pub fn parse(source: &str, file: &str) -> Result<Config, Diagnostics> {
    let mut validator = validate::Validator::new(source, file);
    let root = match node::load(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            validator.error(
                node::Pos::START,
                "",
                "the file is empty",
                Some("start with `project: <name>`; see docs/sluice-yml.md".into()),
            );
            return Err(Diagnostics(validator.finish()));
        }
        Err(e) => {
            validator.error(
                e.pos,
                "",
                format!("invalid YAML: {}", e.message),
                Some("check the indentation, quotes and brackets around this position".into()),
            );
            return Err(Diagnostics(validator.finish()));
        }
    };
    let config = validator.config(&root);
    let diagnostics = validator.finish();
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(Diagnostics(diagnostics)),
    }
}

/// Checks the services' path filters against the files of a commit: a filter that matches
/// no file is almost always a typo, so it is reported (with the position of the filter).
///
/// `files` are paths relative to the repository root, `/`-separated. `config` should be
/// the result of [`parse`] on the same `source`; positions are looked up in `source`.
pub fn check_paths(source: &str, file: &str, config: &Config, files: &[String]) -> Vec<Diagnostic> {
    let positions = paths_positions(source);
    let mut out = Vec::new();
    for service in &config.services {
        for (i, pattern) in service.paths.iter().enumerate() {
            let Ok(filter) = PathFilter::new(std::slice::from_ref(pattern)) else {
                continue;
            };
            if files.iter().any(|f| filter.matches(f)) {
                continue;
            }
            let pos = positions
                .iter()
                .find(|(s, p, _)| s == &service.name && p == pattern)
                .map_or(node::Pos::START, |(_, _, pos)| *pos);
            out.push(Diagnostic {
                file: file.to_owned(),
                line: pos.line,
                column: pos.column,
                field: format!("services.{}.paths[{i}]", service.name),
                message: format!("path filter `{pattern}` matches no file in the repository"),
                hint: Some(
                    "check the spelling; patterns are relative to the repository root".into(),
                ),
            });
        }
    }
    out
}

/// (service, pattern, position) of every `services.*.paths` entry in the source.
fn paths_positions(source: &str) -> Vec<(String, String, node::Pos)> {
    use node::Value;
    fn get<'n>(node: &'n node::Node, key: &str) -> Option<&'n node::Node> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    let mut out = Vec::new();
    let Ok(Some(root)) = node::load(source) else {
        return out;
    };
    let Some(Value::Map(services)) = get(&root, "services").map(|n| &n.value) else {
        return out;
    };
    for (name, service) in services {
        let (Value::Str(name), Some(Value::Seq(patterns))) =
            (&name.value, get(service, "paths").map(|n| &n.value))
        else {
            continue;
        };
        for pattern in patterns {
            if let Value::Str(p) = &pattern.value {
                out.push((name.clone(), p.clone(), pattern.pos));
            }
        }
    }
    out
}

/// The JSON Schema (draft 2020-12) of `sluice.yml`, pretty-printed.
pub fn json_schema() -> String {
    docs::json_schema()
}

/// The `sluice.yml` reference in Markdown, generated from the same doc comments as the schema.
pub fn reference_markdown() -> String {
    docs::reference_markdown()
}

/// A complete, valid `sluice.yml` that uses every field (the one shown in the reference);
/// handy as a starting point for new repositories.
pub fn example() -> &'static str {
    docs::EXAMPLE
}
