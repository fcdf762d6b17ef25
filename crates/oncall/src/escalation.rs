//! Escalation policies and the state machine that decides which pages are due.
//!
//! A [`Policy`] is a list of levels. Each level names targets (users, or schedules resolved to
//! whoever is on call) and a delay: how long to wait after paging that level before paging the
//! next one. After the last level the whole policy runs again `repeat` more times, and then
//! stops. Acknowledging or resolving stops it at once.
//!
//! The server persists an [`EscalationState`] per incident and calls [`advance`] whenever
//! `next_at_ms` has passed (or on any tick; calling early is harmless). Everything is a pure
//! function of the injected `now_ms`.
//!
//! # Decisions
//!
//! - **Steps.** Step `(level, round)` follows `(level - 1, round)`, and `(0, round + 1)`
//!   follows the last level of `round`. A step is due `delay_ms` of the previous level after
//!   the previous step was due (not after it was actually sent), so a late server does not
//!   push the whole timeline back.
//! - **Done.** Once the final step (last level of the last round) has been paged nothing more
//!   can happen: `done` is set and `next_at_ms` is `None` at that moment, without waiting out
//!   the last level's delay. That delay is therefore unused when `repeat` is 0.
//! - **Catch-up.** If the server was down, [`advance`] walks every step that came due, in
//!   order, so the state ends exactly where it would have been. Each level is paged at most
//!   once per call (the earliest due step for it), so a long outage does not page the same
//!   people once per missed round; each [`Page`] keeps the step's own `due_at_ms`.
//! - **Resolving schedules.** Schedule targets are resolved at `now_ms`, the moment the page
//!   is actually sent, also when catching up: the person on call now is the one who can act,
//!   and a responder who handed off during the outage is not woken.
//! - **Deduplication.** Within one level a user is paged once, whether listed twice or also
//!   reached through a schedule; the first target that named them is kept.
//! - **Nobody on call.** A schedule target that resolves to nobody (or that the resolver does
//!   not know) still yields a [`Page`] with `user: None`, so the server can record "nobody on
//!   call" on the incident timeline.
//! - **Validation.** A zero delay is rejected wherever it is used (every level except the last
//!   when `repeat` is 0), because it would page the next level in the same instant: put those
//!   targets on one level instead. `repeat` is capped at [`MAX_REPEAT`]. [`advance`] still
//!   never loops forever or panics on a policy that was not validated, or that was edited
//!   while an escalation was running (a state pointing past the last level is finished).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::schedule::CompiledSchedule;

/// The largest accepted [`Policy::repeat`].
pub const MAX_REPEAT: u32 = 100;

/// An escalation policy as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// Levels, paged in order.
    pub levels: Vec<Level>,
    /// How many more times to run the whole policy after the last level; 0 runs it once.
    #[serde(default)]
    pub repeat: u32,
}

/// One level of an escalation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Who is paged at this level.
    pub targets: Vec<Target>,
    /// How long to wait at this level, in milliseconds, before escalating to the next.
    pub delay_ms: u64,
}

/// Someone to page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A user, by name.
    User(String),
    /// Whoever is on call in the named schedule when the page is sent.
    Schedule(String),
}

/// Resolves a schedule name to the user on call at an instant.
///
/// Implemented for closures `Fn(&str, i64) -> Option<String>` and for a slice of
/// [`CompiledSchedule`]s (looked up by name).
pub trait OnCallResolver {
    /// The user on call in `schedule` at `at_ms`, or `None` if nobody is or the schedule is
    /// unknown.
    fn on_call(&self, schedule: &str, at_ms: i64) -> Option<String>;
}

impl<F> OnCallResolver for F
where
    F: Fn(&str, i64) -> Option<String>,
{
    fn on_call(&self, schedule: &str, at_ms: i64) -> Option<String> {
        self(schedule, at_ms)
    }
}

impl OnCallResolver for [CompiledSchedule] {
    fn on_call(&self, schedule: &str, at_ms: i64) -> Option<String> {
        self.iter()
            .find(|s| s.name() == schedule)
            .and_then(|s| s.on_call_at(at_ms))
            .map(|o| o.user)
    }
}

/// The persisted progress of one escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationState {
    /// The level most recently paged.
    pub level: usize,
    /// The round of the level most recently paged (0 is the first run of the policy).
    pub round: u32,
    /// When the next step is due; `None` once nothing more will be paged.
    pub next_at_ms: Option<i64>,
    /// Someone acknowledged: no further pages.
    pub acknowledged: bool,
    /// Finished: resolved, or every step has been paged.
    pub done: bool,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// The level being paged.
    pub level: usize,
    /// The round of that level.
    pub round: u32,
    /// The user to notify; `None` when a schedule target had nobody on call.
    pub user: Option<String>,
    /// The configured target the user came from.
    pub target: Target,
    /// When this step was due (earlier than the call's `now_ms` when catching up).
    pub due_at_ms: i64,
}

/// One problem found by [`Policy::validate`], naming the field it sits in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A name is empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// The field, such as `levels[0].targets[1]`.
        field: String,
    },
    /// The policy has no levels.
    #[error("levels: no levels; add at least one level with a target")]
    NoLevels,
    /// A level has no targets.
    #[error("{field}: no targets; name at least one user or schedule to page")]
    NoTargets {
        /// The field, such as `levels[1].targets`.
        field: String,
    },
    /// A zero delay where the delay is used.
    #[error(
        "{field}: 0 would page the next step in the same instant; use a positive delay or put those targets on this level"
    )]
    ZeroDelay {
        /// The field, such as `levels[0].delay_ms`.
        field: String,
    },
    /// `repeat` above [`MAX_REPEAT`].
    #[error("repeat: {repeat} is more than the maximum of {max}; lower it")]
    RepeatTooLarge {
        /// The given value.
        repeat: u32,
        /// The maximum, [`MAX_REPEAT`].
        max: u32,
    },
}

/// Every problem found in one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    /// The policy's name as configured.
    pub policy: String,
    /// The problems, in field order.
    pub errors: Vec<PolicyError>,
}

impl std::fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "escalation policy `{}` is invalid: ", self.policy)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl Policy {
    /// Checks the policy and reports every problem, each naming its field.
    pub fn validate(&self) -> Result<(), PolicyErrors> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() {
            errors.push(PolicyError::Empty {
                field: "name".into(),
            });
        }
        if self.levels.is_empty() {
            errors.push(PolicyError::NoLevels);
        }
        let last = self.levels.len().saturating_sub(1);
        for (i, level) in self.levels.iter().enumerate() {
            if level.targets.is_empty() {
                errors.push(PolicyError::NoTargets {
                    field: format!("levels[{i}].targets"),
                });
            }
            for (j, target) in level.targets.iter().enumerate() {
                let (Target::User(name) | Target::Schedule(name)) = target;
                if name.trim().is_empty() {
                    errors.push(PolicyError::Empty {
                        field: format!("levels[{i}].targets[{j}]"),
                    });
                }
            }
            let delay_used = i < last || self.repeat > 0;
            if level.delay_ms == 0 && delay_used {
                errors.push(PolicyError::ZeroDelay {
                    field: format!("levels[{i}].delay_ms"),
                });
            }
        }
        if self.repeat > MAX_REPEAT {
            errors.push(PolicyError::RepeatTooLarge {
                repeat: self.repeat,
                max: MAX_REPEAT,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors {
                policy: self.name.clone(),
                errors,
            })
        }
    }

    /// The step after `(level, round)`, if any.
    fn following(&self, level: usize, round: u32) -> Option<(usize, u32)> {
        if level
            .checked_add(1)
            .is_some_and(|next| next < self.levels.len())
        {
            Some((level + 1, round))
        } else if round < self.repeat {
            Some((0, round + 1))
        } else {
            None
        }
    }

    /// The delay of `level` in milliseconds, saturated into `i64`.
    fn delay(&self, level: usize) -> i64 {
        self.levels
            .get(level)
            .map_or(0, |l| i64::try_from(l.delay_ms).unwrap_or(i64::MAX))
    }

    /// The length of one whole round, saturated.
    fn round_length(&self) -> i64 {
        (0..self.levels.len()).fold(0i64, |sum, i| sum.saturating_add(self.delay(i)))
    }

    /// When the step after `(level, round)` is due, given that this one was due at `due`.
    fn next_due(&self, level: usize, round: u32, due: i64) -> Option<i64> {
        self.following(level, round)
            .map(|_| due.saturating_add(self.delay(level)))
    }
}

/// The pages for one step, resolved at `now_ms` and deduplicated by user.
fn page_level<R: OnCallResolver + ?Sized>(
    policy: &Policy,
    level: usize,
    round: u32,
    due_at_ms: i64,
    now_ms: i64,
    resolver: &R,
) -> Vec<Page> {
    let Some(config) = policy.levels.get(level) else {
        return Vec::new();
    };
    let mut users = BTreeSet::new();
    let mut nobody = BTreeSet::new();
    let mut pages = Vec::new();
    for target in &config.targets {
        let user = match target {
            Target::User(name) => Some(name.clone()),
            Target::Schedule(name) => resolver.on_call(name, now_ms),
        };
        let first_time = match &user {
            Some(u) => users.insert(u.clone()),
            None => nobody.insert(target),
        };
        if first_time {
            pages.push(Page {
                level,
                round,
                user,
                target: target.clone(),
                due_at_ms,
            });
        }
    }
    pages
}

/// Starts an escalation at `now_ms`: pages level 0 at once and schedules the next step.
///
/// A policy without levels starts finished and pages nobody.
pub fn start<R: OnCallResolver + ?Sized>(
    policy: &Policy,
    now_ms: i64,
    resolver: &R,
) -> (EscalationState, Vec<Page>) {
    if policy.levels.is_empty() {
        let state = EscalationState {
            level: 0,
            round: 0,
            next_at_ms: None,
            acknowledged: false,
            done: true,
        };
        return (state, Vec::new());
    }
    let pages = page_level(policy, 0, 0, now_ms, now_ms, resolver);
    let next_at_ms = policy.next_due(0, 0, now_ms);
    let state = EscalationState {
        level: 0,
        round: 0,
        next_at_ms,
        acknowledged: false,
        done: next_at_ms.is_none(),
    };
    (state, pages)
}

/// Pages every step due at or before `now_ms` and moves `state` past them.
///
/// Returns nothing once the escalation is acknowledged or done. See the module
/// documentation for how a long outage is caught up.
pub fn advance<R: OnCallResolver + ?Sized>(
    policy: &Policy,
    state: &mut EscalationState,
    now_ms: i64,
    resolver: &R,
) -> Vec<Page> {
    if state.acknowledged || state.done {
        state.next_at_ms = None;
        return Vec::new();
    }
    let levels = policy.levels.len();
    if state.level >= levels || state.round > policy.repeat {
        // The policy shrank under a running escalation: there is no step to go on with.
        finish(state);
        return Vec::new();
    }
    let mut pages = Vec::new();
    let mut paged = vec![false; levels];
    let mut steps = 0usize;
    while let Some(due) = state.next_at_ms
        && due <= now_ms
    {
        let Some((level, round)) = policy.following(state.level, state.round) else {
            finish(state);
            break;
        };
        state.level = level;
        state.round = round;
        if let Some(seen) = paged.get_mut(level)
            && !*seen
        {
            *seen = true;
            pages.extend(page_level(policy, level, round, due, now_ms, resolver));
        }
        state.next_at_ms = policy.next_due(level, round, due);
        if state.next_at_ms.is_none() {
            state.done = true;
        }
        steps += 1;
        if steps == levels {
            // Every level has now been paged in this call, so further whole rounds would page
            // nobody new: jump over them arithmetically instead of walking each step.
            skip_whole_rounds(policy, state, now_ms);
        }
    }
    pages
}

/// Moves `state` forward by as many whole rounds as are entirely due by `now_ms`, keeping
/// its level and keeping a following step in existence.
fn skip_whole_rounds(policy: &Policy, state: &mut EscalationState, now_ms: i64) {
    let Some(due) = state.next_at_ms else {
        return;
    };
    if due > now_ms {
        return;
    }
    let last_level = state.level + 1 >= policy.levels.len();
    let rounds_left = policy.repeat.saturating_sub(state.round);
    let max_skip = if last_level {
        rounds_left.saturating_sub(1)
    } else {
        rounds_left
    };
    let length = policy.round_length();
    let skip = if length > 0 {
        let fit = now_ms.saturating_sub(due) / length;
        u32::try_from(fit).unwrap_or(u32::MAX).min(max_skip)
    } else {
        max_skip
    };
    state.round += skip;
    state.next_at_ms = Some(due.saturating_add(length.saturating_mul(i64::from(skip))));
}

fn finish(state: &mut EscalationState) {
    state.done = true;
    state.next_at_ms = None;
}

/// Someone acknowledged: stop all further escalation.
pub fn acknowledge(state: &mut EscalationState) {
    state.acknowledged = true;
    state.next_at_ms = None;
}

/// The incident was resolved: stop all further escalation and mark the escalation done.
pub fn resolve(state: &mut EscalationState) {
    finish(state);
}
