//! The stored model: plain data types that cross the store boundary.
//! Times are milliseconds since the Unix epoch (UTC); ids are integers assigned by the store.

use serde::{Deserialize, Serialize};
use sluice_core::{EventKind, RunStatus, StepStatus};

/// One entry of the append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Gap-free, strictly increasing in commit order, starting at 1.
    pub seq: i64,
    /// When it was appended.
    pub time_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Who caused it.
    pub actor: String,
    /// What it is about.
    pub subject: String,
    /// The project, if any.
    pub project: Option<String>,
    /// Details.
    pub payload: serde_json::Value,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only `seq > after`.
    pub after: i64,
    /// At most this many (0 means 1000).
    pub limit: i64,
    /// Only this project.
    pub project: Option<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
    /// Only this subject.
    pub subject: Option<String>,
}

/// A project to register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewProject {
    /// Unique name (from `sluice.yml` unless given).
    pub name: String,
    /// A local path or a git URL.
    pub source: String,
    /// Seconds between polls; 0 disables polling.
    pub poll_interval_s: i64,
    /// Shared secret for webhooks (HMAC key or token).
    pub webhook_secret: String,
}

/// A registered project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Unique name.
    pub name: String,
    /// A local path or a git URL.
    pub source: String,
    /// Seconds between polls; 0 disables polling.
    pub poll_interval_s: i64,
    /// Shared secret for webhooks. Never serialised to API clients.
    #[serde(skip_serializing)]
    pub webhook_secret: String,
    /// When it was added.
    pub created_ms: i64,
}

/// The last commit sluice saw on a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchHead {
    /// Project name.
    pub project: String,
    /// Branch name without `refs/heads/`.
    pub branch: String,
    /// Full commit id.
    pub commit: String,
    /// When it was recorded.
    pub updated_ms: i64,
}

/// A step of a run to be created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStep {
    /// Unique within the run: `SERVICE/STEP`.
    pub name: String,
    /// The service it belongs to.
    pub service: String,
    /// Names of steps it needs.
    pub needs: Vec<String>,
    /// True if it is a gate.
    pub gate: bool,
}

/// A run to be created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// Project name.
    pub project: String,
    /// Target environment.
    pub env: String,
    /// Branch that was pushed.
    pub branch: String,
    /// Full commit id.
    pub commit: String,
    /// `push`, `webhook`, `poll`, `manual`, `rerun`.
    pub trigger: String,
    /// Who asked for it.
    pub actor: String,
    /// The run this one re-runs (after an interruption), if any.
    pub rerun_of: Option<i64>,
    /// The `sluice.yml` text at the commit, kept so the run can be resumed or inspected
    /// even if the repository changes.
    pub config: String,
    /// Services in this run.
    pub services: Vec<String>,
    /// Its steps, in definition order.
    pub steps: Vec<NewStep>,
    /// When it was created.
    pub created_ms: i64,
}

/// A pipeline run: one push (or manual trigger) for one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Id, increasing.
    pub id: i64,
    /// Project name.
    pub project: String,
    /// Target environment.
    pub env: String,
    /// Branch.
    pub branch: String,
    /// Full commit id.
    pub commit: String,
    /// What started it.
    pub trigger: String,
    /// Who asked for it.
    pub actor: String,
    /// The run this one re-runs, if any.
    pub rerun_of: Option<i64>,
    /// Current status.
    pub status: RunStatus,
    /// Services in this run.
    pub services: Vec<String>,
    /// The `sluice.yml` text at the commit.
    #[serde(skip_serializing)]
    pub config: String,
    /// Created.
    pub created_ms: i64,
    /// First step started.
    pub started_ms: Option<i64>,
    /// Reached a terminal status.
    pub finished_ms: Option<i64>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this environment.
    pub env: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only ids below this (paging backwards); None for the newest.
    pub before_id: Option<i64>,
    /// At most this many (0 means 50).
    pub limit: i64,
}

/// Test counts from JUnit reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSummary {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed or errored.
    pub failed: u64,
    /// Tests skipped.
    pub skipped: u64,
    /// Names (`classname.name`) of the failing tests, at most 100.
    pub failing: Vec<String>,
}

/// A step of a run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Run id.
    pub run_id: i64,
    /// Position in the run's definition order.
    pub position: i64,
    /// `SERVICE/STEP`.
    pub name: String,
    /// Service.
    pub service: String,
    /// Names it needs.
    pub needs: Vec<String>,
    /// True if it is a gate.
    pub gate: bool,
    /// Status.
    pub status: StepStatus,
    /// Attempt number, 0 before the first start.
    pub attempt: i64,
    /// Exit code of the last attempt, if it exited.
    pub exit_code: Option<i64>,
    /// Process group of the running attempt (for orphan clean-up after a crash).
    pub pgid: Option<i64>,
    /// Started (first attempt).
    pub started_ms: Option<i64>,
    /// Finished.
    pub finished_ms: Option<i64>,
    /// JUnit results, if the step declared reports.
    pub tests: Option<TestSummary>,
}

/// A change to one step; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepUpdate {
    /// Run id.
    pub run_id: i64,
    /// Step name.
    pub name: String,
    /// New status.
    pub status: Option<StepStatus>,
    /// New attempt number.
    pub attempt: Option<i64>,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Process group; `Some(None)` clears it.
    pub pgid: Option<Option<i64>>,
    /// Start time (only set if not yet set).
    pub started_ms: Option<i64>,
    /// Finish time.
    pub finished_ms: Option<i64>,
    /// Test results.
    pub tests: Option<TestSummary>,
}

/// One line of step output (already masked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Store-wide row id, increasing; assigned by the store (ignored on append). Use it as
    /// the cursor for [`LogFilter::after`].
    pub id: i64,
    /// Run id.
    pub run_id: i64,
    /// Step name.
    pub step: String,
    /// Per-step sequence, from 1.
    pub seq: i64,
    /// When it was read.
    pub time_ms: i64,
    /// `out`, `err` or `sys` (sluice's own notes, e.g. "retrying").
    pub stream: String,
    /// The text, without the newline.
    pub line: String,
}

/// Which log lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Run id.
    pub run_id: i64,
    /// Only this step.
    pub step: Option<String>,
    /// Only lines after this cursor (a [`LogLine::id`]); 0 for all. The cursor is a
    /// store-wide row id, so one value covers every step of the run.
    pub after: i64,
    /// At most this many (0 means 10000).
    pub limit: i64,
}

/// A release to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRelease {
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Commit.
    pub commit: String,
    /// Branch.
    pub branch: String,
    /// Environment whose pipeline built it.
    pub env: String,
    /// The run that produced it.
    pub run_id: i64,
    /// sha256 of the packed artifact, hex.
    pub artifact_sha256: String,
    /// Packed size in bytes.
    pub artifact_bytes: i64,
    /// Gate results: step name -> summary (status and tests).
    pub gates: serde_json::Value,
    /// When it was created.
    pub created_ms: i64,
}

/// An immutable release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Id.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Per-service version, 1, 2, 3, ...
    pub version: i64,
    /// Commit.
    pub commit: String,
    /// Branch.
    pub branch: String,
    /// Environment whose pipeline built it.
    pub env: String,
    /// The run that produced it.
    pub run_id: i64,
    /// sha256 of the artifact, hex.
    pub artifact_sha256: String,
    /// Artifact size.
    pub artifact_bytes: i64,
    /// True once retention deleted the artifact file.
    pub artifact_pruned: bool,
    /// Gate results.
    pub gates: serde_json::Value,
    /// Created.
    pub created_ms: i64,
}

/// Which releases to list.
#[derive(Debug, Clone, Default)]
pub struct ReleaseFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this service.
    pub service: Option<String>,
    /// At most this many (0 means 100).
    pub limit: i64,
}

/// The desired and the serving release of one service in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Environment.
    pub env: String,
    /// The release version the controller converges to; None before the first deploy.
    pub desired_version: Option<i64>,
    /// The release version that serves all traffic after the last finished deployment.
    pub stable_version: Option<i64>,
    /// Last change.
    pub updated_ms: i64,
}

/// A deployment to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeployment {
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Environment.
    pub env: String,
    /// The release being deployed.
    pub version: i64,
    /// The release serving when it started, if any.
    pub from_version: Option<i64>,
    /// Strategy name: `rolling`, `blue_green`, `canary`.
    pub strategy: String,
    /// Phase name for display.
    pub phase: String,
    /// The strategy machine's state (opaque JSON), persisted so a restarted server resumes.
    pub state: serde_json::Value,
    /// What started it: `pipeline`, `manual`, `rollback`, `promote`, `heal`.
    pub trigger: String,
    /// Who.
    pub actor: String,
    /// When.
    pub created_ms: i64,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Id, increasing.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Environment.
    pub env: String,
    /// The release being deployed.
    pub version: i64,
    /// The release serving when it started.
    pub from_version: Option<i64>,
    /// Strategy name.
    pub strategy: String,
    /// Status.
    pub status: sluice_core::DeployStatus,
    /// Phase name for display.
    pub phase: String,
    /// Why it ended as it did (rollback or failure reason).
    pub reason: Option<String>,
    /// The strategy machine's state.
    pub state: serde_json::Value,
    /// What started it.
    pub trigger: String,
    /// Who.
    pub actor: String,
    /// Created.
    pub created_ms: i64,
    /// Last change.
    pub updated_ms: i64,
    /// Ended.
    pub finished_ms: Option<i64>,
}

/// A change to a deployment; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentUpdate {
    /// Deployment id.
    pub id: i64,
    /// New status; a terminal one sets `finished_ms`.
    pub status: Option<sluice_core::DeployStatus>,
    /// New phase.
    pub phase: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// New machine state.
    pub state: Option<serde_json::Value>,
    /// Set the target's stable version (e.g. to `version` on success).
    pub stable_version: Option<Option<i64>>,
    /// Now.
    pub now_ms: i64,
}

/// Which deployments to list.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this service.
    pub service: Option<String>,
    /// Only this environment.
    pub env: Option<String>,
    /// Only running ones.
    pub running: bool,
    /// At most this many (0 means 50), newest first.
    pub limit: i64,
}
