//! Secret masking for step output.
//!
//! A [`Masker`] is built from the secret values whose output it guards. It precomputes
//! every textual form under which a secret commonly leaks into logs (the raw value, base64
//! in both alphabets with and without padding, base64 fragments of the value embedded in a
//! longer base64 string, double base64, hex and URL encoding) and replaces each occurrence
//! in a line with [`MASKED`]. Overlapping matches are merged, so the longest form always
//! wins and no tail of a longer encoding is left behind. Values may be arbitrary bytes
//! ([`Masker::from_values`]); a value spanning several lines is also masked line by line,
//! because logs are read a line at a time and the whole value never appears in one line.
//!
//! Masking is a last line of defence for logs, not a security boundary: a step that wants
//! to leak a secret can always transform it in a way no masker anticipates.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

/// The text that replaces every masked occurrence.
pub const MASKED: &str = "[MASKED]";

/// Secrets shorter than this many bytes are not masked.
///
/// Masking a two- or three-byte value such as `on`, `yes` or `123` would shred ordinary
/// log output (every occurrence of those letters anywhere), and the pattern of holes would
/// itself hint at the secret. Values that short are not secrets worth the name; the spec
/// layer should warn about them instead.
pub const MIN_SECRET_BYTES: usize = 4;

/// Lines of a multi-line secret shorter than this are not masked on their own (a PEM's
/// short last line or a `user` line would otherwise hide ordinary words everywhere). A
/// value that is one line plus line ends is masked down to [`MIN_SECRET_BYTES`].
pub const MIN_LINE_BYTES: usize = 8;

/// Base64 fragments (the stable middle of a secret encoded at an offset inside a longer
/// base64 stream) shorter than this are not masked: they would match too much by accident.
const MIN_FRAGMENT_CHARS: usize = 6;

/// Characters that are percent-encoded in URLs: everything except RFC 3986 unreserved.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces every known form of a set of secrets with [`MASKED`].
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// All forms of all secrets, deduplicated, longest first.
    patterns: Vec<String>,
}

impl Masker {
    /// Builds a masker for `secrets` (text values); see [`Masker::from_values`].
    pub fn new<I: IntoIterator<Item = String>>(secrets: I) -> Masker {
        Masker::from_values(secrets)
    }

    /// Builds a masker for secret values given as bytes (any bytes; the raw form is only
    /// searched for when the value is UTF-8, the encoded forms always).
    ///
    /// Secrets shorter than [`MIN_SECRET_BYTES`] bytes are ignored: masking them would
    /// destroy unrelated output and hint at the value through the holes it leaves.
    pub fn from_values<I, V>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut masker = Masker::default();
        masker.add(secrets);
        masker
    }

    /// A copy of this masker that also masks `secrets`.
    pub fn extended<I, V>(&self, secrets: I) -> Masker
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut masker = self.clone();
        masker.add(secrets);
        masker
    }

    fn add<I, V>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let patterns = &mut self.patterns;
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.len() < MIN_SECRET_BYTES {
                continue;
            }
            forms(secret, patterns);
            if secret.contains(&b'\n') || secret.contains(&b'\r') {
                let lines: Vec<&[u8]> = secret
                    .split(|b| *b == b'\n' || *b == b'\r')
                    .filter(|l| !l.is_empty())
                    .collect();
                let min = if lines.len() == 1 {
                    MIN_SECRET_BYTES
                } else {
                    MIN_LINE_BYTES
                };
                for line in lines.into_iter().filter(|l| l.len() >= min) {
                    forms(line, patterns);
                }
            }
        }
        patterns.retain(|p| p.len() >= MIN_SECRET_BYTES);
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
    }

    /// Returns `line` with every form of every secret replaced by [`MASKED`].
    ///
    /// Borrows the input unchanged when nothing matched, which is the common case.
    pub fn mask<'a>(&self, line: &'a str) -> Cow<'a, str> {
        if self.patterns.is_empty() || line.is_empty() {
            return Cow::Borrowed(line);
        }
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.patterns {
            if pattern.len() > line.len() {
                continue;
            }
            // `match_indices` skips overlapping occurrences of the same pattern; searching
            // again from every start + 1 catches them (e.g. `abab` in `ababab`).
            let mut from = 0;
            while let Some(pos) = line[from..].find(pattern.as_str()) {
                let start = from + pos;
                ranges.push((start, start + pattern.len()));
                from = start + line[start..].chars().next().map_or(1, char::len_utf8);
                if from >= line.len() {
                    break;
                }
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(line);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(line.len());
        let mut cursor = 0;
        let mut iter = ranges.into_iter().peekable();
        while let Some((start, mut end)) = iter.next() {
            // Merge every range overlapping or touching this one so the union is masked.
            while let Some(&(next_start, next_end)) = iter.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                iter.next();
            }
            out.push_str(&line[cursor..start]);
            out.push_str(MASKED);
            cursor = end;
        }
        out.push_str(&line[cursor..]);
        Cow::Owned(out)
    }

    /// Returns true when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Appends every form of `secret` to `out`: those [`sluice_secrets::encoded_forms`] lists,
/// base64 fragments of it, and its percent-encodings with lower-case hex digits.
fn forms(bytes: &[u8], out: &mut Vec<String>) {
    out.extend(sluice_secrets::encoded_forms(bytes));

    // The secret inside a longer base64 stream: with k leading bytes, characters
    // ceil(8k/6) .. floor(8(k+n)/6) depend on the secret's bytes only.
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for lead in 0..3usize {
            let mut buf = vec![0u8; lead];
            buf.extend_from_slice(bytes);
            let encoded = engine.encode(&buf);
            let start = (8 * lead).div_ceil(6);
            let end = (8 * (lead + bytes.len())) / 6;
            if end >= start + MIN_FRAGMENT_CHARS
                && let Some(middle) = encoded.get(start..end)
            {
                out.push(middle.to_owned());
            }
        }
    }

    // `encoded_forms` writes upper-case hex (`%2F`), with spaces as `%20` and as `+`.
    let upper = percent_encode(bytes, URL_ENCODE).to_string();
    out.push(lower_percent_hex(&upper));
    out.push(lower_percent_hex(&upper.replace("%20", "+")));
}

/// Lower-cases the two hex digits after every `%`.
fn lower_percent_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut after_percent = 0;
    for c in encoded.chars() {
        if c == '%' {
            after_percent = 2;
            out.push(c);
        } else if after_percent > 0 {
            after_percent -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use percent_encoding::utf8_percent_encode;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(secrets.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn masks_exact_value_in_the_middle_of_a_line() {
        let m = masker(&["hunter2hunter2"]);
        assert_eq!(
            m.mask("password is hunter2hunter2, ok"),
            "password is [MASKED], ok"
        );
        assert_eq!(m.mask("hunter2hunter2"), "[MASKED]");
        assert_eq!(
            m.mask("a hunter2hunter2 b hunter2hunter2"),
            "a [MASKED] b [MASKED]"
        );
    }

    #[test]
    fn leaves_non_secrets_borrowed_and_untouched() {
        let m = masker(&["s3cr3t-token"]);
        let line = "nothing to see here: s3cr3t-toke";
        assert!(matches!(m.mask(line), Cow::Borrowed(l) if l == line));
        assert!(matches!(m.mask(""), Cow::Borrowed("")));
    }

    #[test]
    fn ignores_short_secrets() {
        let m = masker(&["abc", "", "yes"]);
        assert!(m.is_empty());
        assert_eq!(m.mask("abc yes"), "abc yes");
        assert!(!masker(&["abcd"]).is_empty());
    }

    #[test]
    fn masks_base64_forms() {
        let secret = "my-api-key?>value";
        let m = masker(&[secret]);
        for encoded in [
            STANDARD.encode(secret),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            STANDARD.encode(STANDARD.encode(secret)),
        ] {
            let line = format!("token: {encoded} end");
            assert_eq!(m.mask(&line), "token: [MASKED] end", "form {encoded}");
        }
    }

    #[test]
    fn masks_secret_embedded_inside_longer_base64() {
        let secret = "correct horse battery staple";
        let m = masker(&[secret]);
        for prefix in ["", "u", "us", "use", "user:"] {
            let encoded = STANDARD.encode(format!("{prefix}{secret}:trailing-data"));
            let masked = m.mask(&encoded);
            assert!(masked.contains(MASKED), "prefix {prefix:?}: {masked}");
            // The remaining characters must not decode back to the secret.
            let plain = masked.replace(MASKED, "");
            assert!(
                plain.len() < encoded.len() - 20,
                "prefix {prefix:?}: {masked}"
            );
        }
    }

    #[test]
    fn masks_hex_forms() {
        let m = masker(&["Zebra!23"]);
        let lower = hex::encode("Zebra!23");
        assert_eq!(m.mask(&format!("x={lower}")), "x=[MASKED]");
        assert_eq!(m.mask(&lower.to_uppercase()), "[MASKED]");
    }

    #[test]
    fn masks_url_encoded_forms() {
        let secret = "p@ss word/with+special&chars";
        let m = masker(&[secret]);
        for encoded in [
            "p%40ss%20word%2Fwith%2Bspecial%26chars",
            "p%40ss%20word%2fwith%2bspecial%26chars",
            "p%40ss+word%2Fwith%2Bspecial%26chars",
            "p%40ss+word%2fwith%2bspecial%26chars",
        ] {
            let line = format!("https://u:{encoded}@example.com");
            assert_eq!(m.mask(&line), "https://u:[MASKED]@example.com", "{encoded}");
        }
    }

    #[test]
    fn masks_several_secrets_and_overlaps() {
        let m = masker(&["alpha-secret", "beta-secret", "secret-gamma"]);
        assert_eq!(
            m.mask("alpha-secret and beta-secret"),
            "[MASKED] and [MASKED]"
        );
        // Overlapping secrets are masked as one region so no tail survives.
        assert_eq!(m.mask("x alpha-secret-gamma y"), "x [MASKED] y");
    }

    #[test]
    fn handles_multibyte_utf8_without_panicking() {
        let secret = "pässwörd-ключ-🔑";
        let m = masker(&[secret]);
        assert_eq!(m.mask(&format!("é {secret} ü")), "é [MASKED] ü");
        let encoded = utf8_percent_encode(secret, URL_ENCODE).to_string();
        assert_eq!(m.mask(&encoded), "[MASKED]");
        // Lines full of multibyte characters that partially match must not panic.
        for line in [
            "🔑🔑🔑",
            "pässwörd-ключ-",
            "ключ-🔑 pässwörd",
            "\u{0}\u{10FFFF}",
        ] {
            let _ = m.mask(line);
        }
        let m = masker(&["🔑🔑"]);
        assert_eq!(m.mask("a🔑🔑🔑b"), "a[MASKED]b");
    }

    #[test]
    fn masks_binary_values_in_their_encoded_forms() {
        let value: &[u8] = &[0xff, 0x00, 0x9c, 0x41, 0x42, 0xfe, 0x10, 0x7f];
        let m = Masker::from_values([value]);
        for encoded in [
            STANDARD.encode(value),
            URL_SAFE_NO_PAD.encode(value),
            hex::encode(value),
            hex::encode_upper(value),
            percent_encode(value, URL_ENCODE).to_string(),
        ] {
            assert_eq!(m.mask(&format!("v={encoded};")), "v=[MASKED];", "{encoded}");
        }
    }

    #[test]
    fn masks_each_line_of_a_multi_line_value() {
        let m = masker(&["token-with-newline\n"]);
        assert_eq!(m.mask("echo token-with-newline"), "echo [MASKED]");
        let pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nabc\n-----END KEY-----\n";
        let m = masker(&[pem]);
        assert_eq!(m.mask("MIIBOgIBAAJBAKj34GkxFhD9"), "[MASKED]");
        // Short lines of a multi-line value are left alone.
        assert_eq!(m.mask("abc"), "abc");
    }

    #[test]
    fn extended_keeps_the_old_values_and_adds_new_ones() {
        let base = masker(&["first-secret"]);
        let more = base.extended(["second-secret"]);
        assert_eq!(more.mask("first-secret second-secret"), "[MASKED] [MASKED]");
        assert_eq!(base.mask("second-secret"), "second-secret");
    }
}
