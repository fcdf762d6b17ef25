//! Deploy targets (desired and stable release per service and environment) and deployments.
//!
//! Same rules as the rest of the store: every change commits with its events; at most one
//! running deployment per target is a rule checked inside the write transaction.

use sluice_core::{DeployStatus, NewEvent};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::rows::{Arg, SqlBuilder, to_json};
use crate::{
    Deployment, DeploymentFilter, DeploymentUpdate, NewDeployment, Result, Store, StoreError,
    Target, fill_subjects, insert_events, limit_or,
};

/// Deployments listed when no limit is given.
const DEFAULT_DEPLOYMENT_LIMIT: i64 = 50;

const TARGET_COLS: &str = "project, service, env, desired_version, stable_version, updated_ms";
const DEPLOY_COLS: &str = "id, project, service, env, version, from_version, strategy, status, \
     phase, reason, state, run_trigger, actor, created_ms, updated_ms, finished_ms";

fn target(row: &AnyRow) -> Result<Target> {
    Ok(Target {
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        desired_version: row.try_get("desired_version")?,
        stable_version: row.try_get("stable_version")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn deployment(row: &AnyRow) -> Result<Deployment> {
    let id: i64 = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let state: String = row.try_get("state")?;
    Ok(Deployment {
        id,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        version: row.try_get("version")?,
        from_version: row.try_get("from_version")?,
        strategy: row.try_get("strategy")?,
        status: DeployStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!("deployment {id} has unknown status `{status}`"))
        })?,
        phase: row.try_get("phase")?,
        reason: row.try_get("reason")?,
        state: serde_json::from_str(&state)
            .map_err(|e| StoreError::Corrupt(format!("state of deployment {id}: {e}")))?,
        trigger: row.try_get("run_trigger")?,
        actor: row.try_get("actor")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        finished_ms: row.try_get("finished_ms")?,
    })
}

impl Store {
    /// Sets the release a service should run in an environment, with its event. Creates the
    /// target on first use.
    pub async fn set_desired(
        &self,
        project: &str,
        service: &str,
        env: &str,
        version: i64,
        now_ms: i64,
        event: NewEvent,
    ) -> Result<Target> {
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO targets (project, service, env, desired_version, stable_version, updated_ms) \
             VALUES ($1, $2, $3, $4, NULL, $5) \
             ON CONFLICT (project, service, env) DO UPDATE SET desired_version = $4, updated_ms = $5 \
             RETURNING {TARGET_COLS}"
        )))
        .bind(project)
        .bind(service)
        .bind(env)
        .bind(version)
        .bind(now_ms)
        .fetch_one(w.conn())
        .await?;
        let t = target(&row)?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(t)
    }

    /// All targets (optionally of one project), ordered by project, service, environment.
    pub async fn targets(&self, project: Option<&str>) -> Result<Vec<Target>> {
        let mut q = SqlBuilder::new(&format!("SELECT {TARGET_COLS} FROM targets"));
        if let Some(p) = project {
            q.push(" WHERE project = ").arg(Arg::Text(p.to_owned()));
        }
        q.push(" ORDER BY project, service, env");
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(target).collect()
    }

    /// One target, if it exists.
    pub async fn target(&self, project: &str, service: &str, env: &str) -> Result<Option<Target>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TARGET_COLS} FROM targets WHERE project = $1 AND service = $2 AND env = $3"
        )))
        .bind(project)
        .bind(service)
        .bind(env)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(target).transpose()
    }

    /// Records a new running deployment with its events (subjects may use `{id}`). Refused
    /// with `Conflict` if the target already has a running deployment.
    pub async fn create_deployment(
        &self,
        d: NewDeployment,
        mut events: Vec<NewEvent>,
    ) -> Result<Deployment> {
        let state = to_json(&d.state, "deployment state")?;
        let mut w = self.write(true).await?;
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM deployments WHERE project = $1 AND service = $2 AND env = $3 AND status = $4",
        )
        .bind(d.project.as_str())
        .bind(d.service.as_str())
        .bind(d.env.as_str())
        .bind(DeployStatus::Running.as_str())
        .fetch_optional(w.conn())
        .await?;
        if let Some(id) = running {
            w.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "a running deployment ({id}) of {} in {}",
                d.service, d.env
            )));
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO deployments (project, service, env, version, from_version, strategy, status, \
             phase, reason, state, run_trigger, actor, created_ms, updated_ms, finished_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12, $12, NULL) \
             RETURNING {DEPLOY_COLS}"
        )))
        .bind(d.project.as_str())
        .bind(d.service.as_str())
        .bind(d.env.as_str())
        .bind(d.version)
        .bind(d.from_version)
        .bind(d.strategy.as_str())
        .bind(DeployStatus::Running.as_str())
        .bind(d.phase.as_str())
        .bind(state)
        .bind(d.trigger.as_str())
        .bind(d.actor.as_str())
        .bind(d.created_ms)
        .fetch_one(w.conn())
        .await?;
        let out = deployment(&row)?;
        fill_subjects(&mut events, out.id, None);
        for e in &mut events {
            if let Some(o) = e.payload.as_object_mut() {
                o.entry("deployment").or_insert(out.id.into());
            }
        }
        insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Updates a deployment (and, if asked, its target's stable version) with its events.
    pub async fn update_deployment(
        &self,
        u: DeploymentUpdate,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        let state = u
            .state
            .as_ref()
            .map(|s| to_json(s, "deployment state"))
            .transpose()?;
        let mut w = self.write(true).await?;
        // One statement: unset fields keep their stored values, and `finished_ms` is set
        // once, when the status first becomes terminal.
        let target: Option<(String, String, String)> = sqlx::query_as(
            "UPDATE deployments SET status = COALESCE($1, status), phase = COALESCE($2, phase), \
             reason = COALESCE($3, reason), state = COALESCE($4, state), updated_ms = $5, \
             finished_ms = CASE WHEN COALESCE($1, status) = $6 THEN NULL \
             ELSE COALESCE(finished_ms, $5) END \
             WHERE id = $7 RETURNING project, service, env",
        )
        .bind(u.status.map(DeployStatus::as_str))
        .bind(u.phase)
        .bind(u.reason)
        .bind(state)
        .bind(u.now_ms)
        .bind(DeployStatus::Running.as_str())
        .bind(u.id)
        .fetch_optional(w.conn())
        .await?;
        let Some((project, service, env)) = target else {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("deployment {}", u.id)));
        };
        if let Some(stable) = u.stable_version {
            sqlx::query(
                "INSERT INTO targets (project, service, env, desired_version, stable_version, updated_ms) \
                 VALUES ($1, $2, $3, NULL, $4, $5) \
                 ON CONFLICT (project, service, env) DO UPDATE SET stable_version = $4, updated_ms = $5",
            )
            .bind(project)
            .bind(service)
            .bind(env)
            .bind(stable)
            .bind(u.now_ms)
            .execute(w.conn())
            .await?;
        }
        insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(())
    }

    /// One deployment.
    pub async fn deployment(&self, id: i64) -> Result<Deployment> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DEPLOY_COLS} FROM deployments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        match row {
            Some(r) => deployment(&r),
            None => Err(StoreError::NotFound(format!("deployment {id}"))),
        }
    }

    /// Deployments, newest first, filtered.
    pub async fn deployments(&self, f: &DeploymentFilter) -> Result<Vec<Deployment>> {
        let mut q = SqlBuilder::new(&format!(
            "SELECT {DEPLOY_COLS} FROM deployments WHERE 1 = 1"
        ));
        for (col, val) in [
            (" AND project = ", &f.project),
            (" AND service = ", &f.service),
            (" AND env = ", &f.env),
        ] {
            if let Some(v) = val {
                q.push(col).arg(Arg::Text(v.clone()));
            }
        }
        if f.running {
            q.push(" AND status = ")
                .arg(Arg::Text(DeployStatus::Running.as_str().to_owned()));
        }
        q.push(" ORDER BY id DESC LIMIT ").arg(Arg::Int(
            limit_or(f.limit, DEFAULT_DEPLOYMENT_LIMIT).min(10_000),
        ));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(deployment).collect()
    }
}
