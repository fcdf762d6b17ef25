//! A tiny character cursor shared by the matcher and rule-expression parsers.
//!
//! Both languages are small enough for hand-written recursive descent; sharing the cursor keeps
//! error columns consistent: a matcher embedded in a rule expression reports its column within
//! the whole expression, not within the braces.

/// A position in a source string, with helpers for the handful of token shapes we need.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Starts at the beginning of `src`.
    pub(crate) fn new(src: &'a str) -> Self {
        Cursor { src, pos: 0 }
    }

    /// The byte offset of the cursor.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The 1-based character column of a byte offset (clamped to the source).
    pub(crate) fn column_of(&self, byte: usize) -> usize {
        let mut end = byte.min(self.src.len());
        while !self.src.is_char_boundary(end) {
            end -= 1;
        }
        self.src[..end].chars().count() + 1
    }

    /// The 1-based character column of the cursor.
    pub(crate) fn column(&self) -> usize {
        self.column_of(self.pos)
    }

    /// The unread rest of the source.
    pub(crate) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// The source between two byte offsets.
    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.src[from..to]
    }

    /// The next character, if any.
    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// The character after the next one, if any.
    pub(crate) fn peek2(&self) -> Option<char> {
        let mut chars = self.rest().chars();
        chars.next();
        chars.next()
    }

    /// Whether the source is fully consumed.
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Consumes and returns the next character.
    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consumes `c` if it is next.
    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Consumes `s` if the rest starts with it.
    pub(crate) fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips spaces, tabs and line breaks.
    pub(crate) fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    /// Consumes characters while `f` holds and returns them.
    pub(crate) fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if f(c) {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        &self.src[start..self.pos]
    }
}

/// Whether `c` may start a label name (`[a-zA-Z_]`).
pub(crate) fn is_label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Whether `c` may continue a label name (`[a-zA-Z0-9_]`).
pub(crate) fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `name` is a valid Prometheus label name.
pub(crate) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_label_start) && chars.all(is_label_char)
}

/// Whether `c` may start a metric name (`[a-zA-Z_:]`).
pub(crate) fn is_metric_start(c: char) -> bool {
    is_label_start(c) || c == ':'
}

/// Whether `c` may continue a metric name (`[a-zA-Z0-9_:]`).
pub(crate) fn is_metric_char(c: char) -> bool {
    is_label_char(c) || c == ':'
}

/// Whether `name` is a valid Prometheus metric name.
pub(crate) fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_metric_start) && chars.all(is_metric_char)
}

/// Writes `value` as a double-quoted string, escaping `\`, `"` and line breaks.
pub(crate) fn write_quoted(f: &mut impl std::fmt::Write, value: &str) -> std::fmt::Result {
    f.write_char('"')?;
    for c in value.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Formats a float the way the Prometheus text format and our rule language spell it:
/// `NaN`, `+Inf`, `-Inf`, otherwise Rust's shortest representation that parses back exactly.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Parses a float as Prometheus does: decimal or exponent notation, `NaN`, `Inf` with an optional
/// sign, case-insensitive for the special values. Returns `None` for anything else (including
/// Rust-only spellings such as `infinity`, which are not accepted to keep the language small).
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if unsigned.eq_ignore_ascii_case("inf") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    // Only digits, one dot, and an exponent: this rejects "infinity", "1_0" and the like.
    let ok = !unsigned.is_empty()
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && unsigned
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.');
    if !ok {
        return None;
    }
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_parse_and_format_like_prometheus() {
        assert_eq!(parse_float("1.5"), Some(1.5));
        assert_eq!(parse_float("-2e3"), Some(-2000.0));
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-inf"), Some(f64::NEG_INFINITY));
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("infinity"), None);
        assert_eq!(parse_float("1_0"), None);
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("e5"), None);
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(0.05), "0.05");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let c = Cursor::new("äb");
        assert_eq!(c.column_of(2), 2);
        assert_eq!(c.column_of(1), 1);
        assert_eq!(c.column_of(99), 3);
    }
}
