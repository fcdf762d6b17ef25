//! Gates on protected environments: a manual deploy (also a rollback or a promotion) to an
//! environment with `approvals` or a `wait_timer` starts as a deployment in the phase
//! [`AWAITING`]: recorded, visible, nothing started. The controller checks the gate on
//! every tick ([`Engine::gate`]); when it opens, the rollout starts from that moment. A
//! deploy from a pipeline on the environment's own branch is not gated (the branch is the
//! control). Approvals come from other people than the requester, with the releaser role
//! there (`sluice approve`); the pure counting is `sluice_auth::approval::evaluate`.

use serde_json::json;
use sluice_auth::{Gate, approval};
use sluice_core::{EventKind, NewEvent};
use sluice_store::Deployment;

use super::access::Caller;
use super::{Engine, EngineError, now_ms};

/// The phase of a deployment waiting at its gate.
pub const AWAITING: &str = "awaiting_approval";

/// Whether a deployment is waiting at its gate now.
pub fn awaiting(d: &Deployment) -> bool {
    d.phase == AWAITING && !d.status.is_terminal()
}

/// The name in a `user:NAME` actor.
fn user_of(actor: &str) -> &str {
    actor.strip_prefix("user:").unwrap_or(actor)
}

/// Triggers that go through the gate (pipelines of the environment's branch do not).
pub fn gated_trigger(trigger: &str) -> bool {
    !matches!(trigger, "pipeline" | "controller" | "system")
}

impl Engine {
    /// The gate of a deployment waiting in [`AWAITING`], now.
    pub async fn gate(&self, d: &Deployment) -> Result<Gate, EngineError> {
        let release = self
            .release_of(&d.project, &d.service, Some(d.version))
            .await?;
        let policy = self
            .env_policy(&d.project, &d.env, Some(&release.commit))
            .await?;
        let approvals: Vec<_> = self
            .store
            .approvals(d.id)
            .await?
            .iter()
            .map(|a| a.approval())
            .collect();
        Ok(approval::evaluate(
            &policy.gate,
            user_of(&d.actor),
            d.created_ms,
            &approvals,
            now_ms(),
        ))
    }

    /// Records `caller`'s approval of a waiting deployment and returns the gate after it.
    /// Refused for one's own deployment, for a deployment not waiting, and twice. Whether
    /// the caller may approve there at all (releaser) is the route's decision
    /// (`Access::Needs(Approve, On::Deployment)`), made before this is called.
    pub async fn approve(
        &self,
        id: i64,
        caller: &Caller,
        comment: &str,
    ) -> Result<Gate, EngineError> {
        let d = self.store.deployment(id).await?;
        let Some(user) = caller.user.as_deref() else {
            return Err(EngineError::Unauthorized("sign in to approve".into()));
        };
        if !awaiting(&d) {
            return Err(EngineError::State(format!(
                "deployment {id} is not waiting for approval (it is {} in phase {})",
                d.status, d.phase
            )));
        }
        if user == user_of(&d.actor) {
            return Err(EngineError::Forbidden(format!(
                "deployment {id} was requested by {user}; approvals must come from someone else"
            )));
        }
        self.store
            .approve(
                id,
                user,
                now_ms(),
                comment,
                NewEvent::new(
                    EventKind::DeploymentApproved,
                    caller.actor(),
                    format!("deployment/{id}"),
                )
                .project(&d.project)
                .payload(json!({"deployment": id, "env": d.env, "comment": comment})),
            )
            .await?;
        self.hub.bump();
        self.wake_controller();
        self.gate(&d).await
    }
}
