//! Deployment strategies of sluice as pure state machines: rolling, blue-green and canary,
//! the canary analysis, and automatic rollback.
//!
//! Nothing here does IO, reads a clock, sleeps or spawns: the control plane calls
//! [`Deployment::step`] on every tick and after every observation with an [`Observation`]
//! (the two pools, the proxy's figures, an operator's command, and the time), carries out
//! the returned [`Desired`] state, records its [`Decision`]s as events, and persists the
//! `Deployment` (serde JSON) so a restarted server resumes where it was.
//! Architecture invariant: no IO, no async, no clock, no HTTP/SQL/process types.
//!
//! # The loop
//!
//! `Desired` is level-based: instance counts per version, the traffic split, the sticky
//! group, the preview flag and the analysis window are what must be true *now*; applying
//! it twice is applying it once. Only `decisions` (and the `reset_window` convenience) are
//! news, and calling `step` again with the same observation returns none.
//!
//! # Strategies
//!
//! - **Rolling** (`max_surge`, `max_unavailable`, counted in instances): stable instances
//!   are replaced in batches ([`Phase::Rolling`]). The machine never asks for more than
//!   `replicas + max_surge` instances, counting stable instances that still run while
//!   stopping, and never stops a ready instance when that could leave fewer than
//!   `replicas - max_unavailable` ready (not-ready old instances may always be stopped;
//!   the control plane stops not-ready instances first). Traffic is
//!   [`Traffic::ByReadiness`]: every ready instance of either version is a backend.
//!   Succeeds when `replicas` candidates are ready and no stable instance is wanted.
//! - **Blue-green**: `replicas` green (candidate) instances start beside blue
//!   ([`Phase::Starting`], optionally exposed on the preview address). When all are ready
//!   it waits for `Promote` if `preview && !auto_promote` ([`Phase::Preview`]), then
//!   switches 100% of traffic to green in one step and keeps blue running for
//!   `keep_warm_ms` ([`Phase::KeepingWarm`]); a rollback inside that window is a switch
//!   back with no start. Then blue is stopped and the deployment succeeds.
//! - **Canary**: for each step the candidate is scaled to
//!   [`canary_instances`]`(replicas, weight)` (`ceil(replicas * weight / 100)`, at least 1)
//!   while stable keeps its full count ([`Phase::CanaryScaling`]); once those are ready the
//!   weight is applied, a new analysis window starts, and the step pauses `pause_ms`
//!   ([`Phase::CanaryStep`]). Every `interval_ms` the window's figures are checked and a
//!   failure rolls back at once; at the end of the pause the window is judged (see
//!   [`evaluate`]): pass → next step; fail → rollback; too little traffic → the
//!   [`InsufficientPolicy`] (`pass`/`fail` at once; `wait_then_pass`/`wait_then_fail`
//!   extend the step up to `max_wait_ms`, judging the figures normally as soon as there
//!   are enough requests, then pass/fail). Missing figures (none, or of an older window)
//!   are waited for up to `max_wait_ms` under every policy, then count as zero requests.
//!   After the last step (or `Promote`) the candidate is scaled to `replicas`
//!   ([`Phase::Promoting`]), then gets 100% and stable is stopped. Thresholds are absolute;
//!   the stable version's figures are recorded next to them but do not decide. A sticky
//!   group (header or cookie) is routed to the candidate while the weight is 1..=99.
//! - **First deploy** (no stable release): any strategy starts `replicas` candidates,
//!   serves them by readiness and succeeds when all are ready; failures end
//!   [`Outcome::Failed`] with the candidate stopped (nothing to roll back to).
//!
//! # Automatic rollback
//!
//! Checked on every call, paused or not, in this order: `Abort`; more failed starts than
//! `max_restarts`; more restarts than `max_restarts`; the progress deadline; a failing
//! canary window. The progress deadline has two clocks, both restarted whenever the machine
//! changes a target or its phase: (1) in a phase that waits on the runtime (starting,
//! rolling, canary scaling, promoting) and is not paused, no further change within
//! `progress_deadline_ms` rolls back, so every instance the machine asks for must be ready
//! within that time of being asked for; (2) in every phase, the time the candidate has had
//! fewer ready instances than wanted adds up, and reaching `progress_deadline_ms` rolls
//! back (a release that flaps during a canary step or keep-warm is caught too).
//!
//! A rollback records `rollback.started` with the reason and its figures and enters
//! [`Phase::RollingBack`]: canary and blue-green switch all traffic back to stable in one
//! step and stop the candidate at once (stable never shrank); rolling runs a rolling
//! update back to stable within the same surge/unavailability limits (broken, not-ready
//! candidates stop at once; ready ones as stable instances become ready again). It ends
//! [`Outcome::RolledBack`] when stable has `replicas` ready instances, or after
//! `progress_deadline_ms` without progress (recorded as incomplete; the reconciler keeps
//! healing).
//!
//! # Commands
//!
//! `Pause` freezes forward progress (no new instances, weight change, switch or scale-down)
//! and stops the timers (a step's pause, keep-warm, the first progress clock), which resume
//! where they were on `Resume`; every rollback check above keeps running while paused, as
//! in Argo Rollouts. `Abort` rolls back now (reason `aborted`). `Promote` skips the
//! remaining canary steps or ends a blue-green preview, and clears a pause. A command
//! that does not apply changes nothing (see [`Deployment::command_applies`]).
//!
//! # Termination
//!
//! Every phase is bounded in time except those that wait for a person: paused, and
//! blue-green preview without `auto_promote`.

mod analysis;
pub mod autoscale;
mod machine;
mod observe;
mod output;
mod rolling;
mod spec;

pub use analysis::{Verdict, evaluate};
pub use autoscale::{
    AutoscaleError, AutoscalePolicy, Autoscaler, InstanceUsage, Limit, MetricFigures, ScaleAction,
    ScaleDecision,
};
pub use machine::{Deployment, canary_instances};
pub use observe::{Command, Observation, PoolObs, VersionWindow, WindowStats};
pub use output::{Decision, Desired, Outcome, Phase, Reason, Traffic};
pub use spec::{
    Analysis, BlueGreenParams, CanaryParams, CanaryStep, DeploySpec, InsufficientPolicy,
    RollingParams, SpecError, StickyGroup, Strategy,
};
