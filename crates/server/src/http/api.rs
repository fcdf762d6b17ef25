//! JSON endpoints under `/api/v1`. Bodies and queries are parsed into typed requests; a
//! malformed one gets the API's error shape with a hint, never axum's plain-text default.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::{EventKind, NewEvent, RunStatus};
use sluice_store::{EventFilter, LogFilter, ReleaseFilter, RunFilter};

use super::{ApiError, body, query};
use crate::engine::access::Caller;
use crate::engine::{Engine, RunRequest};

type Api = Result<Response, ApiError>;

fn run_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run `{s}` not found"),
        )
        .hint("run ids are positive integers; list them with GET /api/v1/runs")
    })
}

pub(super) async fn list_projects(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Api {
    let mut projects = e.store.projects().await?;
    projects.retain(|p| e.may_view(&caller, &p.name));
    Ok(Json(projects).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddProject {
    source: String,
    name: Option<String>,
    poll_interval_s: Option<i64>,
    webhook_secret: Option<String>,
}

pub(super) async fn add_project(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    req: Result<Json<AddProject>, JsonRejection>,
) -> Api {
    let req = body(req)?;
    if req.source.trim().is_empty() {
        return Err(
            ApiError::bad_request("`source` is empty").hint("give a local path or a git URL")
        );
    }
    if let Some(p) = req.poll_interval_s
        && !(0..=86_400).contains(&p)
    {
        return Err(ApiError::bad_request(
            "`poll_interval_s` must be between 0 (off) and 86400",
        ));
    }
    let p = e
        .add_project(
            &req.source,
            req.name,
            req.poll_interval_s,
            req.webhook_secret,
            &caller.actor(),
        )
        .await?;
    let base = e.base_url();
    let body = json!({
        "project": p,
        "webhook_secret": p.webhook_secret,
        "webhooks": {
            "github": format!("{base}/hooks/github/{}", p.name),
            "gitlab": format!("{base}/hooks/gitlab/{}", p.name),
            "bitbucket": format!("{base}/hooks/bitbucket/{}", p.name),
            "generic": format!("{base}/hooks/generic/{}", p.name),
        },
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn get_project(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> Api {
    let p = e.store.project(&name).await?;
    let heads = e.store.branch_heads(&name).await?;
    Ok(Json(json!({ "project": p, "branches": heads })).into_response())
}

pub(super) async fn remove_project(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Api {
    e.store
        .remove_project(
            &name,
            NewEvent::new(
                EventKind::ProjectRemoved,
                caller.actor(),
                format!("project/{name}"),
            )
            .project(&name),
        )
        .await?;
    e.hub.bump();
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn sync_project(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Api {
    let runs = e.sync_project(&name, "api", &caller.actor()).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRun {
    env: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
    services: Option<Vec<String>>,
    /// Run services even if they did not change (default true for manual runs).
    force: Option<bool>,
    /// Hold the request until the run finishes (at most `timeout_s`).
    #[serde(default)]
    wait: bool,
    timeout_s: Option<u64>,
}

pub(super) async fn create_run(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    req: Result<Json<CreateRun>, JsonRejection>,
) -> Api {
    let req = body(req)?;
    let run = e
        .request_run(RunRequest {
            project: name,
            env: req.env,
            branch: req.branch,
            commit: req.commit,
            services: req.services,
            force: req.force.unwrap_or(true),
            trigger: "manual".into(),
            actor: caller.actor(),
            rerun_of: None,
        })
        .await?;
    if req.wait {
        e.wait_run(
            run.id,
            Duration::from_secs(req.timeout_s.unwrap_or(3600).min(86_400)),
        )
        .await?;
        return Ok((StatusCode::CREATED, Json(run_view(&e, run.id).await?)).into_response());
    }
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsQuery {
    project: Option<String>,
    env: Option<String>,
    status: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

pub(super) async fn list_runs(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("unknown status `{s}`")).hint(
                RunStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?),
    };
    let mut runs = e
        .store
        .runs(&RunFilter {
            project: q.project,
            env: q.env,
            status,
            before_id: q.before,
            limit: q.limit.unwrap_or(50).clamp(1, 500),
        })
        .await?;
    runs.retain(|r| e.may_view(&caller, &r.project));
    Ok(Json(runs).into_response())
}

/// A run with its steps, as the API and UI show it.
pub(super) async fn run_view(e: &Engine, id: i64) -> Result<Value, ApiError> {
    let run = e.store.run(id).await?;
    let steps = e.store.steps(id).await?;
    let releases = e
        .store
        .releases(&ReleaseFilter {
            project: Some(run.project.clone()),
            service: None,
            limit: 500,
        })
        .await?
        .into_iter()
        .filter(|r| r.run_id == id)
        .collect::<Vec<_>>();
    let mut v = serde_json::to_value(&run).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("steps".into(), json!(steps));
        o.insert("releases".into(), json!(releases));
    }
    Ok(v)
}

pub(super) async fn get_run(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> Api {
    Ok(Json(run_view(&e, run_id(&id)?).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    timeout_s: Option<u64>,
}

pub(super) async fn wait_run(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let id = run_id(&id)?;
    e.wait_run(id, Duration::from_secs(q.timeout_s.unwrap_or(30).min(3600)))
        .await?;
    Ok(Json(run_view(&e, id).await?).into_response())
}

pub(super) async fn cancel_run(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Api {
    let run = e.cancel_run(run_id(&id)?, &caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    step: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

pub(super) async fn get_logs(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let id = run_id(&id)?;
    e.store.run(id).await?;
    let lines = e
        .store
        .logs(&LogFilter {
            run_id: id,
            step: q.step,
            after: q.after.unwrap_or(0),
            limit: q.limit.unwrap_or(10_000).clamp(1, 100_000),
        })
        .await?;
    Ok(Json(lines).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleasesQuery {
    project: Option<String>,
    service: Option<String>,
    limit: Option<i64>,
}

pub(super) async fn list_releases(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ReleasesQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let mut r = e
        .store
        .releases(&ReleaseFilter {
            project: q.project,
            service: q.service,
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
        })
        .await?;
    r.retain(|r| e.may_view(&caller, &r.project));
    Ok(Json(r).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    pub(super) after: Option<i64>,
    pub(super) limit: Option<i64>,
    pub(super) project: Option<String>,
    /// Comma-separated kinds.
    pub(super) kind: Option<String>,
    pub(super) subject: Option<String>,
}

impl EventsQuery {
    pub(super) fn filter(self) -> Result<EventFilter, ApiError> {
        let mut kinds = Vec::new();
        for k in self
            .kind
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
        {
            kinds.push(EventKind::parse(k).ok_or_else(|| {
                ApiError::bad_request(format!("unknown event kind `{k}`"))
                    .hint("see the event kinds in docs/events.md")
            })?);
        }
        Ok(EventFilter {
            after: self.after.unwrap_or(0).max(0),
            limit: self.limit.unwrap_or(1000).clamp(1, 10_000),
            project: self.project,
            kinds,
            subject: self.subject,
            since_ms: None,
        })
    }
}

pub(super) async fn list_events(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Api {
    let f = query(q)?.filter()?;
    let mut events = e.store.events(&f).await?;
    events.retain(|ev| e.may_see_event(&caller, ev.project.as_deref()));
    Ok(Json(events).into_response())
}
