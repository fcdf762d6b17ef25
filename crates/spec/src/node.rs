//! A YAML document as a tree of positioned nodes.
//!
//! serde-saphyr does the YAML parsing (and gives the line/column of every node through
//! [`serde_saphyr::Spanned`]); this module only turns its output into a small generic tree
//! that the validator walks. Reading the file into a generic tree first, instead of straight
//! into typed structs, lets the validator report every problem in one pass with its own
//! wording rather than stopping at serde's first error. This module knows nothing about
//! `sluice.yml` fields.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

/// Deepest nesting of lists and mappings accepted.
pub(crate) const MAX_DEPTH: usize = 24;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The start of the file, used when the parser gives no position.
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        let line = usize::try_from(loc.line()).unwrap_or(usize::MAX);
        let column = usize::try_from(loc.column()).unwrap_or(usize::MAX);
        if line == 0 {
            Pos::START
        } else {
            Pos {
                line,
                column: column.max(1),
            }
        }
    }
}

/// The value of one node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// An integer or a float; the source text is kept in [`Node::raw`].
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; duplicate keys are kept so the validator can report them.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How the value's kind is named in messages, e.g. "a list".
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// One positioned node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Byte range of the node in the source, when the parser reports it.
    pub span: Option<(usize, usize)>,
}

impl Node {
    /// The source text of a scalar (e.g. `1.50` for a float), falling back to its value.
    pub fn scalar_text(&self, source: &str) -> Option<String> {
        let from_source = self
            .span
            .and_then(|(start, len)| source.get(start..start.checked_add(len)?))
            .map(str::trim)
            .filter(|s| !s.is_empty());
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(from_source.map_or_else(|| b.to_string(), str::to_owned)),
            Value::Int(i) => Some(from_source.map_or_else(|| i.to_string(), str::to_owned)),
            Value::Float(f) => Some(from_source.map_or_else(|| f.to_string(), str::to_owned)),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        let span = spanned.referenced.span();
        let span = match (span.byte_offset(), span.byte_len()) {
            (Some(start), Some(len)) => usize::try_from(start).ok().zip(usize::try_from(len).ok()),
            _ => None,
        };
        Ok(Node {
            pos: Pos::from_location(&spanned.referenced),
            value: spanned.value,
            span,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// A YAML syntax error: where and what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document into a tree. `Ok(None)` means the document is empty (only
/// whitespace and comments).
pub(crate) fn load(source: &str) -> Result<Option<Node>, SyntaxError> {
    let options = serde_saphyr::options! {
        // Duplicates reach the validator, which reports them with both positions.
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        // YAML 1.2 booleans only, as editors and the JSON Schema see them: `on`, `yes`
        // and `no` are strings (`retry: {on: [failure]}` must not read as `true:`).
        strict_booleans: true,
        // A sluice.yml nests about ten levels deep. Each level of the tree costs tens of
        // kilobytes of stack in debug builds, so a low limit keeps hostile input from
        // overflowing a 2 MiB thread stack.
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH },
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(source, options) {
        Ok(node) => Ok(node.filter(|n| n.value != Value::Null || !is_blank(source))),
        Err(err) => {
            let inner = err.without_snippet();
            let pos = inner
                .location()
                .map_or(Pos::START, |l| Pos::from_location(&l));
            let message = if matches!(inner, serde_saphyr::Error::Budget { .. }) {
                format!("the document is too large or nested more than {MAX_DEPTH} levels deep")
            } else {
                clean_message(&UserMessageFormatter.format_message(inner))
            };
            Err(SyntaxError { pos, message })
        }
    }
}

/// True if the text has nothing but whitespace and comments.
fn is_blank(source: &str) -> bool {
    source
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

/// Makes a parser message fit our style: one line, lower-case start, no trailing period.
fn clean_message(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim().trim_end_matches('.');
    let mut chars = trimmed.chars();
    match (chars.next(), chars.clone().next()) {
        // Lower-case a capital that starts a word, but leave acronyms such as `YAML` alone.
        (Some(first), Some(second)) if !second.is_uppercase() => {
            first.to_lowercase().chain(chars).collect()
        }
        (Some(_), _) => trimmed.to_owned(),
        (None, _) => "the file is not valid YAML".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let node = load("a: 1\nb:\n  - x\n  - {c: d}\n").unwrap().unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map: {node:?}")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, column: 4 });
        assert_eq!(entries[1].0.pos, Pos { line: 2, column: 1 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, column: 5 });
        let Value::Map(inner) = &items[1].value else {
            panic!("not a map")
        };
        assert_eq!(inner[0].0.pos, Pos { line: 4, column: 6 });
        assert_eq!(inner[0].1.pos, Pos { line: 4, column: 9 });
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let node = load("a: 1\na: 2\n").unwrap().unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0.pos.line, 2);
    }

    #[test]
    fn scalar_text_keeps_source_spelling() {
        let src = "a: 1.50\nb: True\nc: 0x1F\n";
        let node = load(src).unwrap().unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        let texts: Vec<_> = entries
            .iter()
            .map(|(_, v)| v.scalar_text(src).unwrap())
            .collect();
        assert_eq!(texts, ["1.50", "True", "0x1F"]);
    }

    #[test]
    fn empty_documents() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# only a comment\n\n").unwrap(), None);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = load("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }
}
