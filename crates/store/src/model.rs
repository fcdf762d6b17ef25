//! The stored model: plain data types that cross the store boundary.
//! Times are milliseconds since the Unix epoch (UTC); ids are integers assigned by the store,
//! except for API tokens and secrets, whose text ids the caller mints.

use serde::{Deserialize, Serialize};
use sluice_audit::Hash;
use sluice_auth::{Approval, Scope, TokenRecord};
use sluice_core::{EventKind, RunStatus, StepStatus};
use sluice_secrets::{Sealed, SecretRef};

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
    /// The client address of the request that caused it, if any.
    #[serde(default)]
    pub source: Option<String>,
    /// The id of the request that caused it, if any.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The previous event's [`Event::hash`]; [`Hash::GENESIS`] for seq 1.
    #[serde(default)]
    pub prev_hash: Hash,
    /// This event's entry hash in the audit chain ([`sluice_audit::entry_hash`] over
    /// `prev_hash` and the fields above, the payload as its stored JSON text).
    #[serde(default)]
    pub hash: Hash,
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
    /// Only events recorded at or after this time (epoch milliseconds).
    pub since_ms: Option<i64>,
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
    /// The id (`sha256:…`) of the image a `build_image` step built.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The report of a `scan` step (sluice-vuln's `Report` as JSON), passed or failed.
    #[serde(default)]
    pub vuln_report: Option<serde_json::Value>,
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
    /// The image a `build_image` step built.
    pub image_id: Option<String>,
    /// A `scan` step's report.
    pub vuln_report: Option<serde_json::Value>,
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
    /// The id (`sha256:…`) of the image the service's `build_image` step built, if any.
    pub image_id: Option<String>,
    /// The tag sluice gave that image (`sluice/<project>-<service>:<commit12>`).
    pub image_tag: Option<String>,
    /// The reports of the service's `scan` steps: a JSON object, step name -> report.
    pub vuln_report: Option<serde_json::Value>,
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
    /// The id (`sha256:…`) of the service's built image; None without a `build_image` step.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The tag sluice gave that image (`sluice/<project>-<service>:<commit12>`).
    #[serde(default)]
    pub image_tag: Option<String>,
    /// The reports of the service's `scan` steps (step name -> sluice-vuln's `Report`).
    #[serde(default)]
    pub vuln_report: Option<serde_json::Value>,
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

// ---- who may do what ----

/// The setting that holds the [`sluice_secrets::Kek::key_id`] every secret is wrapped under.
pub const SETTING_KEK_ID: &str = "secrets.kek_id";

/// A local user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    /// Unique name; also the `user:NAME` actor of the events the user causes.
    pub name: String,
    /// The Argon2id PHC string of the password (`$argon2id$...`), or empty for an account
    /// that cannot sign in with a password. Never the password itself, never serialised.
    #[serde(skip_serializing, default)]
    pub password_hash: String,
    /// Instance administrator: may do everything.
    pub admin: bool,
    /// A disabled user cannot sign in and their tokens do not work.
    pub disabled: bool,
    /// Where pages for this user are emailed (`sluice users set-email`), if anywhere.
    #[serde(default)]
    pub email: Option<String>,
    /// When the user was created.
    pub created_ms: i64,
    /// Last change of the password or the flags.
    pub updated_ms: i64,
}

/// A personal API token as stored: only the hash of the token, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    /// Stable id (minted by the caller), shown in listings and used to revoke.
    pub id: String,
    /// The owning user's name.
    pub user: String,
    /// A label chosen by the owner.
    pub name: String,
    /// [`sluice_auth::token::hash_token`] of the plaintext; unique. Never serialised.
    #[serde(skip_serializing, default)]
    pub hash: String,
    /// What the token may be used for.
    pub scopes: Vec<Scope>,
    /// When it was created.
    pub created_ms: i64,
    /// Expiry; `None` = never.
    pub expires_ms: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
    /// When it was last used (recorded at most about once a minute).
    pub last_used_ms: Option<i64>,
}

impl TokenRow {
    /// The record sluice-auth checks (revoked, expired, scopes).
    pub fn record(&self) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            user: self.user.clone(),
            hash: self.hash.clone(),
            scopes: self.scopes.clone(),
            expires_ms: self.expires_ms,
            revoked: self.revoked_ms.is_some(),
        }
    }
}

/// A browser session as stored: only the hash of the session id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// [`sluice_auth::token::hash_token`] of the session id (the cookie value).
    pub id_hash: String,
    /// The signed-in user's name.
    pub user: String,
    /// When the session started.
    pub created_ms: i64,
    /// When it ends unless extended.
    pub expires_ms: i64,
    /// When it was last used (recorded at most about once a minute).
    pub last_seen_ms: i64,
}

/// One approval of a gated deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRow {
    /// The approved deployment.
    pub deployment_id: i64,
    /// The approving user's name.
    pub user: String,
    /// When they approved.
    pub at_ms: i64,
    /// What they said (may be empty).
    pub comment: String,
}

impl ApprovalRow {
    /// The form sluice-auth's approval gate counts.
    pub fn approval(&self) -> Approval {
        Approval {
            by: self.user.clone(),
            at_ms: self.at_ms,
        }
    }
}

/// A new version of a secret to write; the store assigns the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret {
    /// Id of the new version's row (minted by the caller; bound into its ciphertexts).
    pub id: String,
    /// Project.
    pub project: String,
    /// Environment, or `None` for every environment of the project.
    pub environment: Option<String>,
    /// Name (see [`sluice_secrets::validate_name`]).
    pub name: String,
    /// When it is written.
    pub created_ms: i64,
    /// Who wrote it (`user:NAME`).
    pub created_by: String,
}

/// One stored version of a secret, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Its identity: id, project, environment, name, version (bound into the ciphertexts).
    pub secret: SecretRef,
    /// The wrapped data key and the encrypted value.
    pub sealed: Sealed,
    /// When this version was written.
    pub created_ms: i64,
    /// Who wrote it.
    pub created_by: String,
    /// When the secret was deleted (a tombstone), if it was.
    pub deleted_ms: Option<i64>,
}

/// What may be shown about a secret: everything but the sealed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// Id of the current version's row.
    pub id: String,
    /// Project.
    pub project: String,
    /// Environment, or `None` for every environment of the project.
    pub environment: Option<String>,
    /// Name.
    pub name: String,
    /// Current version.
    pub version: i64,
    /// Key id of the key-encryption key that wraps it.
    pub kek_id: String,
    /// When the current version was written.
    pub created_ms: i64,
    /// Who wrote it.
    pub created_by: String,
}
