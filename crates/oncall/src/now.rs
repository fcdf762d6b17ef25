//! "Who is on call now, and who is next" for the `sluice oncall` CLI and dashboards.
//!
//! "Next" is the next shift with someone on call after the current one ends, skipping a gap
//! with nobody on call. It can be the same person coming from another layer or an override,
//! because a shift is identified by the user and where they come from.

use serde::{Deserialize, Serialize};

use crate::schedule::{CompiledSchedule, OnCall};

/// The current and next on-call shift of one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallNow {
    /// The schedule's name.
    pub schedule: String,
    /// Who is on call at the queried instant, if anyone.
    pub now: Option<OnCall>,
    /// Who is on call in the following shift, if one is found within the search horizon.
    pub next: Option<OnCall>,
}

/// Who is on call at `now_ms` in `schedule`, and who takes over next.
pub fn now_and_next(schedule: &CompiledSchedule, now_ms: i64) -> (Option<OnCall>, Option<OnCall>) {
    let current = schedule.on_call_at(now_ms);
    let mut t = now_ms;
    // Segments alternate between "someone" and "nobody" at worst, so the next shift with
    // someone on call is at most two changes away.
    let mut next = None;
    for _ in 0..2 {
        let Some(change) = schedule.next_handoff(t) else {
            break;
        };
        if let Some(found) = schedule.on_call_at(change) {
            next = Some(found);
            break;
        }
        t = change;
    }
    (current, next)
}

/// [`now_and_next`] for every schedule, in the order given.
pub fn on_call_now(schedules: &[CompiledSchedule], now_ms: i64) -> Vec<OnCallNow> {
    schedules
        .iter()
        .map(|s| {
            let (now, next) = now_and_next(s, now_ms);
            OnCallNow {
                schedule: s.name().to_owned(),
                now,
                next,
            }
        })
        .collect()
}
