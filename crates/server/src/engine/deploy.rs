//! Deploy intents: what release each service should run in each environment.
//!
//! Everything here only changes the *desired* release of a target (with its event); the
//! deploy controller converges the runtime to it. A deploy requested while another deployment
//! of the same target is running is queued by design: the desired release is recorded at once
//! and the controller starts it when the running deployment has finished (see
//! `docs/deploys.md`).

use serde_json::json;
use sluice_core::{DeployStatus, EventKind, NewEvent};
use sluice_store::{DeploymentFilter, Release, ReleaseFilter, Target};

use super::{Engine, EngineError, bad, now_ms};

impl Engine {
    /// The project a service belongs to when the caller did not say: the only project with
    /// a release of that service.
    pub async fn project_of(
        &self,
        project: Option<&str>,
        service: &str,
    ) -> Result<String, EngineError> {
        if let Some(p) = project {
            self.store.project(p).await?;
            return Ok(p.to_string());
        }
        let mut found: Vec<String> = Vec::new();
        for p in self.store.projects().await? {
            let rels = self
                .store
                .releases(&ReleaseFilter {
                    project: Some(p.name.clone()),
                    service: Some(service.to_string()),
                    limit: 1,
                })
                .await?;
            if !rels.is_empty() {
                found.push(p.name);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(EngineError::NotFound(format!(
                "a release of service `{service}`"
            ))),
            _ => Err(bad(
                format!(
                    "service `{service}` exists in several projects: {}",
                    found.join(", ")
                ),
                Some("name the project with --project".into()),
            )),
        }
    }

    /// A release of a service: version `version`, or the newest.
    pub async fn release_of(
        &self,
        project: &str,
        service: &str,
        version: Option<i64>,
    ) -> Result<Release, EngineError> {
        let found = match version {
            Some(v) => self.store.release_version(project, service, v).await?,
            None => self
                .store
                .releases(&ReleaseFilter {
                    project: Some(project.to_string()),
                    service: Some(service.to_string()),
                    limit: 1,
                })
                .await?
                .pop(),
        };
        found.ok_or_else(|| match version {
            Some(v) => EngineError::NotFound(format!("release {v} of service `{service}`")),
            None => EngineError::NotFound(format!("a release of service `{service}`")),
        })
    }

    /// Records that `service` should run `release` in `env` (a pipeline, `sluice deploy`,
    /// a rollback or a promotion). Checks that the release exists, that its `sluice.yml`
    /// deploys the service to that environment, and that its artifact is still stored.
    pub async fn request_deploy(
        &self,
        project: &str,
        service: &str,
        env: &str,
        version: Option<i64>,
        trigger: &str,
        actor: &str,
    ) -> Result<Target, EngineError> {
        let release = self.release_of(project, service, version).await?;
        let mirror = self.mirror_of(project).await?;
        let (_, parsed) = self.config_at(&mirror, project, &release.commit).await?;
        let config = parsed.as_ref().as_ref().map_err(|e| {
            bad(
                format!("sluice.yml of release {} is invalid: {e}", release.version),
                None,
            )
        })?;
        if !config.environments.iter().any(|e| e.name == env) {
            return Err(bad(
                format!("environment `{env}` is not defined in sluice.yml"),
                Some(format!(
                    "defined: {}",
                    config
                        .environments
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
        if config.deploy_target(service, env).is_none() {
            return Err(bad(
                format!(
                    "service `{service}` is not deployed to `{env}` in release {}'s sluice.yml",
                    release.version
                ),
                Some("add the environment under the service's `deploy.environments`".into()),
            ));
        }
        if release.artifact_pruned
            || !self
                .paths
                .artifacts
                .join(format!("{}.tar", release.artifact_sha256))
                .is_file()
        {
            return Err(bad(
                format!(
                    "the artifact of release {} of `{service}` is no longer stored",
                    release.version
                ),
                Some(
                    "deploy a newer release, or raise `keep_artifacts` in the server configuration"
                        .into(),
                ),
            ));
        }
        let before = self.store.target(project, service, env).await?;
        let from = before.as_ref().and_then(|t| t.desired_version);
        let target = self
            .store
            .set_desired(
                project,
                service,
                env,
                release.version,
                now_ms(),
                NewEvent::new(
                    EventKind::TargetDesired,
                    actor,
                    format!("target/{project}/{service}/{env}"),
                )
                .project(project)
                .payload(json!({
                    "service": service, "env": env, "version": release.version,
                    "from": from, "trigger": trigger, "commit": release.commit,
                })),
            )
            .await?;
        self.hub.bump();
        self.wake_controller();
        Ok(target)
    }

    /// Rolls a service back in an environment: to release `to`, or to the release that ran
    /// there before the current one.
    pub async fn rollback(
        &self,
        project: &str,
        service: &str,
        env: &str,
        to: Option<i64>,
        actor: &str,
    ) -> Result<Target, EngineError> {
        let target = self
            .store
            .target(project, service, env)
            .await?
            .ok_or_else(|| {
                EngineError::NotFound(format!("a deployment of `{service}` in `{env}`"))
            })?;
        // Rolling back while a deployment replaces a release, to that release, is an abort of
        // the deployment: blue-green switches straight back to the warm old release.
        let running = self
            .store
            .deployments(&DeploymentFilter {
                project: Some(project.to_string()),
                service: Some(service.to_string()),
                env: Some(env.to_string()),
                running: true,
                limit: 1,
            })
            .await?
            .pop();
        if let Some(d) = running
            && d.from_version.is_some()
            && (to.is_none() || to == d.from_version)
        {
            self.deployment_command(d.id, "abort", actor).await?;
            return Ok(target);
        }
        let version = match to {
            Some(v) => v,
            None => {
                let current = target.stable_version.or(target.desired_version);
                let history = self
                    .store
                    .deployments(&DeploymentFilter {
                        project: Some(project.to_string()),
                        service: Some(service.to_string()),
                        env: Some(env.to_string()),
                        running: false,
                        limit: 1000,
                    })
                    .await?;
                history
                    .iter()
                    .filter(|d| d.status == DeployStatus::Succeeded && Some(d.version) != current)
                    .map(|d| d.version)
                    .next()
                    .ok_or_else(|| {
                        bad(
                            format!("no earlier release of `{service}` has run in `{env}`"),
                            Some("name one with --to VERSION (see `sluice releases`)".into()),
                        )
                    })?
            }
        };
        self.request_deploy(project, service, env, Some(version), "rollback", actor)
            .await
    }

    /// Deploys to `to` exactly the release that serves in `from`.
    pub async fn promote(
        &self,
        project: &str,
        service: &str,
        from: &str,
        to: &str,
        actor: &str,
    ) -> Result<Target, EngineError> {
        let source = self
            .store
            .target(project, service, from)
            .await?
            .and_then(|t| t.stable_version)
            .ok_or_else(|| {
                bad(
                    format!("`{service}` has no release serving in `{from}` to promote"),
                    Some(format!(
                        "deploy it to `{from}` first, or use `sluice deploy --release`"
                    )),
                )
            })?;
        self.request_deploy(project, service, to, Some(source), "promote", actor)
            .await
    }
}
