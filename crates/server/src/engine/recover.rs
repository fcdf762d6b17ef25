//! Start-up recovery after a crash or `kill -9`.
//!
//! The policy (documented in `docs/operations.md`):
//! 1. Every process a previous server of this data directory started for a step is found by
//!    its `SLUICE_STEP_TOKEN` and its process group is killed, so no orphan survives.
//! 2. Every run still `queued` or `running` is marked `interrupted`; its unfinished steps too.
//! 3. With `interrupted_runs: rerun` (the default) a new run of the same commit, services and
//!    environment is started once, linked by `rerun_of`. A run that was itself such a re-run
//!    is not re-run again, so a commit that crashes the server cannot loop.
//! 4. Releases are never duplicated: the re-run's release is refused by the store if the
//!    interrupted run had already recorded one for that service and commit.

use std::sync::Arc;

use serde_json::json;
use sluice_core::{EventKind, NewEvent, RunStatus, StepStatus};
use sluice_store::StepUpdate;

use super::exec::ev;
use super::{Engine, EngineError, RunRequest, now_ms};
use crate::config::InterruptedPolicy;

impl Engine {
    /// Applies the recovery policy; call once at start-up, before serving.
    pub async fn recover(self: &Arc<Self>) -> Result<(), EngineError> {
        let killed = sluice_runner::kill_orphans(&self.token_prefix);
        if !killed.is_empty() {
            self.record(vec![
                NewEvent::new(EventKind::OrphansKilled, "system", "server")
                    .payload(json!({ "pids": killed })),
            ])
            .await?;
        }
        // Containers of steps a crashed server was running (a daemon that is not there has
        // none to remove).
        if self.docker.ping().await.is_ok()
            && let Err(e) = self.remove_step_containers(true).await
        {
            tracing::warn!(error = %e, "removing leftover step containers failed");
        }
        for run in self.store.unfinished_runs().await? {
            for step in self.store.steps(run.id).await? {
                if !step.status.is_terminal() {
                    let status = if step.status == StepStatus::Running {
                        StepStatus::Interrupted
                    } else {
                        StepStatus::Skipped
                    };
                    self.store
                        .update_step(
                            StepUpdate {
                                run_id: run.id,
                                name: step.name.clone(),
                                status: Some(status),
                                pgid: Some(None),
                                finished_ms: Some(now_ms()),
                                ..Default::default()
                            },
                            vec![],
                        )
                        .await?;
                }
            }
            let rerun =
                self.config.interrupted_runs == InterruptedPolicy::Rerun && run.trigger != "rerun";
            self.store
                .set_run_status(
                    run.id,
                    RunStatus::Interrupted,
                    now_ms(),
                    vec![ev(
                        EventKind::RunInterrupted,
                        &run,
                        json!({
                            "policy": if rerun { "rerun" } else { "fail" },
                            "was": run.status,
                        }),
                    )],
                )
                .await?;
            if rerun {
                let project = match self.store.project(&run.project).await {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                let mirror = self.mirror(&project).await?;
                let req = RunRequest {
                    project: run.project.clone(),
                    env: Some(run.env.clone()),
                    branch: Some(run.branch.clone()),
                    commit: Some(run.commit.clone()),
                    services: Some(run.services.clone()),
                    force: true,
                    trigger: "rerun".into(),
                    actor: "system".into(),
                    rerun_of: Some(run.id),
                };
                match self.plan_run(&mirror, req, false).await {
                    Ok(Some(new_run)) => self.start_run(new_run),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(run = run.id, error = %e, "could not re-run an interrupted run")
                    }
                }
            }
        }
        self.hub.bump();
        Ok(())
    }
}
