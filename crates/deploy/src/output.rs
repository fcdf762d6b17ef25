//! What the machine answers: the desired state (level-based), the phase, the decisions it
//! took with the figures behind them, and the final outcome.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::StickyGroup;

/// How the proxy splits traffic between the two versions. Only ready instances are ever in
/// the proxy table; if the pool a share names has no ready instance, that share goes to the
/// other pool (a proxy never drops a request for want of weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Traffic {
    /// Every ready instance of either version is one equal backend (rolling, first deploys):
    /// a version's share is its share of the ready instances.
    ByReadiness,
    /// The candidate gets `candidate_weight` percent (0..=100), stable the rest. A change
    /// from one value to another is one atomic switch of the proxy's table.
    Weighted {
        /// Candidate share in percent.
        candidate_weight: u8,
    },
}

/// Where a deployment is. Serialised with a `phase` tag, e.g. `{"phase":"canary_step",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Candidate instances are starting and no traffic moved yet: blue-green's green pool,
    /// or a blue-green or canary first deploy (whose traffic is [`Traffic::ByReadiness`];
    /// a rolling first deploy stays [`Phase::Rolling`]).
    Starting,
    /// Rolling: replacing stable instances with candidate ones in batches.
    Rolling,
    /// Blue-green: green is ready on the preview address; waiting for `Promote`.
    Preview,
    /// Blue-green: traffic switched to green; blue stays running until `until_ms`.
    KeepingWarm {
        /// When blue is stopped (moves later by the time spent paused).
        until_ms: u64,
    },
    /// Canary: candidate instances scaled for step `step` (index into the steps), waiting
    /// for them to be ready before its weight is applied; `weight` is still the previous
    /// step's (0 before the first).
    CanaryScaling {
        /// Step index.
        step: usize,
        /// Candidate weight in effect.
        weight: u8,
    },
    /// Canary: step `step` is running at `weight`; it is judged at `until_ms`, and checked
    /// every `interval_ms` before that. `waiting_for_traffic` when the step ended with too
    /// few requests and is being extended (policy `wait_then_*`).
    CanaryStep {
        /// Step index.
        step: usize,
        /// Candidate weight in effect.
        weight: u8,
        /// End of the step's pause (moves later by the time spent paused).
        until_ms: u64,
        /// The step is being extended for lack of traffic.
        waiting_for_traffic: bool,
    },
    /// Canary: the steps are done (or skipped by `Promote`); the candidate is being scaled
    /// to the full count before all traffic moves to it.
    Promoting,
    /// Going back to stable: stable is asked for its full count; the deployment ends
    /// `RolledBack` when stable is fully ready again (or after the progress deadline).
    RollingBack {
        /// Why.
        reason: Reason,
    },
    /// Finished: the candidate serves all traffic at full count; stable is stopped.
    Succeeded,
    /// Finished: stable serves all traffic; the candidate is stopped.
    RolledBack {
        /// Why.
        reason: Reason,
    },
    /// Finished: a first deploy failed; nothing runs (there was nothing to go back to).
    Failed {
        /// Why.
        reason: Reason,
    },
}

impl Phase {
    /// The stable string form of the phase's kind (`starting`, `canary_step`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Rolling => "rolling",
            Phase::Preview => "preview",
            Phase::KeepingWarm { .. } => "keeping_warm",
            Phase::CanaryScaling { .. } => "canary_scaling",
            Phase::CanaryStep { .. } => "canary_step",
            Phase::Promoting => "promoting",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack { .. } => "rolled_back",
            Phase::Failed { .. } => "failed",
        }
    }
}

/// Why a deployment rolled back (or failed), with the figures that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// More candidate starts failed than `max_restarts` allows.
    StartFailed {
        /// Failed starts observed.
        failed_to_start: u32,
        /// The limit (`max_restarts`).
        limit: u32,
    },
    /// The candidate restarted more often than `max_restarts` allows.
    CrashLoop {
        /// Restarts observed.
        restarts: u32,
        /// The limit (`max_restarts`).
        limit: u32,
    },
    /// Candidate instances were not ready, or the deployment made no progress, in time.
    ProgressDeadline {
        /// Candidate instances ready.
        ready: u32,
        /// Candidate instances asked for.
        wanted: u32,
        /// Time spent waiting (or not ready), in milliseconds.
        waited_ms: u64,
        /// The deadline (`progress_deadline_ms`).
        deadline_ms: u64,
    },
    /// The candidate's 5xx rate in the analysis window was above the threshold.
    ErrorRate {
        /// Errors / requests.
        error_rate: f64,
        /// `max_error_rate`.
        threshold: f64,
        /// Candidate requests in the window.
        requests: u64,
        /// Candidate 5xx responses in the window.
        errors: u64,
    },
    /// The candidate's latency at the quantile was above the threshold.
    Latency {
        /// Measured latency at `quantile`, ms.
        latency_ms: f64,
        /// `max_latency_ms`.
        threshold_ms: f64,
        /// The quantile.
        quantile: f64,
        /// Candidate requests in the window.
        requests: u64,
    },
    /// A step ended with too few requests and the policy said fail.
    InsufficientTraffic {
        /// Candidate requests in the window (0 when there were no figures).
        requests: u64,
        /// `min_requests`.
        min_requests: u64,
        /// How long the step was extended waiting for traffic.
        waited_ms: u64,
    },
    /// An operator aborted.
    Aborted,
}

impl Reason {
    /// The stable string form of the reason's kind (`error_rate`, `aborted`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::StartFailed { .. } => "start_failed",
            Reason::CrashLoop { .. } => "crash_loop",
            Reason::ProgressDeadline { .. } => "progress_deadline",
            Reason::ErrorRate { .. } => "error_rate",
            Reason::Latency { .. } => "latency",
            Reason::InsufficientTraffic { .. } => "insufficient_traffic",
            Reason::Aborted => "aborted",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::StartFailed {
                failed_to_start,
                limit,
            } => write!(
                f,
                "the new release failed to start {failed_to_start} times (limit {limit})"
            ),
            Reason::CrashLoop { restarts, limit } => write!(
                f,
                "the new release restarted {restarts} times (limit {limit})"
            ),
            Reason::ProgressDeadline {
                ready,
                wanted,
                waited_ms,
                deadline_ms,
            } => write!(
                f,
                "{ready} of {wanted} new instances ready after {waited_ms} ms (deadline {deadline_ms} ms)"
            ),
            Reason::ErrorRate {
                error_rate,
                threshold,
                requests,
                ..
            } => write!(
                f,
                "error rate {:.2}% over {requests} requests is above {:.2}%",
                error_rate * 100.0,
                threshold * 100.0
            ),
            Reason::Latency {
                latency_ms,
                threshold_ms,
                quantile,
                requests,
            } => write!(
                f,
                "p{} latency {latency_ms:.1} ms over {requests} requests is above {threshold_ms:.1} ms",
                quantile * 100.0
            ),
            Reason::InsufficientTraffic {
                requests,
                min_requests,
                waited_ms,
            } => write!(
                f,
                "only {requests} requests (need {min_requests}) after waiting {waited_ms} ms"
            ),
            Reason::Aborted => f.write_str("aborted"),
        }
    }
}

/// How a finished deployment ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The candidate is the new stable release.
    Succeeded,
    /// The stable release serves again; the candidate is stopped.
    RolledBack {
        /// Why.
        reason: Reason,
    },
    /// A first deploy failed; nothing serves.
    Failed {
        /// Why.
        reason: Reason,
    },
}

/// One decision the machine took, for the event log, `sluice deploy show` and the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When (the observation's time).
    pub at_ms: u64,
    /// Stable machine-readable kind, e.g. `canary.step_passed`, `rollback.started`.
    pub kind: String,
    /// One human sentence.
    pub message: String,
    /// The measured values behind it, e.g. `{"error_rate":0.21,"threshold":0.05,"requests":412}`.
    pub figures: Value,
}

/// What the control plane must make true now. Level-based: applying the same `Desired`
/// twice is the same as applying it once; only `decisions` and `reset_window` are news.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// Instances of the stable release to keep running. When scaling a pool down, the
    /// control plane stops not-ready instances first (the rolling availability guarantee
    /// relies on it).
    pub stable_instances: u32,
    /// Instances of the candidate release to keep running.
    pub candidate_instances: u32,
    /// How the proxy splits traffic between the ready instances of the two versions.
    pub traffic: Traffic,
    /// Users routed to the candidate regardless of weight (canary steps only).
    pub sticky: Option<StickyGroup>,
    /// Expose the candidate's ready instances on the preview address.
    pub preview: bool,
    /// Where the deployment is.
    pub phase: Phase,
    /// The deployment is paused (forward progress frozen; rollback checks still run).
    pub paused: bool,
    /// The analysis window the proxy's figures must be counted over, `None` when no
    /// analysis runs. When it differs from the window the control plane is counting, the
    /// control plane snapshots the proxy's counters now and reports figures since then with
    /// this id in [`crate::WindowStats::window`]. Level-based, so a crash between a reset
    /// and its snapshot cannot mix two windows.
    pub analysis_window: Option<u64>,
    /// True on the one call that started a new analysis window (a convenience; the level is
    /// `analysis_window`).
    pub reset_window: bool,
    /// Decisions taken by this call (empty when nothing changed).
    pub decisions: Vec<Decision>,
}
