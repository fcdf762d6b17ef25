//! The input model: the facts about production deploys that the server extracts from its
//! event log. Serde types, so the server can also log or export them.
//!
//! How a deploy counts (the decision documented in `docs/dora.md`):
//!
//! | deploy | a deployment? | a failure? | its changes get a lead time? |
//! |---|---|---|---|
//! | `succeeded`, no `failure` | yes | no | yes |
//! | `failure` of any kind | yes | yes | only if `succeeded` (e.g. an incident later fixed forward) |
//! | not `succeeded`, no `failure` | no: it never reached production and changed nothing | no | no |
//!
//! The third row is a deploy that ended before any production traffic reached the new
//! release (a blue-green release that never became ready, a cancelled deploy, a first deploy
//! whose instances never started): users saw nothing of it, so DORA's "deployment to
//! production" did not happen. Its changes are measured when a later deploy brings them.

use serde::{Deserialize, Serialize};

/// One deployment of a service to a production environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProdDeploy {
    /// The deployment's id in the store.
    pub id: i64,
    /// The project the service belongs to.
    pub project: String,
    /// The service deployed.
    pub service: String,
    /// When the deployment started (milliseconds since the Unix epoch, UTC).
    pub started_at_ms: i64,
    /// When the deployment finished, successfully or not. The deploy belongs to the window
    /// or bucket that holds this instant.
    pub finished_at_ms: i64,
    /// The release reached production and stayed up after the deployment finished.
    pub succeeded: bool,
    /// The commits this deploy brought to production for the first time (computed by the
    /// server). A commit brought by a deploy that was rolled back should be listed again by
    /// the deploy that brings it back; when a commit appears in several deploys, its lead time
    /// ends at the earliest `succeeded` one.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// The failure in production this deploy caused, if any.
    #[serde(default)]
    pub failure: Option<Failure>,
}

impl ProdDeploy {
    /// Whether this deploy counts as a deployment to production: it succeeded, or it caused a
    /// failure in production (so it did reach production).
    pub fn reached_production(&self) -> bool {
        self.succeeded || self.failure.is_some()
    }

    /// Whether this deploy counts as a failed deployment (change failure rate numerator).
    pub fn is_failure(&self) -> bool {
        self.failure.is_some()
    }
}

/// One commit a deploy brought to production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The commit id (hash); changes are matched across deploys by this string.
    pub commit: String,
    /// When the commit was made (committer time, milliseconds since the Unix epoch, UTC).
    pub committed_at_ms: i64,
}

/// A failure in production caused by a deployment, which required immediate intervention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// How the failure showed.
    pub kind: FailureKind,
    /// When the failure began: the rollback was decided or requested, the incident was
    /// opened, the deployment failed in production.
    pub at_ms: i64,
    /// When service was restored: the rollback finished, the next good deploy finished, or
    /// the incident was resolved. `None` while it is not restored.
    #[serde(default)]
    pub restored_at_ms: Option<i64>,
}

/// How a deployment's failure in production showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The deployment finished and was then rolled back (by hand or automatically).
    RolledBack,
    /// An incident was linked to the deployment (fixed by a hotfix, a rollback or otherwise).
    Incident,
    /// The deployment failed while production traffic already reached the new release (a
    /// canary failing its analysis, a release crashing after the switch) and was rolled back
    /// by the controller.
    FailedDeploy,
}
