//! On-call schedules: configuration, validation, and "who is on call when".
//!
//! A [`Schedule`] is plain data, loaded by the server from YAML or JSON. It holds layers of
//! rotating users and overrides. [`Schedule::compile`] validates it (reporting every problem
//! with the field it sits in) and yields a [`CompiledSchedule`] whose queries are pure
//! functions of an injected instant in Unix epoch milliseconds.
//!
//! # Semantics
//!
//! - **Layers stack.** `layers[0]` is the bottom layer; a later layer wins wherever it has
//!   someone on call, and lower layers show through where it has nobody (before its start or
//!   outside its restriction windows). This is PagerDuty's model.
//! - **Overrides win over every layer.** Where overrides overlap, the later one in the list
//!   wins. An override covers `[start_ms, end_ms)`.
//! - **Rotations.** Turn `k` of a layer starts at its `k`-th handoff and goes to
//!   `users[k % users.len()]`. [`Rotation::Daily`] and [`Rotation::Weekly`] hand off at the
//!   same local wall-clock time as `start` every day or week, using calendar arithmetic in
//!   the schedule's zone, so a 09:00 handoff stays at 09:00 local across daylight-saving
//!   changes (and the turn spanning the change is an hour shorter or longer).
//!   [`Rotation::Hours`] is an absolute duration counted from the first handoff, so its local
//!   handoff time drifts by the size of a daylight-saving change.
//! - **Non-existent and repeated local times.** A handoff or window edge whose local time is
//!   skipped by a spring-forward change happens at the same distance after the change as it
//!   would have been after the previous offset, which is jiff's "compatible" disambiguation
//!   (02:30 on the 2026-03-08 spring-forward day in America/New_York is 03:30 EDT). A local
//!   time repeated by a fall-back change takes its first occurrence.
//! - **Restrictions** mask a layer: it has someone on call only inside one of its windows. The
//!   rotation keeps turning behind the mask; a restriction does not pause it.
//! - **Shifts** are maximal intervals with the same answer, where the answer is the user
//!   *and* where they come from (which layer, or an override). A user who is on call in two
//!   adjacent layers therefore has two shifts.
//!
//! # Search horizon
//!
//! "Until when" is found by walking breakpoints (handoffs, window edges, override edges) and
//! stopping at the first one where the answer changes. The walk examines at most
//! [`MAX_SCAN_STEPS`] breakpoints in each direction; when it finds no change within that
//! many (for example a single person on call around the clock with no overrides) the bound
//! is reported as `None`. Every breakpoint that cannot change the answer is skipped without
//! cost where that is cheap to see: handoffs of a layer whose users are all the same person,
//! and any layer lying below one that is on call around the clock.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::layer::{CompiledLayer, Period, Window};

/// How many breakpoints a single forward or backward search examines before giving up and
/// reporting an unknown bound (`None`).
pub const MAX_SCAN_STEPS: u32 = 10_000;

/// How many breakpoints [`CompiledSchedule::shifts`] examines in total before it stops and
/// returns the shifts found so far.
pub const MAX_SHIFT_SCAN_STEPS: u32 = 100_000;

/// An on-call schedule as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The schedule's name, which escalation policies use to refer to it.
    pub name: String,
    /// The IANA time zone in which layer starts and restriction windows are read, such as
    /// `Europe/Berlin`.
    pub time_zone: String,
    /// Layers from bottom (`layers[0]`) to top; a higher layer wins where it has someone.
    #[serde(default)]
    pub layers: Vec<Layer>,
    /// Overrides, which win over every layer; a later override wins over an earlier one.
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// One rotation of users within a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// The layer's name, unique within its schedule and reported in [`OnCall::layer`].
    pub name: String,
    /// Users in rotation order; the first is on call from `start`.
    pub users: Vec<String>,
    /// How often the layer hands off to the next user.
    pub rotation: Rotation,
    /// The first handoff as a civil date-time in the schedule's zone, such as
    /// `2026-01-05T09:00`. Nobody is on call in this layer before it.
    pub start: String,
    /// Windows in which the layer is active; empty means always active.
    #[serde(default)]
    pub restrictions: Vec<Restriction>,
}

/// How often a layer hands off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rotation {
    /// Every day at the local wall-clock time of the layer's start.
    Daily,
    /// Every seven days at the local wall-clock time of the layer's start.
    Weekly,
    /// Every `n` hours of elapsed time, regardless of daylight-saving changes.
    Hours(u32),
}

/// A local time-of-day window in which a layer is active.
///
/// The window opens at `start` on each listed day and closes at `end`, on the same day if
/// `end` is later than `start`, otherwise on the following day (so `22:00`-`06:00` covers the
/// night, `09:00`-`00:00` runs until midnight and `09:00`-`09:00` a full day). `end` may
/// also be written `24:00`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    /// Days on which the window opens; empty means every day.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Local opening time, `HH:MM`.
    pub start: String,
    /// Local closing time, `HH:MM` (or `24:00`).
    pub end: String,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Monday to Friday, for business-hours restrictions.
    pub const WEEKDAYS: [Weekday; 5] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A user covering a fixed interval `[start_ms, end_ms)`, winning over every layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The user on call during the override.
    pub user: String,
    /// Start of the override, Unix epoch milliseconds (inclusive).
    pub start_ms: i64,
    /// End of the override, Unix epoch milliseconds (exclusive).
    pub end_ms: i64,
}

/// Who is on call at an instant, and the boundaries of that continuous shift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCall {
    /// The user on call.
    pub user: String,
    /// The layer the user is on call from, or `None` when from an override.
    pub layer: Option<String>,
    /// When this shift began; `None` if no change was found within the search horizon.
    pub since_ms: Option<i64>,
    /// When the answer next changes; `None` if no change was found within the search
    /// horizon.
    pub until_ms: Option<i64>,
}

/// One shift of the merged final schedule, clipped to the requested window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// The user on call.
    pub user: String,
    /// The layer the user is on call from, or `None` when from an override.
    pub layer: Option<String>,
    /// Start of the shift (inclusive), Unix epoch milliseconds.
    pub start_ms: i64,
    /// End of the shift (exclusive), Unix epoch milliseconds.
    pub end_ms: i64,
}

/// One problem found by [`Schedule::validate`], naming the field it sits in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A name or user is empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// The field, such as `layers[0].users[1]`.
        field: String,
    },
    /// The time zone is not in the IANA database.
    #[error(
        "{field}: unknown time zone `{zone}`; use an IANA name such as `Europe/Berlin` or `UTC`"
    )]
    UnknownZone {
        /// The field, `time_zone`.
        field: String,
        /// The name that was given.
        zone: String,
    },
    /// A layer has no users.
    #[error("{field}: no users; list at least one user to rotate through")]
    NoUsers {
        /// The field, such as `layers[0].users`.
        field: String,
    },
    /// Two layers share a name.
    #[error(
        "{field}: layer name `{name}` is already used by an earlier layer; give each layer its own name"
    )]
    DuplicateLayer {
        /// The field, such as `layers[2].name`.
        field: String,
        /// The repeated name.
        name: String,
    },
    /// A layer start is not a civil date-time, or cannot be placed in the zone.
    #[error(
        "{field}: `{value}` is not a usable civil date-time ({reason}); write it like `2026-01-05T09:00`"
    )]
    BadCivilTime {
        /// The field, such as `layers[0].start`.
        field: String,
        /// The text that was given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A restriction time is not `HH:MM`.
    #[error("{field}: `{value}` is not a time of day; write it as `HH:MM` between 00:00 and {max}")]
    BadTimeOfDay {
        /// The field, such as `layers[0].restrictions[0].start`.
        field: String,
        /// The text that was given.
        value: String,
        /// The latest accepted time (`23:59` for a start, `24:00` for an end).
        max: &'static str,
    },
    /// An `Hours(0)` rotation.
    #[error("{field}: a rotation of zero hours never hands off; use at least `hours: 1`")]
    ZeroHourRotation {
        /// The field, such as `layers[0].rotation`.
        field: String,
    },
    /// An override that does not end after it starts.
    #[error(
        "{field}: end_ms ({end_ms}) is not after start_ms ({start_ms}); the override must end after it starts"
    )]
    OverrideNotAfterStart {
        /// The field, such as `overrides[0]`.
        field: String,
        /// The given start.
        start_ms: i64,
        /// The given end.
        end_ms: i64,
    },
}

/// Every problem found in one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleErrors {
    /// The schedule's name as configured.
    pub schedule: String,
    /// The problems, in field order.
    pub errors: Vec<ScheduleError>,
}

impl fmt::Display for ScheduleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schedule `{}` is invalid: ", self.schedule)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScheduleErrors {}

/// Parses `HH:MM` into minutes after midnight, accepting `24:00` only when `allow_24` is set.
fn parse_time_of_day(text: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl Schedule {
    /// Checks the schedule and reports every problem, each naming its field.
    ///
    /// # Errors
    ///
    /// Every problem found, in field order: empty names, an unknown zone, layers without
    /// users, duplicate layer names, unparseable or unplaceable start times, bad restriction
    /// times, zero-hour rotations, and overrides that do not end after they start.
    pub fn validate(&self) -> Result<(), ScheduleErrors> {
        self.compile().map(drop)
    }

    /// Validates the schedule and compiles it for queries.
    ///
    /// # Errors
    ///
    /// The same problems as [`Schedule::validate`]; a schedule compiles only if it has none.
    pub fn compile(&self) -> Result<CompiledSchedule, ScheduleErrors> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push(ScheduleError::Empty {
                field: "name".into(),
            });
        }
        let tz = TimeZone::get(&self.time_zone).ok();
        if tz.is_none() {
            errors.push(ScheduleError::UnknownZone {
                field: "time_zone".into(),
                zone: self.time_zone.clone(),
            });
        }
        let mut names = BTreeSet::new();
        let mut layers = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let field = |f: &str| format!("layers[{i}].{f}");
            if layer.name.trim().is_empty() {
                errors.push(ScheduleError::Empty {
                    field: field("name"),
                });
            } else if !names.insert(layer.name.as_str()) {
                errors.push(ScheduleError::DuplicateLayer {
                    field: field("name"),
                    name: layer.name.clone(),
                });
            }
            if let Some(compiled) = self.compile_layer(i, layer, tz.as_ref(), &mut errors) {
                layers.push(compiled);
            }
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if o.user.trim().is_empty() {
                errors.push(ScheduleError::Empty {
                    field: format!("overrides[{i}].user"),
                });
            }
            if o.end_ms <= o.start_ms {
                errors.push(ScheduleError::OverrideNotAfterStart {
                    field: format!("overrides[{i}]"),
                    start_ms: o.start_ms,
                    end_ms: o.end_ms,
                });
            }
        }
        match tz {
            Some(tz) if errors.is_empty() => Ok(CompiledSchedule {
                name: self.name.clone(),
                tz,
                layers,
                overrides: self.overrides.clone(),
            }),
            _ => Err(ScheduleErrors {
                schedule: self.name.clone(),
                errors,
            }),
        }
    }

    /// Checks layer `i` apart from its name, recording problems in `errors`, and compiles it
    /// if it has none and the zone is known.
    fn compile_layer(
        &self,
        i: usize,
        layer: &Layer,
        tz: Option<&TimeZone>,
        errors: &mut Vec<ScheduleError>,
    ) -> Option<CompiledLayer> {
        let field = |f: &str| format!("layers[{i}].{f}");
        let before = errors.len();
        if layer.users.is_empty() {
            errors.push(ScheduleError::NoUsers {
                field: field("users"),
            });
        }
        for (j, user) in layer.users.iter().enumerate() {
            if user.trim().is_empty() {
                errors.push(ScheduleError::Empty {
                    field: field(&format!("users[{j}]")),
                });
            }
        }
        let period = match layer.rotation {
            Rotation::Daily => Period::Civil { days: 1 },
            Rotation::Weekly => Period::Civil { days: 7 },
            Rotation::Hours(0) => {
                errors.push(ScheduleError::ZeroHourRotation {
                    field: field("rotation"),
                });
                Period::Absolute { ms: 3_600_000 }
            }
            Rotation::Hours(n) => Period::Absolute {
                ms: i64::from(n) * 3_600_000,
            },
        };
        let start = match layer.start.parse::<DateTime>() {
            Ok(dt) if tz.is_some_and(|tz| tz.to_timestamp(dt).is_err()) => {
                errors.push(ScheduleError::BadCivilTime {
                    field: field("start"),
                    value: layer.start.clone(),
                    reason: format!("outside the range of `{}`", self.time_zone),
                });
                None
            }
            Ok(dt) => Some(dt),
            Err(e) => {
                errors.push(ScheduleError::BadCivilTime {
                    field: field("start"),
                    value: layer.start.clone(),
                    reason: e.to_string(),
                });
                None
            }
        };
        let mut windows = Vec::new();
        for (j, r) in layer.restrictions.iter().enumerate() {
            let start_min = parse_time_of_day(&r.start, false);
            if start_min.is_none() {
                errors.push(ScheduleError::BadTimeOfDay {
                    field: field(&format!("restrictions[{j}].start")),
                    value: r.start.clone(),
                    max: "23:59",
                });
            }
            let end_min = parse_time_of_day(&r.end, true);
            if end_min.is_none() {
                errors.push(ScheduleError::BadTimeOfDay {
                    field: field(&format!("restrictions[{j}].end")),
                    value: r.end.clone(),
                    max: "24:00",
                });
            }
            if let (Some(start_min), Some(end_min)) = (start_min, end_min) {
                windows.push(Window {
                    days_mask: r.days.iter().fold(0, |mask, d| mask | d.bit()),
                    start_min,
                    end_min,
                });
            }
        }
        if errors.len() > before {
            return None;
        }
        Some(CompiledLayer::new(
            tz?,
            layer.name.clone(),
            layer.users.clone(),
            start?,
            period,
            windows,
        ))
    }
}

/// The answer at an instant: a user and where they come from (`None` = an override).
type Who<'a> = Option<(&'a str, Option<usize>)>;

/// Outcome of a forward search for the next change.
enum Forward {
    /// The answer changes at this instant.
    Change(i64),
    /// No change before the limit (or ever, when there was no limit).
    NoChange,
    /// The step budget ran out first.
    OutOfBudget,
}

/// A validated schedule, ready for queries. Build one with [`Schedule::compile`].
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    name: String,
    tz: TimeZone,
    layers: Vec<CompiledLayer>,
    overrides: Vec<Override>,
}

/// Clamps an instant into the range jiff can convert. Layers are constant outside it.
///
/// Whole seconds are used at both ends because `Timestamp::from_millisecond` accepts
/// only whole-second bounds (`Timestamp::MAX` itself has a fractional second).
fn clamp(t: i64) -> i64 {
    let min = Timestamp::MIN.as_second().saturating_mul(1000);
    let max = Timestamp::MAX.as_second().saturating_mul(1000);
    t.clamp(min, max)
}

impl CompiledSchedule {
    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who is on call at `now_ms`, with the boundaries of that continuous shift, or `None`
    /// if nobody is.
    pub fn on_call_at(&self, now_ms: i64) -> Option<OnCall> {
        let who = self.who(now_ms);
        let (user, layer) = who?;
        let mut budget = MAX_SCAN_STEPS;
        let until_ms = match self.change_after(now_ms, &who, None, &mut budget) {
            Forward::Change(c) => Some(c),
            Forward::NoChange | Forward::OutOfBudget => None,
        };
        let since_ms = self.change_at_or_before(now_ms, &who);
        Some(OnCall {
            user: user.to_owned(),
            layer: self.layer_name(layer),
            since_ms,
            until_ms,
        })
    }

    /// The next instant after `now_ms` at which the answer of [`Self::on_call_at`] changes
    /// (a handoff, an override starting or ending, a layer showing through), or `None` if
    /// none is found within the search horizon.
    pub fn next_handoff(&self, now_ms: i64) -> Option<i64> {
        let who = self.who(now_ms);
        let mut budget = MAX_SCAN_STEPS;
        match self.change_after(now_ms, &who, None, &mut budget) {
            Forward::Change(c) => Some(c),
            Forward::NoChange | Forward::OutOfBudget => None,
        }
    }

    /// The merged final schedule between `from_ms` (inclusive) and `to_ms` (exclusive):
    /// maximal shifts with someone on call, clipped to the window, in time order. Gaps with
    /// nobody on call are left out. The list ends early if [`MAX_SHIFT_SCAN_STEPS`]
    /// breakpoints were examined before reaching `to_ms`.
    pub fn shifts(&self, from_ms: i64, to_ms: i64) -> Vec<Shift> {
        let mut shifts = Vec::new();
        let mut budget = MAX_SHIFT_SCAN_STEPS;
        let mut t = from_ms;
        while t < to_ms {
            let who = self.who(t);
            let end = match self.change_after(t, &who, Some(to_ms), &mut budget) {
                Forward::Change(c) => c,
                Forward::NoChange => to_ms,
                Forward::OutOfBudget => break,
            };
            if let Some((user, layer)) = who {
                shifts.push(Shift {
                    user: user.to_owned(),
                    layer: self.layer_name(layer),
                    start_ms: t,
                    end_ms: end,
                });
            }
            t = end;
        }
        shifts
    }

    fn layer_name(&self, index: Option<usize>) -> Option<String> {
        index
            .and_then(|i| self.layers.get(i))
            .map(|l| l.name.clone())
    }

    /// The final answer at `t`: the last override covering it, else the highest layer with
    /// someone on call.
    fn who(&self, t: i64) -> Who<'_> {
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.start_ms <= t && t < o.end_ms)
        {
            return Some((o.user.as_str(), None));
        }
        let t = clamp(t);
        self.layers
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, l)| l.user_at(&self.tz, t).map(|u| (u, Some(i))))
    }

    /// The index of the lowest layer that can matter at or after the clamped instant `t`:
    /// everything below a layer that is on call around the clock from before `t` is hidden
    /// for good.
    fn lowest_visible_layer(&self, t: i64) -> usize {
        self.layers
            .iter()
            .rposition(|l| l.covers_everything_from().is_some_and(|first| first <= t))
            .unwrap_or(0)
    }

    /// The earliest instant after `t` at which the answer may change.
    fn next_breakpoint(&self, t: i64) -> Option<i64> {
        let overrides = self
            .overrides
            .iter()
            .flat_map(|o| [o.start_ms, o.end_ms])
            .filter(|&c| c > t);
        let lt = clamp(t);
        let layers = self
            .layers
            .iter()
            .skip(self.lowest_visible_layer(lt))
            .filter_map(|l| l.next_breakpoint(&self.tz, lt))
            .filter(|&c| c > t);
        overrides.chain(layers).min()
    }

    /// The latest instant at or before `t` at which the answer may have changed.
    fn previous_breakpoint(&self, t: i64) -> Option<i64> {
        let overrides = self
            .overrides
            .iter()
            .flat_map(|o| [o.start_ms, o.end_ms])
            .filter(|&c| c <= t);
        let lt = clamp(t);
        let layers = self
            .layers
            .iter()
            .skip(self.lowest_visible_layer(lt))
            .filter_map(|l| l.previous_breakpoint(&self.tz, lt))
            .filter(|&c| c <= t);
        overrides.chain(layers).max()
    }

    /// Walks breakpoints forward from `t` to the first one where the answer differs from
    /// `who`, stopping at `limit` or when `budget` runs out.
    fn change_after(&self, t: i64, who: &Who<'_>, limit: Option<i64>, budget: &mut u32) -> Forward {
        let mut t = t;
        loop {
            if *budget == 0 {
                return Forward::OutOfBudget;
            }
            *budget -= 1;
            let Some(c) = self.next_breakpoint(t) else {
                return Forward::NoChange;
            };
            if limit.is_some_and(|limit| c >= limit) {
                return Forward::NoChange;
            }
            if self.who(c) != *who {
                return Forward::Change(c);
            }
            t = c;
        }
    }

    /// Walks breakpoints backward from `t` to the start of the shift containing it.
    fn change_at_or_before(&self, t: i64, who: &Who<'_>) -> Option<i64> {
        let mut t = t;
        for _ in 0..MAX_SCAN_STEPS {
            let c = self.previous_breakpoint(t)?;
            let before = c.checked_sub(1)?;
            if self.who(before) != *who {
                return Some(c);
            }
            t = before;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time_of_day;

    #[test]
    fn time_of_day_accepts_only_two_digit_hours_and_minutes() {
        assert_eq!(parse_time_of_day("09:30", false), Some(570));
        assert_eq!(parse_time_of_day("00:00", false), Some(0));
        assert_eq!(parse_time_of_day("24:00", true), Some(1440));
        assert_eq!(parse_time_of_day("24:00", false), None);
        assert_eq!(parse_time_of_day("9:30", false), None);
        assert_eq!(parse_time_of_day("09:60", false), None);
        assert_eq!(parse_time_of_day("+9:30", false), None);
        assert_eq!(parse_time_of_day("09:30:00", false), None);
    }
}
