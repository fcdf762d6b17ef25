//! On-call schedules and escalation policies for sluice, as pure functions of time.
//!
//! sluice pages people when an alert fires. This crate decides *who* is paged and *when*:
//!
//! - [`schedule`]: rotations of users in layers, stacked like PagerDuty (a higher layer wins
//!   wherever it has someone on call, lower layers fill the gaps) plus overrides that win over
//!   every layer. A [`Schedule`] is plain serialisable configuration; [`Schedule::compile`]
//!   validates it once and gives a [`CompiledSchedule`] that answers "who is on call at this
//!   instant, since when and until when" and renders the merged final schedule.
//! - [`escalation`]: an escalation [`Policy`] (levels of targets, a delay per level, a repeat
//!   count) driven by a serialisable [`EscalationState`] that the server persists between
//!   calls to [`escalation::advance`].
//! - [`now`]: the "on call now and next" view used by the `sluice oncall` CLI.
//!
//! Architecture invariant: this crate does no IO and never reads a clock or the environment.
//! Every query takes the current time as `now_ms: i64` (Unix epoch milliseconds), so the
//! server, the CLI and the tests all inject time the same way. Time zones come from the IANA
//! database bundled into the binary by `jiff` (feature `tzdb-bundle-always`, with the
//! system-database features switched off), so named zones work on hosts without
//! `/usr/share/zoneinfo` and the answers do not depend on what the host has installed.
//!
//! Deliberately NOT here: persisting schedules or escalation state, sending notifications,
//! user directories or contact methods, incident lifecycle beyond acknowledge/resolve. The
//! server owns all of those and calls into this crate to decide.
//!
//! Nothing in this crate panics on any input, validated or not: unvalidated configuration
//! gives odd answers (for example an override whose end is before its start never applies)
//! but never a crash.

pub mod escalation;
mod layer;
pub mod now;
pub mod schedule;

pub use escalation::{
    EscalationState, Level, OnCallResolver, Page, Policy, PolicyError, PolicyErrors, Target,
};
pub use now::{OnCallNow, now_and_next, on_call_now};
pub use schedule::{
    CompiledSchedule, Layer, OnCall, Override, Restriction, Rotation, Schedule, ScheduleError,
    ScheduleErrors, Shift, Weekday,
};
