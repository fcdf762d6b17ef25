//! What the control plane observed: the two pools, the proxy's figures, and an operator's
//! command. The machine reads only these values and the time in them.

use serde::{Deserialize, Serialize};

/// One observation, gathered by the control plane from the runtime and the proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The current time, in milliseconds since any fixed origin (the same one as the time
    /// given to [`crate::Deployment::new`]). A time earlier than one seen before is treated
    /// as that earlier maximum, so a clock step back never rewinds a deployment.
    pub now_ms: u64,
    /// The release serving before this deployment (empty on a first deploy).
    pub stable: PoolObs,
    /// The release being deployed.
    pub candidate: PoolObs,
    /// The proxy's figures for the current analysis window, `None` when unavailable. Figures
    /// for another window than [`crate::Desired::analysis_window`] are ignored.
    pub stats: Option<WindowStats>,
    /// An operator's command, delivered once. Delivering it again is harmless: a command
    /// that is already in effect (or does not apply, see
    /// [`crate::Deployment::command_applies`]) changes nothing and records nothing.
    pub command: Option<Command>,
}

/// Instance counts of one pool (one release).
///
/// `running` and `ready` are levels (now); `failed_to_start` and `restarts` are totals for
/// this deployment's instances of the pool and must never decrease during the deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolObs {
    /// Instances that exist (starting, ready, or stopping), i.e. those that count against
    /// the rolling surge limit.
    pub running: u32,
    /// Of `running`, the instances being stopped (draining, waiting to exit). Reported
    /// separately because a pool's running count alone cannot tell an instance on its way
    /// out from one on its way in.
    #[serde(default)]
    pub stopping: u32,
    /// Instances that pass their readiness check and are in the proxy table (not draining).
    pub ready: u32,
    /// Starts that exited (or could not be spawned) before the instance ever became ready.
    pub failed_to_start: u32,
    /// Restarts after an instance had been ready (liveness failures and crashes).
    pub restarts: u32,
}

/// The proxy's counts over one analysis window, for both versions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// The window these counts belong to: the [`crate::Desired::analysis_window`] the
    /// control plane was asked for when it started counting.
    pub window: u64,
    /// The candidate's figures.
    pub candidate: VersionWindow,
    /// The stable version's figures (recorded for comparison only).
    pub stable: VersionWindow,
}

/// One version's counts in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionWindow {
    /// Requests answered (or failed) in the window.
    pub requests: u64,
    /// Responses with a 5xx status, including the proxy's own 502/504 when an instance
    /// refused, reset or never answered (that is how a hanging release shows up here).
    pub errors: u64,
    /// Latency at the analysis quantile, in milliseconds, if the proxy has an estimate.
    /// A value that is not a finite non-negative number counts as no estimate.
    pub latency_ms_at_quantile: Option<f64>,
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Freeze forward progress; rollback conditions keep being checked.
    Pause,
    /// Continue after a pause; timers resume where they stopped.
    Resume,
    /// Roll back now (reason `aborted`).
    Abort,
    /// Canary: skip the remaining steps. Blue-green: end the preview and switch (once green
    /// is fully ready). Also resumes a paused deployment.
    Promote,
}

impl Command {
    /// The stable string form (`pause`, `resume`, `abort`, `promote`).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Abort => "abort",
            Command::Promote => "promote",
        }
    }
}
