//! The arithmetic of one compiled layer: handoff instants, whose turn it is, and restriction
//! windows, all as pure functions of an instant in Unix epoch milliseconds.
//!
//! Every function here works on a time that the caller has already clamped into jiff's
//! supported range, and every conversion that can fail (dates beyond year 9999, a civil time
//! the zone cannot express) is treated as "this instant does not exist": a missing handoff
//! lies infinitely far in the future and a missing restriction window never opens. The same
//! helpers produce both the answer at an instant and the breakpoints around it, which is what
//! keeps "who is on call" and "until when" consistent with each other.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Milliseconds in one nominal day, used only for first guesses before exact search.
const DAY_MS: i64 = 86_400_000;

/// How handoff instants are spaced.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Period {
    /// Calendar days in the schedule's zone: the handoff keeps its local wall-clock time.
    Civil {
        /// Days per turn (1 for daily, 7 for weekly).
        days: i64,
    },
    /// An absolute duration: the local wall-clock time of the handoff drifts across a
    /// daylight-saving change.
    Absolute {
        /// Milliseconds per turn, always positive after compilation.
        ms: i64,
    },
}

/// A restriction window in local wall-clock minutes, already parsed and checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Bit `n` set means the window opens on the day `n` days after Monday; zero means every day.
    pub(crate) days_mask: u8,
    /// Minute of the day the window opens, `0..1440`.
    pub(crate) start_min: u16,
    /// Minute of the day the window closes, `0..=1440`; at or before `start_min` means the
    /// window closes on the following day (so `00:00` is the coming midnight).
    pub(crate) end_min: u16,
}

impl Window {
    fn opens_on(&self, date: Date) -> bool {
        if self.days_mask == 0 {
            return true;
        }
        let offset = date.weekday().to_monday_zero_offset();
        u8::try_from(offset)
            .ok()
            .and_then(|shift| 1u8.checked_shl(u32::from(shift)))
            .is_some_and(|bit| self.days_mask & bit != 0)
    }

    /// The instants `[open, close)` of the window that opens on `date`, if it opens that day
    /// and is not empty once mapped onto instants.
    fn on(&self, tz: &TimeZone, date: Date) -> Option<(i64, i64)> {
        if !self.opens_on(date) {
            return None;
        }
        let open = civil_at(date, self.start_min)?;
        let close = if self.end_min > self.start_min {
            civil_at(date, self.end_min)?
        } else {
            civil_at(date.tomorrow().ok()?, self.end_min)?
        };
        let open = to_ms(tz, open)?;
        let close = to_ms(tz, close)?;
        // A window that falls wholly inside a skipped hour maps to an empty or inverted
        // interval on that day and simply does not happen.
        (close > open).then_some((open, close))
    }
}

/// The civil date-time `minute` minutes after midnight at the start of `date`; minute 1440 is
/// midnight at the start of the next day.
fn civil_at(date: Date, minute: u16) -> Option<DateTime> {
    if minute >= 1440 {
        let next = date.tomorrow().ok()?;
        return Some(DateTime::from_parts(next, Time::midnight()));
    }
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    let time = Time::new(hour, min, 0, 0).ok()?;
    Some(DateTime::from_parts(date, time))
}

/// The instant of a civil date-time in `tz`, resolving gaps and folds with jiff's
/// "compatible" strategy: a time skipped by a spring-forward change is pushed later by the
/// length of the gap, and a time repeated by a fall-back change takes its first occurrence.
fn to_ms(tz: &TimeZone, dt: DateTime) -> Option<i64> {
    tz.to_timestamp(dt).ok().map(Timestamp::as_millisecond)
}

/// The local civil date of an instant that is already in jiff's range.
fn local_date(tz: &TimeZone, t: i64) -> Option<Date> {
    let ts = Timestamp::from_millisecond(t).ok()?;
    Some(tz.to_datetime(ts).date())
}

/// `date` moved by `days` calendar days.
fn add_days(date: Date, days: i64) -> Option<Date> {
    let secs = days.checked_mul(86_400)?;
    date.checked_add(SignedDuration::from_secs(secs)).ok()
}

/// One layer of a schedule, compiled from its configuration.
#[derive(Debug, Clone)]
pub(crate) struct CompiledLayer {
    /// The layer's name, unique within its schedule.
    pub(crate) name: String,
    /// Users in rotation order; never empty after compilation.
    pub(crate) users: Vec<String>,
    /// Whether handoffs can change who is on call (more than one distinct user). A layer
    /// whose users are all the same person has no breakpoints after its first handoff.
    rotates: bool,
    /// The civil date-time of the first handoff in the schedule's zone.
    start: DateTime,
    /// The instant of the first handoff, if the zone can express it.
    pub(crate) first_ms: Option<i64>,
    period: Period,
    windows: Vec<Window>,
}

impl CompiledLayer {
    /// Builds a layer from parts that the caller has already validated.
    pub(crate) fn new(
        tz: &TimeZone,
        name: String,
        users: Vec<String>,
        start: DateTime,
        period: Period,
        windows: Vec<Window>,
    ) -> Self {
        let rotates = users.iter().any(|u| Some(u) != users.first());
        let first_ms = to_ms(tz, start);
        Self {
            name,
            users,
            rotates,
            start,
            first_ms,
            period,
            windows,
        }
    }

    /// Whether the layer has someone on call at every instant from its first handoff on, so
    /// that layers below it can never show through again.
    pub(crate) fn covers_everything_from(&self) -> Option<i64> {
        if self.windows.is_empty() && !self.users.is_empty() {
            self.first_ms
        } else {
            None
        }
    }

    /// The instant of handoff number `k` (0 is the first), or `None` if it cannot be
    /// expressed, which callers treat as "never".
    fn handoff(&self, tz: &TimeZone, k: i64) -> Option<i64> {
        match self.period {
            Period::Civil { days } => {
                let secs = k.checked_mul(days)?.checked_mul(86_400)?;
                let dt = self
                    .start
                    .checked_add(SignedDuration::from_secs(secs))
                    .ok()?;
                to_ms(tz, dt)
            }
            Period::Absolute { ms } => self.first_ms?.checked_add(k.checked_mul(ms)?),
        }
    }

    /// The number of the turn in progress at `t`: the largest `k` whose handoff is at or
    /// before `t`. `None` before the first handoff.
    ///
    /// Civil handoffs are non-decreasing in `k` (a daylight-saving change moves an instant by
    /// far less than a day), so an exact search around a first guess finds the answer in a
    /// few conversions even when offsets have shifted since the layer started.
    fn turn(&self, tz: &TimeZone, t: i64) -> Option<i64> {
        let first = self.first_ms?;
        let since = t.checked_sub(first)?;
        if since < 0 {
            return None;
        }
        let days = match self.period {
            Period::Absolute { ms } => return since.checked_div(ms),
            Period::Civil { days } => days,
        };
        let started_by = |k: i64| self.handoff(tz, k).is_some_and(|h| h <= t);
        let guess = since.checked_div(days.checked_mul(DAY_MS)?)?;
        let mut lo = guess;
        let mut step: i64 = 1;
        while lo > 0 && !started_by(lo) {
            lo = lo.saturating_sub(step).max(0);
            step = step.saturating_mul(2);
        }
        if !started_by(lo) {
            // Only reachable for turn 0, whose handoff is `first <= t`; kept as a guard.
            return Some(0);
        }
        let mut hi = lo.saturating_add(1);
        step = 1;
        while hi < i64::MAX && started_by(hi) {
            lo = hi;
            step = step.saturating_mul(2);
            hi = hi.saturating_add(step);
        }
        // Invariant: handoff(lo) <= t < handoff(hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if started_by(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// Whether some restriction window is open at `t` (always true without restrictions).
    fn window_open(&self, tz: &TimeZone, t: i64) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let Some(today) = local_date(tz, t) else {
            return false;
        };
        // A window lasts at most a day plus a daylight-saving shift, so the windows that can
        // contain `t` open between a few days before and a day after its local date.
        (-3..=2).filter_map(|off| add_days(today, off)).any(|date| {
            self.windows
                .iter()
                .filter_map(|w| w.on(tz, date))
                .any(|(open, close)| open <= t && t < close)
        })
    }

    /// Every window edge (opening or closing) of the windows that open on the days
    /// `from..=to` relative to the local date of `t`.
    fn window_edges(&self, tz: &TimeZone, t: i64, from: i64, to: i64) -> Vec<i64> {
        let Some(today) = local_date(tz, t) else {
            return Vec::new();
        };
        let mut edges = Vec::new();
        for date in (from..=to).filter_map(|off| add_days(today, off)) {
            for (open, close) in self.windows.iter().filter_map(|w| w.on(tz, date)) {
                edges.push(open);
                edges.push(close);
            }
        }
        edges
    }

    /// The user on call in this layer at `t`, if any.
    pub(crate) fn user_at(&self, tz: &TimeZone, t: i64) -> Option<&str> {
        let first = self.first_ms?;
        if t < first || self.users.is_empty() || !self.window_open(tz, t) {
            return None;
        }
        let turn = if self.rotates { self.turn(tz, t)? } else { 0 };
        let count = i64::try_from(self.users.len()).ok()?;
        let index = usize::try_from(turn.rem_euclid(count)).ok()?;
        self.users.get(index).map(String::as_str)
    }

    /// The earliest instant after `t` at which this layer's answer may change.
    pub(crate) fn next_breakpoint(&self, tz: &TimeZone, t: i64) -> Option<i64> {
        let mut best: Option<i64> = None;
        let mut offer = |c: i64| {
            if c > t && best.is_none_or(|b| c < b) {
                best = Some(c);
            }
        };
        if let Some(first) = self.first_ms {
            if t < first {
                offer(first);
            } else if self.rotates
                && let Some(next) = self
                    .turn(tz, t)
                    .and_then(|k| k.checked_add(1))
                    .and_then(|k| self.handoff(tz, k))
            {
                offer(next);
            }
        }
        if !self.windows.is_empty() {
            // Every restriction opens at least once a week, so looking nine days ahead always
            // reaches the next edge.
            for edge in self.window_edges(tz, t, -3, 9) {
                offer(edge);
            }
        }
        best
    }

    /// The latest instant at or before `t` at which this layer's answer may have changed.
    pub(crate) fn previous_breakpoint(&self, tz: &TimeZone, t: i64) -> Option<i64> {
        let mut best: Option<i64> = None;
        let mut offer = |c: i64| {
            if c <= t && best.is_none_or(|b| c > b) {
                best = Some(c);
            }
        };
        if let Some(first) = self.first_ms
            && first <= t
        {
            offer(first);
            if self.rotates
                && let Some(current) = self.turn(tz, t).and_then(|k| self.handoff(tz, k))
            {
                offer(current);
            }
        }
        if !self.windows.is_empty() {
            for edge in self.window_edges(tz, t, -10, 2) {
                offer(edge);
            }
        }
        best
    }
}
