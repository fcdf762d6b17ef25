//! Alertmanager-style label matchers: `name="value"`, `name!=value`, `name=~"re"`, `name!~"re"`.
//!
//! Semantics follow Alertmanager:
//!
//! * a label that is absent from the label set is matched as the empty string, so
//!   `team=""` matches alerts without a `team` label and `team!=""` requires one;
//! * regular expressions are fully anchored: `name=~"api.*"` is compiled as `^(?:api.*)$`, so it
//!   must match the whole value. A regex is compiled once, when the matcher is built.
//!
//! Text syntax, accepted by [`parse_matchers`] and [`Matcher`]'s `FromStr`:
//!
//! * a list, either bare (`a="b", c=~"d.*"`) or in braces (`{a="b", c=~"d.*"}`), with optional
//!   whitespace and an optional trailing comma; an empty list (`""` or `{}`) is valid;
//! * label names are Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`;
//! * values are double-quoted, with the escapes `\\`, `\"`, `\n` and `\t`. Any other backslash
//!   sequence is kept as written, so regexes such as `"\d+"` need no double escaping;
//! * quotes are optional for simple values: an unquoted value runs until whitespace, `,` or `}`
//!   and may not contain `"`, `{`, `=`, `!` or `~` (quote such values).
//!
//! [`Matcher`]'s `Display` writes the canonical form (`name="value"` with escapes), which parses
//! back to an equal matcher.

use std::fmt;
use std::str::FromStr;

use regex::{Regex, RegexBuilder};
use thiserror::Error;

use crate::Labels;
use crate::lex::{Cursor, is_label_char, is_label_name, is_label_start, write_quoted};

/// The most memory one compiled matcher regex may use. Silences and rules are user input, so a
/// pathological pattern must fail to compile instead of using unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchOp {
    /// `=`: the value equals the matcher's value.
    Eq,
    /// `!=`: the value differs from the matcher's value.
    Ne,
    /// `=~`: the whole value matches the regex.
    Re,
    /// `!~`: the whole value does not match the regex.
    NotRe,
}

impl MatchOp {
    /// The operator as written in matcher text.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why matcher text or a matcher could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatcherError {
    /// The text is malformed at `column` (1-based, in characters).
    #[error("column {column}: {message}")]
    Syntax {
        /// 1-based character column where the problem starts.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A label name is not a valid Prometheus label name.
    #[error("invalid label name `{name}`: use letters, digits and `_`, not starting with a digit")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A regex matcher's value does not compile.
    #[error("invalid regex for label `{name}`: {reason}")]
    InvalidRegex {
        /// The label the regex applies to.
        name: String,
        /// The regex engine's explanation.
        reason: String,
    },
}

/// One label matcher. Built with [`Matcher::new`] or parsed from text; the regex (for `=~` and
/// `!~`) is compiled at construction.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher, validating the label name and compiling the regex for `=~`/`!~`.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        if !is_label_name(&name) {
            return Err(MatcherError::InvalidName { name });
        }
        let regex = match op {
            MatchOp::Eq | MatchOp::Ne => None,
            MatchOp::Re | MatchOp::NotRe => Some(compile_anchored(&name, &value)?),
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// The label name this matcher looks at.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The comparison operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or (unanchored) regex as written.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the label set matches; a missing label is matched as the empty string.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }

    /// Whether a single label value matches.
    pub fn matches_value(&self, value: &str) -> bool {
        let re_match = || self.regex.as_ref().is_some_and(|re| re.is_match(value));
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::Ne => value != self.value,
            MatchOp::Re => re_match(),
            MatchOp::NotRe => !re_match(),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        f.write_str(self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;

    /// Parses exactly one matcher (braces are allowed around it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = parse_matchers(s)?;
        if list.len() != 1 {
            return Err(MatcherError::Syntax {
                column: 1,
                message: format!(
                    "expected exactly one matcher such as `name=\"value\"`, found {}",
                    list.len()
                ),
            });
        }
        list.pop().ok_or(MatcherError::Syntax {
            column: 1,
            message: "expected a matcher such as `name=\"value\"`".to_string(),
        })
    }
}

/// Parses a list of matchers, bare (`a="b", c=~"d"`) or in braces (`{a="b", c=~"d"}`).
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, MatcherError> {
    let mut cur = Cursor::new(s);
    cur.skip_ws();
    let list = if cur.peek() == Some('{') {
        parse_braced(&mut cur)?
    } else {
        parse_items(&mut cur, None)?
    };
    cur.skip_ws();
    match cur.peek() {
        None => Ok(list),
        Some('}') => Err(syntax(
            &cur,
            cur.pos(),
            "unexpected `}`: there is no `{` to close",
        )),
        Some(c) => Err(syntax(
            &cur,
            cur.pos(),
            &format!("unexpected `{c}` after the matcher list; separate matchers with `,`"),
        )),
    }
}

/// Writes matchers in canonical list form: `{a="b", c=~"d.*"}`.
pub fn format_matchers(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(Matcher::to_string).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Parses `{...}` starting at the cursor, which must be on the `{`. Used by the rule-expression
/// parser so that columns are reported within the whole expression.
pub(crate) fn parse_braced(cur: &mut Cursor<'_>) -> Result<Vec<Matcher>, MatcherError> {
    let open = cur.pos();
    if !cur.eat('{') {
        return Err(syntax(cur, open, "expected `{` to start a matcher list"));
    }
    let list = parse_items(cur, Some(open))?;
    if cur.eat('}') {
        Ok(list)
    } else {
        Err(syntax(
            cur,
            open,
            "this `{` is never closed; add `}` after the last matcher",
        ))
    }
}

/// Parses comma-separated matchers until the end, or until `}` when `open_brace` is set.
fn parse_items(
    cur: &mut Cursor<'_>,
    open_brace: Option<usize>,
) -> Result<Vec<Matcher>, MatcherError> {
    let mut out = Vec::new();
    loop {
        cur.skip_ws();
        if cur.at_end() || cur.peek() == Some('}') {
            return Ok(out);
        }
        out.push(parse_one(cur)?);
        cur.skip_ws();
        if cur.eat(',') {
            continue;
        }
        match cur.peek() {
            None | Some('}') => return Ok(out),
            Some(c) => {
                let expected = if open_brace.is_some() {
                    "`,` or `}`"
                } else {
                    "`,`"
                };
                return Err(syntax(
                    cur,
                    cur.pos(),
                    &format!("expected {expected} after a matcher, found `{c}`"),
                ));
            }
        }
    }
}

/// Parses `name op value` at the cursor.
fn parse_one(cur: &mut Cursor<'_>) -> Result<Matcher, MatcherError> {
    let name_start = cur.pos();
    match cur.peek() {
        Some(c) if is_label_start(c) => {}
        found => {
            return Err(syntax(
                cur,
                name_start,
                &format!(
                    "expected a label name (letters, digits and `_`, not starting with a digit), found {}",
                    describe(found)
                ),
            ));
        }
    }
    let name = cur.take_while(is_label_char).to_string();
    cur.skip_ws();
    let op_start = cur.pos();
    let op = if cur.eat_str("=~") {
        MatchOp::Re
    } else if cur.eat_str("!~") {
        MatchOp::NotRe
    } else if cur.eat_str("!=") {
        MatchOp::Ne
    } else if cur.eat('=') {
        MatchOp::Eq
    } else {
        return Err(syntax(
            cur,
            op_start,
            &format!(
                "expected an operator (`=`, `!=`, `=~` or `!~`) after label `{name}`, found {}",
                describe(cur.peek())
            ),
        ));
    };
    cur.skip_ws();
    let value_start = cur.pos();
    let value = if cur.peek() == Some('"') {
        parse_quoted(cur, &name)?
    } else {
        parse_unquoted(cur, &name)?
    };
    match Matcher::new(name, op, value) {
        Ok(m) => Ok(m),
        Err(e) => Err(syntax(cur, value_start, &e.to_string())),
    }
}

/// Parses a double-quoted value; the cursor is on the opening quote.
fn parse_quoted(cur: &mut Cursor<'_>, name: &str) -> Result<String, MatcherError> {
    let open = cur.pos();
    cur.bump();
    let mut out = String::new();
    loop {
        match cur.bump() {
            None => {
                return Err(syntax(
                    cur,
                    open,
                    &format!("the value of label `{name}` has no closing `\"`"),
                ));
            }
            Some('"') => return Ok(out),
            Some('\\') => match cur.bump() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                // Kept verbatim so regex escapes like `\d` or `\.` work without doubling.
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => {
                    return Err(syntax(
                        cur,
                        open,
                        &format!("the value of label `{name}` has no closing `\"`"),
                    ));
                }
            },
            Some(c) => out.push(c),
        }
    }
}

/// Parses an unquoted value: everything up to whitespace, `,`, `}` or the end.
fn parse_unquoted(cur: &mut Cursor<'_>, name: &str) -> Result<String, MatcherError> {
    let start = cur.pos();
    let raw = cur.take_while(|c| !(c.is_whitespace() || c == ',' || c == '}'));
    if let Some((i, bad)) = raw
        .char_indices()
        .find(|(_, c)| matches!(c, '"' | '{' | '=' | '!' | '~'))
    {
        return Err(syntax(
            cur,
            start + i,
            &format!(
                "unquoted value of label `{name}` contains `{bad}`; wrap the value in double quotes"
            ),
        ));
    }
    Ok(raw.to_string())
}

/// Compiles `^(?:value)$`, after checking that `value` is a complete regex on its own (so a
/// value such as `a)|(b` cannot escape the anchoring group).
fn compile_anchored(name: &str, value: &str) -> Result<Regex, MatcherError> {
    let build = |pattern: &str| {
        RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| MatcherError::InvalidRegex {
                name: name.to_string(),
                reason: regex_reason(&e),
            })
    };
    build(value)?;
    build(&format!("^(?:{value})$"))
}

/// The one-line explanation inside a regex error (the full text draws a caret diagram).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
        .or_else(|| text.lines().next().map(str::to_string))
        .unwrap_or_else(|| "the pattern does not compile".to_string())
}

fn syntax(cur: &Cursor<'_>, at: usize, message: &str) -> MatcherError {
    MatcherError::Syntax {
        column: cur.column_of(at),
        message: message.to_string(),
    }
}

fn describe(c: Option<char>) -> String {
    match c {
        None => "the end of the text".to_string(),
        Some(c) => format!("`{c}`"),
    }
}
