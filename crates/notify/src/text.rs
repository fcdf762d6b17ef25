//! Small pure text helpers shared by the renderers: escaping for each target format,
//! truncation on character boundaries, UTC timestamps and human durations.
//!
//! Everything here is total: any input string or integer gives an output, never a panic.

/// Replaces every run of control characters (including CR and LF) with one space, so a
/// value cannot break out of a single-line context such as a header or a table row.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_ctrl = false;
    for c in s.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            if !in_ctrl {
                out.push(' ');
            }
            in_ctrl = true;
        } else {
            out.push(c);
            in_ctrl = false;
        }
    }
    out
}

/// Cuts `s` to at most `max` characters, ending with `…` when something was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let mut out: String = s.chars().take(keep).collect();
    if max > 0 {
        out.push('…');
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes the three characters Slack's mrkdwn reserves (`&`, `<`, `>`), which also
/// stops user text from forming links or `<!channel>` style mentions.
pub(crate) fn mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// A Slack mrkdwn link `<url|label>`. The URL gets `|` percent-encoded (it would end the
/// URL part) and the reserved characters escaped as Slack asks.
pub(crate) fn mrkdwn_link(url: &str, label: &str) -> String {
    let url = mrkdwn(&url.replace('|', "%7C"));
    // A `|` or `>` in the label is harmless once escaped; keep it readable.
    format!("<{url}|{}>", mrkdwn(&one_line(label)))
}

/// Escapes text for inline Markdown (CommonMark/GFM), including table cells: line breaks
/// become spaces and every character that could start inline markup, an entity, HTML or
/// a table cell (`|`) gets a backslash, which CommonMark allows before any ASCII
/// punctuation. `#`, `(`, `)` and `!` are left alone: they only matter at a line start or
/// after `[`/`]`, which never reach the output unescaped.
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// True for absolute `http://` and `https://` URLs, the only ones rendered as links (so a
/// `javascript:` value can never become clickable).
pub(crate) fn is_http_url(s: &str) -> bool {
    let b = s.as_bytes();
    let has = |p: &[u8]| b.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    (has(b"http://") && b.len() > 7) || (has(b"https://") && b.len() > 8)
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian).
pub(crate) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Formats Unix milliseconds as RFC 3339 in UTC, e.g. `2026-11-24T13:05:09Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
/// Valid for every `i64` that comes from dividing an `i64` of milliseconds by 86 400 000.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A short human duration: `45s`, `4m 12s`, `1h 03m`, `2d 04h`. Negative durations (clock
/// skew between writers) are shown as `0s`.
pub(crate) fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// The severity as shown in subjects: upper case, one line, at most 20 characters.
pub(crate) fn severity_tag(severity: &str) -> String {
    let s = truncate(one_line(severity).trim(), 20).to_uppercase();
    if s.is_empty() {
        "UNKNOWN".to_string()
    } else {
        s
    }
}

/// A coloured circle standing in for the severity colour where a format has no colour
/// (Slack blocks, plain text): red, orange, yellow, blue, white for unknown.
pub(crate) fn severity_emoji(severity: &str) -> &'static str {
    match severity.trim().to_ascii_lowercase().as_str() {
        "critical" => "🔴",
        "error" => "🟠",
        "warning" => "🟡",
        "info" => "🔵",
        _ => "⚪",
    }
}

/// The hex colour for a severity, used in the HTML mail.
pub(crate) fn severity_color(severity: &str) -> &'static str {
    match severity.trim().to_ascii_lowercase().as_str() {
        "critical" => "#d1242f",
        "error" => "#e16f24",
        "warning" => "#d4a72c",
        "info" => "#0969da",
        _ => "#6e7781",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
        // Extremes format without overflow.
        assert!(utc(i64::MIN).ends_with("UTC"));
        assert!(utc(i64::MAX).ends_with("UTC"));
    }

    #[test]
    fn durations_pick_two_units() {
        assert_eq!(duration(-5), "0s");
        assert_eq!(duration(45_999), "45s");
        assert_eq!(duration(252_000), "4m 12s");
        assert_eq!(duration(3_780_000), "1h 03m");
        assert_eq!(duration(187_200_000), "2d 04h");
    }

    #[test]
    fn escapes() {
        assert_eq!(mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(html("<a href=\"x\">'"), "&lt;a href=&quot;x&quot;&gt;&#39;");
        assert_eq!(md("a|b\nc*"), "a\\|b c\\*");
        assert_eq!(one_line("a\r\n\tb"), "a b");
        assert_eq!(
            mrkdwn_link("https://x/?a=1&b=2|3", "go <now>"),
            "<https://x/?a=1&amp;b=2%7C3|go &lt;now&gt;>"
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn only_http_urls_are_links() {
        assert!(is_http_url("https://a.example/x"));
        assert!(is_http_url("HTTP://a"));
        assert!(!is_http_url("javascript:alert(1)"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("é"));
    }
}
