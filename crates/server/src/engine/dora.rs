//! The facts behind the DORA metrics: every deployment to a project's production
//! environment (its last environment, in promotion order), the commits each brought to
//! production for the first time (from git), and whether it failed: rolled back or failed by
//! itself, or named as the suspected cause of an incident. `sluice-dora` computes the
//! metrics from these; definitions are in docs/dora.md.

use std::collections::HashMap;

use sluice_core::DeployStatus;
use sluice_dora::{Change, Failure, FailureKind, ProdDeploy};
use sluice_store::{DeploymentFilter, IncidentFilter};

use super::{Engine, EngineError};

/// Deployments per project read at most.
const MAX_DEPLOYMENTS: i64 = 5000;
/// Commits per deployment looked at most (a first deploy of a long history).
const MAX_COMMITS: usize = 1000;

impl Engine {
    /// The production deployments of `projects`, oldest first.
    pub async fn prod_deploys(&self, projects: &[String]) -> Result<Vec<ProdDeploy>, EngineError> {
        let mut out = Vec::new();
        for project in projects {
            let Some(config) = self.production_config(project).await else {
                continue;
            };
            let Some(prod) = config.environments.last().map(|e| e.name.clone()) else {
                continue;
            };
            let mut deployments = self
                .store
                .deployments(&DeploymentFilter {
                    project: Some(project.clone()),
                    env: Some(prod),
                    limit: MAX_DEPLOYMENTS,
                    ..DeploymentFilter::default()
                })
                .await?;
            deployments.sort_by_key(|d| d.id);
            // Incidents that name a deployment as their suspected cause.
            let incidents = self
                .store
                .incidents(&IncidentFilter {
                    projects: Some(vec![project.clone()]),
                    limit: 10_000,
                    ..IncidentFilter::default()
                })
                .await?;
            let mut blamed: HashMap<i64, (i64, Option<i64>)> = HashMap::new();
            for i in &incidents {
                if let Some(d) = i
                    .suspected_release
                    .as_ref()
                    .and_then(|s| s["deployment"].as_i64())
                {
                    let e = blamed.entry(d).or_insert((i.opened_ms, i.resolved_ms));
                    if i.opened_ms < e.0 {
                        *e = (i.opened_ms, i.resolved_ms);
                    }
                }
            }
            let mirror = self.mirror_of(project).await.ok();
            // The commit each service last ran in production, to find what a deploy adds.
            let mut live: HashMap<String, String> = HashMap::new();
            for (n, d) in deployments.iter().enumerate() {
                if d.status == DeployStatus::Running {
                    continue;
                }
                let commit = self
                    .store
                    .release_version(project, &d.service, d.version)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.commit);
                let mut changes = Vec::new();
                if let (Some(m), Some(c)) = (&mirror, &commit) {
                    let base = live.get(&d.service).map(String::as_str);
                    if let Ok(commits) = m.commits_between(base, c, MAX_COMMITS).await {
                        changes = commits
                            .into_iter()
                            .map(|(commit, t)| Change {
                                commit,
                                committed_at_ms: t * 1000,
                            })
                            .collect();
                    }
                }
                let finished = d.finished_ms.unwrap_or(d.updated_ms);
                let failure = match d.status {
                    DeployStatus::RolledBack => Some(Failure {
                        kind: FailureKind::RolledBack,
                        at_ms: d.created_ms,
                        restored_at_ms: Some(finished),
                    }),
                    DeployStatus::Failed => Some(Failure {
                        kind: FailureKind::FailedDeploy,
                        at_ms: d.created_ms,
                        // Restored when a later deployment of the service succeeded.
                        restored_at_ms: deployments[n + 1..]
                            .iter()
                            .find(|x| x.service == d.service && x.status == DeployStatus::Succeeded)
                            .and_then(|x| x.finished_ms),
                    }),
                    _ => blamed.get(&d.id).map(|(opened, resolved)| Failure {
                        kind: FailureKind::Incident,
                        at_ms: *opened,
                        restored_at_ms: *resolved,
                    }),
                };
                let succeeded = d.status == DeployStatus::Succeeded;
                if succeeded && let Some(c) = commit {
                    live.insert(d.service.clone(), c);
                }
                out.push(ProdDeploy {
                    id: d.id,
                    project: project.clone(),
                    service: d.service.clone(),
                    started_at_ms: d.created_ms,
                    finished_at_ms: finished,
                    succeeded,
                    changes,
                    failure,
                });
            }
        }
        out.sort_by_key(|d| d.started_at_ms);
        Ok(out)
    }
}
