//! Time helpers: unit constants, UTC day and ISO week alignment, UTC dates, human-readable
//! durations and the parser for `--since` / `since=` windows. No clock is read here.

use crate::DoraError;

/// One second in milliseconds.
pub const SECOND_MS: i64 = 1_000;
/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day (24 hours, UTC has no daylight saving) in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// One week in milliseconds.
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// The longest window [`parse_since`] accepts, in days (ten years and a bit).
const MAX_SINCE_DAYS: i64 = 3660;

/// The start (00:00 UTC) of the UTC day holding `ms`. Saturates at the ends of `i64`.
pub fn day_start(ms: i64) -> i64 {
    sat(align(ms as i128, DAY_MS as i128, 0))
}

/// The start (Monday 00:00 UTC) of the ISO week holding `ms`. Saturates at the ends of `i64`.
pub fn iso_week_start(ms: i64) -> i64 {
    sat(align(ms as i128, WEEK_MS as i128, MONDAY_OFFSET))
}

/// 1970-01-01 was a Thursday, so the first Monday 00:00 UTC is 4 days after the epoch.
pub(crate) const MONDAY_OFFSET: i128 = 4 * DAY_MS as i128;

/// The largest `offset + k * len` that is `<= t`.
pub(crate) fn align(t: i128, len: i128, offset: i128) -> i128 {
    (t - offset).div_euclid(len) * len + offset
}

/// Saturating conversion to `i64`.
pub(crate) fn sat(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The UTC calendar date `(year, month 1-12, day 1-31)` of `ms` (proleptic Gregorian).
pub fn utc_date(ms: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days, in i64 arithmetic: |days| < 1.1e11, far from overflow.
    let days = ms.div_euclid(DAY_MS) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction; the fallbacks are never taken.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// `YYYY-MM-DD` of `ms` in UTC.
pub(crate) fn date_label(ms: i64) -> String {
    let (y, m, d) = utc_date(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A duration as people read it, with the two largest units, truncated (never rounded up):
/// `45s`, `2m 5s`, `2h 5m`, `3d 4h`, `2h` (a zero second unit is left out), `850ms` under a
/// second, `0s` for zero, and a leading `-` for negative durations.
pub fn human_duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    if abs == 0 {
        return "0s".to_owned();
    }
    if abs < SECOND_MS as u64 {
        return format!("{sign}{abs}ms");
    }
    let secs = abs / SECOND_MS as u64;
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let (big, big_unit, small, small_unit) = if d > 0 {
        (d, "d", h, "h")
    } else if h > 0 {
        (h, "h", m, "m")
    } else if m > 0 {
        (m, "m", s, "s")
    } else {
        return format!("{sign}{s}s");
    };
    if small == 0 {
        format!("{sign}{big}{big_unit}")
    } else {
        format!("{sign}{big}{big_unit} {small}{small_unit}")
    }
}

/// Parses a `--since` / `since=` window: a whole number followed by `h` (hours), `d` (days)
/// or `w` (weeks), e.g. `30d`, `12w`, `48h`; surrounding spaces are ignored. Returns the
/// window's length in milliseconds (at least one hour, at most 3660 days).
pub fn parse_since(value: &str) -> Result<i64, DoraError> {
    let invalid = || DoraError::InvalidSince {
        value: value.to_owned(),
    };
    let trimmed = value.trim();
    let unit_ms = match trimmed.chars().last() {
        Some('h') => HOUR_MS,
        Some('d') => DAY_MS,
        Some('w') => WEEK_MS,
        _ => return Err(invalid()),
    };
    // The unit is one ASCII byte, so this slice ends on a character boundary.
    let number = &trimmed[..trimmed.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: i64 = number.parse().map_err(|_| too_long(value))?;
    if n == 0 {
        return Err(invalid());
    }
    match n.checked_mul(unit_ms) {
        Some(ms) if ms <= MAX_SINCE_DAYS * DAY_MS => Ok(ms),
        _ => Err(too_long(value)),
    }
}

fn too_long(value: &str) -> DoraError {
    DoraError::SinceTooLong {
        value: value.to_owned(),
        max_days: MAX_SINCE_DAYS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_calendar_days() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(-1), (1969, 12, 31));
        // 2024-02-29 00:00:00 UTC = 1709164800 s.
        assert_eq!(utc_date(1_709_164_800_000), (2024, 2, 29));
        assert_eq!(utc_date(1_709_164_800_000 + DAY_MS), (2024, 3, 1));
        // Extremes do not panic.
        let _ = utc_date(i64::MIN);
        let _ = utc_date(i64::MAX);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2025-03-12 (a Wednesday) 15:00 UTC = 1741791600 s; its Monday is 2025-03-10.
        let wednesday = 1_741_791_600_000;
        let monday = iso_week_start(wednesday);
        assert_eq!(utc_date(monday), (2025, 3, 10));
        assert_eq!(monday, day_start(monday));
        assert_eq!(iso_week_start(monday), monday);
        assert_eq!(iso_week_start(monday - 1), monday - WEEK_MS);
        assert_eq!(iso_week_start(i64::MIN), i64::MIN);
    }
}
