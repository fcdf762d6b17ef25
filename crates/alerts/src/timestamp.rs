//! Time-stamp parsing and formatting for the wire formats, hand-written and pure.
//!
//! Times are milliseconds since the Unix epoch (`i64`); finer digits are truncated toward
//! the past. Each peer accepts a different dialect, so there is one parser per peer:
//! [`parse_alertmanager_datetime`] mirrors go-openapi `strfmt.ParseDateTime` (what
//! Alertmanager's `/api/v2/alerts` accepts), [`parse_pagerduty_timestamp`] accepts the ISO
//! 8601 shapes PagerDuty documents (e.g. `2015-07-17T08:42:58.315+0000`), and
//! [`parse_rfc3339`] reads what Go's `time.Time` marshals (webhook payloads).
//! [`format_rfc3339`] writes Go's `time.RFC3339Nano` shape in UTC.

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) in milliseconds since the Unix epoch.
/// Alertmanager treats a time equal to it as unset and renders unset times as it.
pub const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;

/// Why a time stamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text does not have any of the accepted shapes.
    #[error(
        "time stamp {0:?} is not in a supported format: use RFC 3339, e.g. 2024-05-01T12:00:00Z"
    )]
    Format(String),
    /// A field is out of range (month 13, February 30, hour 24, …).
    #[error("time stamp {0:?} has a field out of range: check the date and time values")]
    Range(String),
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// The pieces of a parsed time stamp before conversion.
#[derive(Debug, Default, Clone, Copy)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    /// Seconds east of UTC.
    offset: i64,
}

impl Civil {
    fn to_ms(self, text: &str) -> Result<i64, TimeError> {
        let range = || TimeError::Range(text.to_owned());
        if !(1..=12).contains(&self.month) || self.day == 0 {
            return Err(range());
        }
        if self.day > days_in_month(self.year, self.month) {
            return Err(range());
        }
        if self.hour > 23 || self.minute > 59 || self.second > 59 {
            return Err(range());
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - self.offset;
        Ok(secs * 1_000 + i64::from(self.nanos / 1_000_000))
    }
}

/// A byte cursor over ASCII time-stamp text.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_any(&mut self, set: &[u8]) -> Option<u8> {
        let b = self.peek()?;
        if set.contains(&b) {
            self.pos += 1;
            Some(b)
        } else {
            None
        }
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos = end;
        Some(
            slice
                .iter()
                .fold(0, |acc, b| acc * 10 + u32::from(b - b'0')),
        )
    }

    /// One or two ASCII digits, like Go's non-fixed `getnum`.
    fn one_or_two_digits(&mut self) -> Option<u32> {
        let first = self.digits(1)?;
        match self.peek() {
            Some(b) if b.is_ascii_digit() => {
                self.pos += 1;
                Some(first * 10 + u32::from(b - b'0'))
            }
            _ => Some(first),
        }
    }

    /// A fraction after `.`/`,` (already consumed): one or more digits, returning the
    /// nanoseconds and how many digits there were. Digits past the ninth are dropped.
    fn fraction(&mut self) -> Option<(u32, usize)> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.bytes.get(start..self.pos)?;
        if digits.is_empty() {
            return None;
        }
        let mut nanos: u32 = 0;
        for i in 0..9 {
            let d = digits.get(i).map_or(0, |b| u32::from(b - b'0'));
            nanos = nanos * 10 + d;
        }
        Some((nanos, digits.len()))
    }

    fn date(&mut self, civil: &mut Civil) -> Option<()> {
        civil.year = i64::from(self.digits(4)?);
        self.eat(b'-').then_some(())?;
        civil.month = self.digits(2)?;
        self.eat(b'-').then_some(())?;
        civil.day = self.digits(2)?;
        Some(())
    }
}

/// Parses a time stamp the way Alertmanager 0.25's API does (go-openapi
/// `strfmt.ParseDateTime`).
///
/// Accepted, as the union of strfmt's layouts: `YYYY-MM-DDThh:mm:ss[.frac]` followed by
/// `Z`, `±hh:mm` or nothing (UTC); `±hhmm` only after exactly 3 or 6 fraction digits;
/// `YYYY-MM-DDThh:mm` optionally followed by a literal `Z`; and
/// `YYYY-MM-DD hh:mm:ss[.frac]`. The hour may have one digit, as in Go. The empty string
/// is the Unix epoch, exactly as strfmt returns it.
pub fn parse_alertmanager_datetime(text: &str) -> Result<i64, TimeError> {
    if text.is_empty() {
        return Ok(0);
    }
    let bad = || TimeError::Format(text.to_owned());
    let mut c = Cursor::new(text);
    let mut civil = Civil::default();
    c.date(&mut civil).ok_or_else(bad)?;
    let sep = c.eat_any(b"T ").ok_or_else(bad)?;
    civil.hour = c.one_or_two_digits().ok_or_else(bad)?;
    c.eat(b':').then_some(()).ok_or_else(bad)?;
    civil.minute = c.digits(2).ok_or_else(bad)?;
    if sep == b'T' && !c.eat(b':') {
        // "2006-01-02T15:04" or "2006-01-02T15:04Z".
        if c.at_end() || (c.eat(b'Z') && c.at_end()) {
            return civil.to_ms(text);
        }
        return Err(bad());
    }
    if sep == b' ' {
        c.eat(b':').then_some(()).ok_or_else(bad)?;
    }
    civil.second = c.digits(2).ok_or_else(bad)?;
    let mut frac_digits = 0;
    if c.eat_any(b".,").is_some() {
        let (nanos, n) = c.fraction().ok_or_else(bad)?;
        civil.nanos = nanos;
        frac_digits = n;
    }
    if c.at_end() {
        return civil.to_ms(text);
    }
    if sep == b' ' {
        return Err(bad());
    }
    if c.eat(b'Z') {
        return if c.at_end() {
            civil.to_ms(text)
        } else {
            Err(bad())
        };
    }
    let sign = match c.eat_any(b"+-") {
        Some(b'-') => -1,
        Some(_) => 1,
        None => return Err(bad()),
    };
    let hours = c.digits(2).ok_or_else(bad)?;
    let colon = c.eat(b':');
    if !colon && frac_digits != 3 && frac_digits != 6 {
        return Err(bad());
    }
    let minutes = c.digits(2).ok_or_else(bad)?;
    if !c.at_end() {
        return Err(bad());
    }
    if hours > 24 || minutes > 60 {
        return Err(TimeError::Range(text.to_owned()));
    }
    civil.offset = sign * (i64::from(hours) * 3_600 + i64::from(minutes) * 60);
    civil.to_ms(text)
}

/// Parses a PagerDuty `payload.timestamp`: ISO 8601 date and time, separated by `T`, `t` or
/// a space, with `hh:mm`, optional seconds and fraction (`.` or `,`), and an optional
/// zone of `Z`, `±hh`, `±hhmm` or `±hh:mm` (no zone means UTC). A bare date is midnight UTC.
pub fn parse_pagerduty_timestamp(text: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Format(text.to_owned());
    let mut c = Cursor::new(text);
    let mut civil = Civil::default();
    c.date(&mut civil).ok_or_else(bad)?;
    if c.at_end() {
        return civil.to_ms(text);
    }
    c.eat_any(b"Tt ").ok_or_else(bad)?;
    civil.hour = c.digits(2).ok_or_else(bad)?;
    c.eat(b':').then_some(()).ok_or_else(bad)?;
    civil.minute = c.digits(2).ok_or_else(bad)?;
    if c.eat(b':') {
        civil.second = c.digits(2).ok_or_else(bad)?;
        if c.eat_any(b".,").is_some() {
            civil.nanos = c.fraction().ok_or_else(bad)?.0;
        }
    }
    parse_zone(&mut c, &mut civil, text)?;
    civil.to_ms(text)
}

/// Reads an optional `Z`/`±hh[[:]mm]` zone that must end the text.
fn parse_zone(c: &mut Cursor<'_>, civil: &mut Civil, text: &str) -> Result<(), TimeError> {
    let bad = || TimeError::Format(text.to_owned());
    if c.at_end() {
        return Ok(());
    }
    if c.eat_any(b"Zz").is_some() {
        return if c.at_end() { Ok(()) } else { Err(bad()) };
    }
    let sign = match c.eat_any(b"+-") {
        Some(b'-') => -1,
        Some(_) => 1,
        None => return Err(bad()),
    };
    let hours = c.digits(2).ok_or_else(bad)?;
    let mut minutes = 0;
    if !c.at_end() {
        // The colon between hours and minutes is optional (`+0000` and `+00:00`).
        c.eat(b':');
        minutes = c.digits(2).ok_or_else(bad)?;
    }
    if !c.at_end() {
        return Err(bad());
    }
    if hours > 23 || minutes > 59 {
        return Err(TimeError::Range(text.to_owned()));
    }
    civil.offset = sign * (i64::from(hours) * 3_600 + i64::from(minutes) * 60);
    Ok(())
}

/// Parses RFC 3339 as Go's `time.Time` marshals it: `YYYY-MM-DDThh:mm:ss[.frac]` and a
/// zone of `Z` or `±hh:mm` (lower-case `t`/`z` are accepted too, as RFC 3339 allows).
pub fn parse_rfc3339(text: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Format(text.to_owned());
    let mut c = Cursor::new(text);
    let mut civil = Civil::default();
    c.date(&mut civil).ok_or_else(bad)?;
    c.eat_any(b"Tt").ok_or_else(bad)?;
    civil.hour = c.digits(2).ok_or_else(bad)?;
    c.eat(b':').then_some(()).ok_or_else(bad)?;
    civil.minute = c.digits(2).ok_or_else(bad)?;
    c.eat(b':').then_some(()).ok_or_else(bad)?;
    civil.second = c.digits(2).ok_or_else(bad)?;
    if c.eat(b'.') {
        civil.nanos = c.fraction().ok_or_else(bad)?.0;
    }
    if c.eat_any(b"Zz").is_some() {
        return if c.at_end() {
            civil.to_ms(text)
        } else {
            Err(bad())
        };
    }
    let sign = match c.eat_any(b"+-") {
        Some(b'-') => -1,
        Some(_) => 1,
        None => return Err(bad()),
    };
    let hours = c.digits(2).ok_or_else(bad)?;
    c.eat(b':').then_some(()).ok_or_else(bad)?;
    let minutes = c.digits(2).ok_or_else(bad)?;
    if !c.at_end() {
        return Err(bad());
    }
    if hours > 23 || minutes > 59 {
        return Err(TimeError::Range(text.to_owned()));
    }
    civil.offset = sign * (i64::from(hours) * 3_600 + i64::from(minutes) * 60);
    civil.to_ms(text)
}

/// Formats milliseconds since the epoch like Go's `time.RFC3339Nano` in UTC: no fraction
/// when the milliseconds are zero, otherwise the fraction without trailing zeros, e.g.
/// `2024-05-01T12:00:00.12Z`. [`GO_ZERO_TIME_MS`] formats as `0001-01-01T00:00:00Z`.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3_600, (rem % 3_600) / 60, rem % 60);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        year.to_string()
    };
    let mut out = format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if millis != 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAY_1_2024_NOON: i64 = 1_714_564_800_000;

    #[test]
    fn civil_conversions_round_trip() {
        for days in [-800_000, -719_468, -1, 0, 1, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "days {days}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn go_zero_time() {
        assert_eq!(format_rfc3339(GO_ZERO_TIME_MS), "0001-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Ok(GO_ZERO_TIME_MS));
        assert_eq!(
            parse_alertmanager_datetime("0001-01-01T00:00:00Z"),
            Ok(GO_ZERO_TIME_MS)
        );
    }

    #[test]
    fn formats_like_go_rfc3339_nano() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(MAY_1_2024_NOON), "2024-05-01T12:00:00Z");
        assert_eq!(
            format_rfc3339(MAY_1_2024_NOON + 120),
            "2024-05-01T12:00:00.12Z"
        );
        assert_eq!(
            format_rfc3339(MAY_1_2024_NOON + 7),
            "2024-05-01T12:00:00.007Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        // Extreme values must not panic.
        assert!(!format_rfc3339(i64::MAX).is_empty());
        assert!(!format_rfc3339(i64::MIN).is_empty());
    }

    #[test]
    fn rfc3339_accepts_zones_and_fractions() {
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z"), Ok(MAY_1_2024_NOON));
        assert_eq!(
            parse_rfc3339("2024-05-01T14:30:00+02:30"),
            Ok(MAY_1_2024_NOON)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T11:00:00-01:00"),
            Ok(MAY_1_2024_NOON)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789Z"),
            Ok(MAY_1_2024_NOON + 123)
        );
        assert_eq!(parse_rfc3339("2024-05-01t12:00:00z"), Ok(MAY_1_2024_NOON));
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
            "24-05-01T12:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_rfc3339("2024-02-30T00:00:00Z"),
            Err(TimeError::Range(_))
        ));
        assert!(matches!(
            parse_rfc3339("2024-05-01T24:00:00Z"),
            Err(TimeError::Range(_))
        ));
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn alertmanager_dialect_follows_strfmt_layouts() {
        let ok = [
            ("2024-05-01T12:00:00Z", MAY_1_2024_NOON),
            ("2024-05-01T12:00:00.000+00:00", MAY_1_2024_NOON),
            ("2024-05-01T12:00:00.000+0000", MAY_1_2024_NOON),
            ("2024-05-01T14:00:00.000000+0200", MAY_1_2024_NOON),
            ("2024-05-01T12:00:00.5Z", MAY_1_2024_NOON + 500),
            ("2024-05-01T12:00:00,5Z", MAY_1_2024_NOON + 500),
            ("2024-05-01T12:00:00", MAY_1_2024_NOON),
            ("2024-05-01T12:00:00.25", MAY_1_2024_NOON + 250),
            ("2024-05-01T12:00Z", MAY_1_2024_NOON),
            ("2024-05-01T12:00", MAY_1_2024_NOON),
            ("2024-05-01 12:00:00", MAY_1_2024_NOON),
            ("2024-05-01T9:00:00-03:00", MAY_1_2024_NOON),
            ("", 0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_alertmanager_datetime(text), Ok(want), "{text:?}");
        }
        for bad in [
            "2024-05-01T12:00:00+0000",
            "2024-05-01T12:00:00.5+0000",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12Z",
            "2024-05-01",
            "yesterday",
            "2024-05-01T12:00:00 Z",
        ] {
            assert!(parse_alertmanager_datetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pagerduty_dialect_accepts_documented_example() {
        // The example from PagerDuty's documentation.
        let documented = parse_pagerduty_timestamp("2015-07-17T08:42:58.315+0000");
        assert_eq!(documented, Ok(1_437_122_578_315));
        let ok = [
            ("2024-05-01T12:00:00Z", MAY_1_2024_NOON),
            ("2024-05-01T14:00:00+02", MAY_1_2024_NOON),
            ("2024-05-01T14:00:00+02:00", MAY_1_2024_NOON),
            ("2024-05-01 12:00", MAY_1_2024_NOON),
            ("2024-05-01T12:00:00", MAY_1_2024_NOON),
            ("2024-05-01", MAY_1_2024_NOON - 12 * 3_600_000),
        ];
        for (text, want) in ok {
            assert_eq!(parse_pagerduty_timestamp(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "now",
            "2024-05-01T12",
            "2024-05-01T12:00:00+2",
            "2024-13-01",
        ] {
            assert!(parse_pagerduty_timestamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_format_round_trip() {
        for ms in [
            0,
            1,
            999,
            MAY_1_2024_NOON + 42,
            -86_400_001,
            GO_ZERO_TIME_MS,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
        }
    }
}
