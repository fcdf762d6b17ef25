//! Small reproductions of Go formatting that leaks onto the wire.
//!
//! Alertmanager error messages quote names with Go's `%q` and group keys embed
//! `model.LabelSet.String()`, so byte-compatible answers need the same quoting rules.

use crate::model::Labels;

/// Quotes `s` like Go's `strconv.Quote` (`%q`): double quotes, backslash escapes for
/// `"` and `\`, the C escapes, `\xNN` for other ASCII controls and `\uNNNN`/`\UNNNNNNNN`
/// for non-printable characters.
///
/// Go decides printability with Unicode tables; here a character counts as non-printable
/// when it is a control, a non-ASCII white-space or one of the common format characters.
/// That matches Go for every character a label is realistically made of.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !is_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Common format characters (Unicode category Cf) that Go refuses to print.
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xf0000..=0x10ffff)
}

/// Renders a label set like Go's `model.LabelSet.String()`: `{a="1", b="2"}`, with the
/// `name="value"` pairs sorted as strings (which is not always name order).
pub fn label_set_string(labels: &Labels) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={}", quote(value)))
        .collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(", "))
}

/// Whether `name` is a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_like_go() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(quote("\u{1}\u{7f}"), "\"\\x01\\x7f\"");
        assert_eq!(quote("caf\u{e9} \u{1F600}"), "\"caf\u{e9} \u{1F600}\"");
        assert_eq!(quote("nb\u{a0}sp"), "\"nb\\u00a0sp\"");
        assert_eq!(quote("zw\u{200b}"), "\"zw\\u200b\"");
        assert_eq!(quote("\u{f0000}"), "\"\\U000f0000\"");
    }

    #[test]
    fn label_set_string_sorts_pairs_as_strings() {
        let mut labels = Labels::new();
        labels.insert("a".into(), "x".into());
        labels.insert("a1".into(), "y".into());
        labels.insert("b".into(), "say \"hi\"".into());
        // "a1=..." sorts before "a=..." because '1' < '='.
        assert_eq!(
            label_set_string(&labels),
            "{a1=\"y\", a=\"x\", b=\"say \\\"hi\\\"\"}"
        );
        assert_eq!(label_set_string(&Labels::new()), "{}");
    }

    #[test]
    fn label_names() {
        for ok in ["a", "_", "alertname", "A_9", "__name__"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a.b", "a b", "é"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }
}
