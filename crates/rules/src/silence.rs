//! Silences: one-off mutes and recurring maintenance windows.
//!
//! A [`Silence`] mutes every alert whose labels match all of its matchers while it is active.
//! It is in effect from `starts_at_ms` (inclusive) to `ends_at_ms` (exclusive). Without a
//! recurrence it is active for that whole range; with a [`Recurrence`] it is active only inside
//! the recurring windows that fall within that range, e.g. "every Sunday 02:00-04:00
//! Europe/Berlin, from 1 March to 1 September".
//!
//! # Weekly windows and local time
//!
//! A weekly window opens at `start` local time on each listed day and closes at `end` local
//! time, on the same day when `end > start`, or on the next day when `end <= start` (it crosses
//! midnight; `00:00-00:00` is a whole day). Days name the day the window opens on.
//!
//! Local times are turned into instants with the time zone's real rules, so a window follows
//! daylight-saving changes. On the two days a year where the clock jumps, the rule is:
//!
//! * the window opens at the **first** instant the local clock shows `start`; if the clock skips
//!   `start` (spring forward), it opens when the skipped hour ends. Example, Europe/Berlin,
//!   2025-03-30, the clock jumps from 02:00 to 03:00: a `02:00-04:00` window runs 03:00-04:00
//!   (one real hour), and a `02:00-03:00` window is empty that day: it never mutes, because no
//!   moment of that day has a local time between 02:00 and 03:00;
//! * the window closes at the **last** instant the local clock shows `end`; if `end` happens
//!   twice (fall back), it closes at the second. Example, Europe/Berlin, 2025-10-26, the clock
//!   goes back from 03:00 to 02:00: a `02:00-03:00` window runs from the first 02:00 (CEST) to
//!   03:00 CET, two real hours, so it covers both passes through that hour.
//!
//! Time zones come from the IANA database bundled into the binary: results do not depend on
//! the host's zoneinfo files.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use thiserror::Error;

use crate::Labels;
use crate::matcher::{Matcher, format_matchers};

/// How many local dates around `now` are examined when looking for the next window boundary.
/// Windows are at most a day long, so 2 days back and 16 ahead cover the current window and at
/// least two full weeks of future ones.
const DAYS_BACK: i64 = 2;
const DAYS_AHEAD: i64 = 16;

/// Why a silence or recurrence is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SilenceError {
    /// The silence has no matchers; it would have nothing to select.
    #[error("a silence needs at least one matcher, such as `service=\"api\"`")]
    NoMatchers,
    /// Every matcher also matches an empty label set, so the silence would mute every alert.
    #[error(
        "the matchers {matchers} match every alert (each accepts a missing label); add a matcher that requires a label value"
    )]
    MatchesEverything {
        /// The offending matchers in canonical form.
        matchers: String,
    },
    /// The end is not after the start.
    #[error(
        "the silence ends at {ends_at_ms} ms, which is not after its start at {starts_at_ms} ms; set an end later than the start"
    )]
    EndNotAfterStart {
        /// The given start.
        starts_at_ms: i64,
        /// The given end.
        ends_at_ms: i64,
    },
    /// A clock time is not `HH:MM`.
    #[error("invalid time of day `{text}`: write it as HH:MM with hours 00-23 and minutes 00-59")]
    InvalidTimeOfDay {
        /// The rejected text.
        text: String,
    },
    /// A weekday name is unknown.
    #[error("unknown weekday `{text}`: use monday..sunday or mon..sun")]
    InvalidWeekday {
        /// The rejected text.
        text: String,
    },
    /// A weekly recurrence lists no day.
    #[error("a weekly recurrence needs at least one day, such as `sunday`")]
    NoDays,
    /// The time zone is not in the IANA database.
    #[error(
        "unknown time zone `{name}`: use an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`"
    )]
    UnknownTimeZone {
        /// The rejected name.
        name: String,
    },
}

/// A mute over a time range, optionally limited to recurring windows.
#[derive(Debug, Clone)]
pub struct Silence {
    matchers: Vec<Matcher>,
    starts_at_ms: i64,
    ends_at_ms: i64,
    recurrence: Option<Recurrence>,
}

/// When, within a silence's range, it is active.
#[derive(Debug, Clone, PartialEq)]
pub enum Recurrence {
    /// Active in a daily-or-shorter window on chosen weekdays, in a given time zone.
    Weekly(Weekly),
}

/// A weekly maintenance window such as "Sunday 02:00-04:00 Europe/Berlin".
#[derive(Debug, Clone, PartialEq)]
pub struct Weekly {
    days: Vec<Weekday>,
    start: Time,
    end: Time,
    time_zone: TimeZone,
    time_zone_name: String,
}

impl Recurrence {
    /// Builds a weekly recurrence from days, `HH:MM` start and end, and an IANA time zone name.
    /// `end <= start` means the window crosses midnight.
    pub fn weekly(
        days: &[Weekday],
        start: &str,
        end: &str,
        time_zone: &str,
    ) -> Result<Recurrence, SilenceError> {
        Ok(Recurrence::Weekly(Weekly::new(
            days, start, end, time_zone,
        )?))
    }

    /// Whether `now_ms` is inside one of the recurring windows (ignoring the silence's range).
    pub fn contains(&self, now_ms: i64) -> bool {
        match self {
            Recurrence::Weekly(w) => w.contains(now_ms),
        }
    }

    /// The next instant after `now_ms` at which [`Recurrence::contains`] changes, if any.
    /// `None` when the windows cover all time (e.g. every day `00:00-00:00`).
    pub fn next_change(&self, now_ms: i64) -> Option<i64> {
        match self {
            Recurrence::Weekly(w) => w.next_change(now_ms),
        }
    }
}

impl Weekly {
    /// See [`Recurrence::weekly`].
    pub fn new(
        days: &[Weekday],
        start: &str,
        end: &str,
        time_zone: &str,
    ) -> Result<Weekly, SilenceError> {
        if days.is_empty() {
            return Err(SilenceError::NoDays);
        }
        let mut days = days.to_vec();
        days.sort_by_key(|d| d.to_monday_one_offset());
        days.dedup();
        let start = parse_time_of_day(start)?;
        let end = parse_time_of_day(end)?;
        // The bundled database, not `jiff::tz::db()`: the global one may read the host's files
        // if another crate in the build enables jiff's zoneinfo feature.
        let tz = TimeZoneDatabase::bundled().get(time_zone).map_err(|_| {
            SilenceError::UnknownTimeZone {
                name: time_zone.to_string(),
            }
        })?;
        let time_zone_name = tz.iana_name().unwrap_or(time_zone).to_string();
        Ok(Weekly {
            days,
            start,
            end,
            time_zone: tz,
            time_zone_name,
        })
    }

    /// The days the window opens on, Monday first, without duplicates.
    pub fn days(&self) -> &[Weekday] {
        &self.days
    }

    /// The local opening time as `HH:MM`.
    pub fn start(&self) -> String {
        format_hhmm(self.start)
    }

    /// The local closing time as `HH:MM`.
    pub fn end(&self) -> String {
        format_hhmm(self.end)
    }

    /// The canonical IANA time zone name.
    pub fn time_zone(&self) -> &str {
        &self.time_zone_name
    }

    /// The window opening on local date `date`, as `[start_ms, end_ms)`, if `date` is a listed
    /// day and the window is not empty (it can be on a spring-forward day).
    fn window_on(&self, date: Date) -> Option<(i64, i64)> {
        if !self.days.contains(&date.weekday()) {
            return None;
        }
        let end_date = if self.end <= self.start {
            date.tomorrow().ok()?
        } else {
            date
        };
        let start = self
            .time_zone
            .to_ambiguous_timestamp(DateTime::from_parts(date, self.start))
            .compatible() // a skipped start opens when the gap ends; a repeated one, first time
            .ok()?;
        let end = self
            .time_zone
            .to_ambiguous_timestamp(DateTime::from_parts(end_date, self.end))
            .later() // a repeated end closes the second time; a skipped one when the gap ends
            .ok()?;
        let (start, end) = (start.as_millisecond(), end.as_millisecond());
        (start < end).then_some((start, end))
    }

    /// Windows opening on the local dates from `DAYS_BACK` before to `days_ahead` after the
    /// local date of `now_ms`, merged where they touch or overlap, in time order.
    fn merged_windows(&self, now_ms: i64, days_ahead: i64) -> Vec<(i64, i64)> {
        let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
            return Vec::new();
        };
        let today = self.time_zone.to_datetime(ts).date();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for offset in -DAYS_BACK..=days_ahead {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            let Some((s, e)) = self.window_on(date) else {
                continue;
            };
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    fn contains(&self, now_ms: i64) -> bool {
        // A window containing `now` opened on its local date or at most two days before.
        self.merged_windows(now_ms, 0)
            .iter()
            .any(|&(s, e)| s <= now_ms && now_ms < e)
    }

    fn next_change(&self, now_ms: i64) -> Option<i64> {
        let merged = self.merged_windows(now_ms, DAYS_AHEAD);
        let last_index = merged.len().checked_sub(1)?;
        for (i, &(s, e)) in merged.iter().enumerate() {
            if now_ms < s {
                return Some(s);
            }
            if now_ms < e {
                // A merged window reaching the end of the horizon spans two weeks without a
                // break, so the windows cover every hour of the week: they never close.
                return (i != last_index).then_some(e);
            }
        }
        None
    }
}

impl fmt::Display for Weekly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = self.days.iter().map(|d| weekday_name(*d)).collect();
        write!(
            f,
            "weekly on {} {}-{} {}",
            days.join(","),
            format_hhmm(self.start),
            format_hhmm(self.end),
            self.time_zone_name
        )
    }
}

impl Silence {
    /// Builds a silence. It needs at least one matcher, not all of which may match a missing
    /// label (that would mute everything), and `ends_at_ms` must be after `starts_at_ms`.
    pub fn new(
        matchers: Vec<Matcher>,
        starts_at_ms: i64,
        ends_at_ms: i64,
        recurrence: Option<Recurrence>,
    ) -> Result<Silence, SilenceError> {
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if matchers.iter().all(|m| m.matches_value("")) {
            return Err(SilenceError::MatchesEverything {
                matchers: format_matchers(&matchers),
            });
        }
        if ends_at_ms <= starts_at_ms {
            return Err(SilenceError::EndNotAfterStart {
                starts_at_ms,
                ends_at_ms,
            });
        }
        Ok(Silence {
            matchers,
            starts_at_ms,
            ends_at_ms,
            recurrence,
        })
    }

    /// The matchers, all of which an alert must match to be muted.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// When the silence takes effect (inclusive).
    pub fn starts_at_ms(&self) -> i64 {
        self.starts_at_ms
    }

    /// When the silence stops taking effect (exclusive).
    pub fn ends_at_ms(&self) -> i64 {
        self.ends_at_ms
    }

    /// The recurring windows, if any.
    pub fn recurrence(&self) -> Option<&Recurrence> {
        self.recurrence.as_ref()
    }

    /// Whether the silence is muting at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.in_range(now_ms) && self.recurrence.as_ref().is_none_or(|r| r.contains(now_ms))
    }

    /// Whether the silence mutes an alert with these labels at `now_ms`.
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.is_active(now_ms) && self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Whether the silence has ended for good at `now_ms` (the server may then drop it).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.ends_at_ms
    }

    /// The next instant after `now_ms` at which [`Silence::is_active`] changes, so the server
    /// can schedule a re-check. `None` when it never changes again (it has ended, or its
    /// recurring windows never fall inside its range again).
    pub fn next_transition(&self, now_ms: i64) -> Option<i64> {
        if now_ms >= self.ends_at_ms {
            return None;
        }
        let Some(rec) = &self.recurrence else {
            return Some(if now_ms < self.starts_at_ms {
                self.starts_at_ms
            } else {
                self.ends_at_ms
            });
        };
        if now_ms < self.starts_at_ms {
            // Becomes active at the start if a window is open then, else when one next opens.
            if rec.contains(self.starts_at_ms) {
                return Some(self.starts_at_ms);
            }
            return rec
                .next_change(self.starts_at_ms)
                .filter(|&t| t < self.ends_at_ms);
        }
        match rec.next_change(now_ms) {
            Some(t) if t < self.ends_at_ms => Some(t),
            // No window boundary before the end: the state changes at the end only if a window
            // is open until then.
            _ => rec.contains(now_ms).then_some(self.ends_at_ms),
        }
    }

    fn in_range(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }
}

/// Parses a weekday name: `monday`..`sunday` or `mon`..`sun`, any case.
pub fn parse_weekday(text: &str) -> Result<Weekday, SilenceError> {
    let lower = text.trim().to_ascii_lowercase();
    let day = match lower.as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(SilenceError::InvalidWeekday {
                text: text.to_string(),
            });
        }
    };
    Ok(day)
}

/// Parses `HH:MM` (or `H:MM`), hours 0-23, minutes 0-59.
fn parse_time_of_day(text: &str) -> Result<Time, SilenceError> {
    let bad = || SilenceError::InvalidTimeOfDay {
        text: text.to_string(),
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = h.parse().map_err(|_| bad())?;
    let minute: i8 = m.parse().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

fn format_hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}
