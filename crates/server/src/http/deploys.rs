//! Deploy endpoints: request a deploy, a rollback or a promotion (each changes a target's
//! desired release; the controller converges), control a running deployment, and read the
//! status matrix and the deployment history with the decisions and figures behind them.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use sluice_store::{DeploymentFilter, EventFilter};

use sluice_auth::Action;

use super::{ApiError, body, query};
use crate::engine::Engine;
use crate::engine::access::Caller;

type Api = Result<Response, ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployBody {
    project: Option<String>,
    service: String,
    env: String,
    version: Option<i64>,
}

/// `POST /api/v1/deployments`: deploy a release (default: the newest) to an environment.
pub(super) async fn deploy(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<DeployBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let project = e.project_of(b.project.as_deref(), &b.service).await?;
    e.authorize_env(&caller, Action::Deploy, &project, &b.env)
        .await?;
    let t = e
        .request_deploy(
            &project,
            &b.service,
            &b.env,
            b.version,
            "manual",
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "target": t }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    project: Option<String>,
    service: String,
    env: String,
    to: Option<i64>,
}

/// `POST /api/v1/rollbacks`: go back to release `to`, or to the one before the current.
pub(super) async fn rollback(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<RollbackBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let project = e.project_of(b.project.as_deref(), &b.service).await?;
    e.authorize_env(&caller, Action::Rollback, &project, &b.env)
        .await?;
    let t = e
        .rollback(&project, &b.service, &b.env, b.to, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "target": t }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteBody {
    project: Option<String>,
    service: String,
    from: String,
    to: String,
}

/// `POST /api/v1/promotions`: deploy to `to` the release that serves in `from`.
pub(super) async fn promote(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<PromoteBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let project = e.project_of(b.project.as_deref(), &b.service).await?;
    e.authorize_env(&caller, Action::Promote, &project, &b.to)
        .await?;
    let t = e
        .promote(&project, &b.service, &b.from, &b.to, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "target": t }))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    project: Option<String>,
    service: Option<String>,
    env: Option<String>,
    #[serde(default)]
    running: bool,
    limit: Option<i64>,
}

/// `GET /api/v1/deployments`: history, newest first.
pub(super) async fn list(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let d = e
        .store
        .deployments(&DeploymentFilter {
            project: q.project,
            service: q.service,
            env: q.env,
            running: q.running,
            limit: q.limit.unwrap_or(50).clamp(1, 1000),
        })
        .await?;
    let d: Vec<_> = d
        .into_iter()
        .filter(|d| e.may_view(&caller, &d.project))
        .collect();
    Ok(Json(d).into_response())
}

pub(super) fn deployment_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("deployment `{s}` not found"),
        )
        .hint("list deployments with GET /api/v1/deployments")
    })
}

/// `GET /api/v1/deployments/{id}`: one deployment with its decisions (the events on it).
pub(super) async fn show(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> Api {
    let id = deployment_id(&id)?;
    let d = e.store.deployment(id).await?;
    let events = e
        .store
        .events(&EventFilter {
            subject: Some(format!("deployment/{id}")),
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let gate = if crate::engine::gate::awaiting(&d) {
        Some(e.gate(&d).await?)
    } else {
        None
    };
    let approvals = e.store.approvals(id).await?;
    Ok(
        Json(json!({ "deployment": d, "events": events, "gate": gate, "approvals": approvals }))
            .into_response(),
    )
}

/// The route of a command on a running deployment:
/// `POST /api/v1/deployments/{id}/{pause|resume|abort|promote}`.
pub(super) fn command_route(cmd: &'static str) -> MethodRouter<Arc<Engine>> {
    post(
        move |State(e): State<Arc<Engine>>,
              Path(id): Path<String>,
              Extension(caller): Extension<Caller>| async move {
            let id = deployment_id(&id)?;
            e.deployment_command(id, cmd, &caller.actor()).await?;
            Ok::<_, ApiError>(
                (
                    StatusCode::ACCEPTED,
                    Json(json!({ "deployment": id, "command": cmd })),
                )
                    .into_response(),
            )
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveBody {
    comment: Option<String>,
}

/// `POST /api/v1/deployments/{id}/approve`: approve a deployment waiting for approvals.
pub(super) async fn approve(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    b: Option<Json<ApproveBody>>,
) -> Api {
    let id = deployment_id(&id)?;
    let comment = b.and_then(|Json(b)| b.comment).unwrap_or_default();
    let gate = e.approve(id, &caller, &comment).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "deployment": id, "gate": gate })),
    )
        .into_response())
}

/// `GET /api/v1/status`: every target with its desired and serving release, the running
/// deployment, and its instances.
pub(super) async fn status(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Api {
    let rows: Vec<_> = e
        .status()
        .await?
        .into_iter()
        .filter(|r| {
            r["project"]
                .as_str()
                .is_some_and(|p| e.may_view(&caller, p))
        })
        .collect();
    Ok(Json(rows).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    /// Byte offset to read from; default: the last 64 KiB.
    offset: Option<u64>,
}

/// `GET /api/v1/instances/{id}/log?offset=N`: an instance's output from a byte offset,
/// `{offset, text}` where `offset` is where the next read starts (for `sluice logs -f`).
pub(super) async fn instance_log(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    use sluice_runtime::Runtime;
    if sluice_runtime::validate_id(&id).is_err() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("instance `{id}` not found"),
        ));
    }
    let path = e.fleet.runtime.log_path(&id);
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        let start = q.offset.unwrap_or(len.saturating_sub(64 * 1024)).min(len);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.take(1024 * 1024).read_to_end(&mut buf)?;
        Ok((
            start + buf.len() as u64,
            String::from_utf8_lossy(&buf).into_owned(),
        ))
    })
    .await
    .map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        )
    })?;
    match result {
        Ok((offset, text)) => Ok(Json(
            json!({ "instance": id, "offset": offset, "text": e.mask(&text) }),
        )
        .into_response()),
        Err(_) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("instance `{id}` has no log"),
        )
        .hint("list instances with GET /api/v1/status")),
    }
}
