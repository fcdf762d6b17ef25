//! The incident API: list and show incidents (with their alerts and timeline), acknowledge
//! and resolve them, list alerts and their noise figures per rule, manage integrations,
//! silences and on-call overrides, show who is on call; and
//! the signed acknowledge/resolve links that notifications carry, which work without
//! signing in.
//!
//! A signed link's GET only shows what it will do, with a button; the POST does it. Chat
//! tools and mail scanners fetch links on their own, and a fetch must not acknowledge an
//! incident for anyone.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;
use sluice_core::EventKind;
use sluice_store::{
    AlertFilter, IncidentFilter, NewIntegration, NewOverride, NoiseFilter, OverrideFilter,
    OverrideRow, RuleNoise,
};

use super::ingest::key_hash;
use super::{ApiError, body, query};
use crate::engine::access::Caller;
use crate::engine::incidents::integration_event;
use crate::engine::incidents::notifier::{ACK_PURPOSE, RESOLVE_PURPOSE};
use crate::engine::{Engine, EngineError, now_ms};

type Api = Result<Response, ApiError>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct IncidentsQuery {
    project: Option<String>,
    service: Option<String>,
    /// Only open ones.
    open: Option<bool>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// The projects the caller may view (only `only`, if given), by name.
pub(super) async fn visible_projects(
    e: &Engine,
    caller: &Caller,
    only: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    Ok(e.store
        .projects()
        .await?
        .into_iter()
        .map(|p| p.name)
        .filter(|p| only.is_none_or(|o| o == p) && e.may_view(caller, p))
        .collect())
}

/// Who is on call now and next in each schedule of the caller's projects.
#[derive(serde::Serialize)]
pub(super) struct OnCallRow {
    pub(super) project: String,
    pub(super) schedule: String,
    pub(super) time_zone: String,
    pub(super) now: Option<sluice_oncall::OnCall>,
    pub(super) next: Option<sluice_oncall::OnCall>,
    /// The overrides added through the API that have not ended, oldest first.
    pub(super) overrides: Vec<OverrideRow>,
}

/// The on-call rows of the API and the page: the production schedules with the overrides
/// added through the API merged in.
pub(super) async fn on_call_rows(e: &Engine, caller: &Caller) -> Result<Vec<OnCallRow>, ApiError> {
    let now = now_ms();
    let mut out = Vec::new();
    for project in visible_projects(e, caller, None).await? {
        let Some(config) = e.production_config(&project).await else {
            continue;
        };
        let upcoming = e
            .store
            .overrides(&OverrideFilter {
                project: Some(project.clone()),
                ends_after_ms: Some(now),
                ..OverrideFilter::default()
            })
            .await?;
        for s in e.on_call_schedules(&project, &config, now).await {
            let Ok(compiled) = s.compile() else {
                continue;
            };
            let (current, next) = sluice_oncall::now_and_next(&compiled, now);
            out.push(OnCallRow {
                project: project.clone(),
                overrides: upcoming
                    .iter()
                    .filter(|o| o.schedule == s.name)
                    .cloned()
                    .collect(),
                schedule: s.name,
                time_zone: s.time_zone,
                now: current,
                next,
            });
        }
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct OverridesQuery {
    /// Only this schedule.
    schedule: Option<String>,
    /// Ended overrides too (the default lists those that have not ended).
    all: Option<bool>,
}

/// `GET /api/v1/projects/{name}/oncall/overrides?schedule=&all=`: the project's overrides
/// added through the API, oldest first; by default only those that have not ended.
pub(super) async fn list_overrides(
    State(e): State<Arc<Engine>>,
    Path(project): Path<String>,
    q: Result<Query<OverridesQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    e.store.project(&project).await?;
    let rows = e
        .store
        .overrides(&OverrideFilter {
            project: Some(project),
            schedule: q.schedule,
            ends_after_ms: (!q.all.unwrap_or(false)).then(now_ms),
            limit: 1000,
        })
        .await?;
    Ok(Json(rows).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOverrideBody {
    /// The schedule, as named under `oncall.schedules` in the production `sluice.yml`.
    schedule: String,
    /// Who is on call during the override: a sluice user.
    user: String,
    /// Start, RFC 3339, e.g. `2026-05-01T18:00:00+02:00`.
    start: String,
    /// End, RFC 3339; after the start.
    end: String,
}

/// Longest override accepted: a year. Longer is a rotation change and belongs in sluice.yml.
const MAX_OVERRIDE_MS: i64 = 366 * 86_400_000;

/// An RFC 3339 time of an override body, or a 400 naming the field.
fn override_time(field: &str, text: &str) -> Result<i64, ApiError> {
    sluice_alerts::timestamp::parse_rfc3339(text.trim()).map_err(|_| {
        ApiError::bad_request(format!("{field}: `{text}` is not an RFC 3339 time")).hint(
            "write it with a zone, e.g. `2026-05-01T18:00:00+02:00` or `2026-05-01T16:00:00Z`",
        )
    })
}

/// `POST /api/v1/projects/{name}/oncall/overrides`: puts `user` on call in `schedule` from
/// `start` to `end`, over every layer of the schedule.
pub(super) async fn create_override(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    b: Result<Json<NewOverrideBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    e.store.project(&project).await?;
    let starts_ms = override_time("start", &b.start)?;
    let ends_ms = override_time("end", &b.end)?;
    if ends_ms <= starts_ms {
        return Err(ApiError::bad_request(format!(
            "end `{}` is not after start `{}`",
            b.end, b.start
        ))
        .hint("an override covers the time from `start` up to `end`"));
    }
    if ends_ms <= now_ms() {
        return Err(
            ApiError::bad_request(format!("end `{}` is in the past", b.end))
                .hint("an override that has ended would change nothing"),
        );
    }
    if ends_ms - starts_ms > MAX_OVERRIDE_MS {
        return Err(
            ApiError::bad_request("an override may last at most 366 days")
                .hint("change the rotation in sluice.yml instead"),
        );
    }
    let Some(config) = e.production_config(&project).await else {
        return Err(ApiError::bad_request(format!(
            "project `{project}` has no valid sluice.yml on its production branch, so it has no schedules"
        ))
        .hint("fix the file (`sluice validate`) and push it"));
    };
    let names: Vec<&str> = config
        .oncall
        .schedules
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    if !names.contains(&b.schedule.as_str()) {
        let known = if names.is_empty() {
            "it defines none".to_owned()
        } else {
            format!("it defines {}", names.join(", "))
        };
        return Err(ApiError::bad_request(format!(
            "schedule `{}` is not in the production sluice.yml of project `{project}`: {known}",
            b.schedule
        ))
        .hint("schedules are defined under `oncall.schedules` in sluice.yml"));
    }
    if e.store.user(&b.user).await?.is_none() {
        return Err(
            ApiError::bad_request(format!("unknown user `{}`", b.user)).hint(
                "pages go to sluice users: add them with `sluice users add`, then set their email",
            ),
        );
    }
    let event = sluice_core::NewEvent::new(
        EventKind::OncallOverrideAdded,
        caller.actor(),
        "oncall_override/{id}",
    )
    .project(&project);
    let row = e
        .store
        .add_override(
            NewOverride {
                project,
                schedule: b.schedule,
                user: b.user,
                starts_ms,
                ends_ms,
                created_by: caller.actor(),
            },
            event,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

/// `DELETE /api/v1/projects/{name}/oncall/overrides/{id}`: removes an override; the
/// schedule's layers apply again.
pub(super) async fn remove_override(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path((project, id)): Path<(String, i64)>,
) -> Api {
    let event = sluice_core::NewEvent::new(
        EventKind::OncallOverrideRemoved,
        caller.actor(),
        format!("oncall_override/{id}"),
    )
    .project(&project);
    let row = e.store.remove_override(&project, id, event).await?;
    Ok(Json(row).into_response())
}

/// `GET /api/v1/incidents`.
pub(super) async fn list(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<IncidentsQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let projects = visible_projects(&e, &caller, q.project.as_deref()).await?;
    let rows = e
        .store
        .incidents(&IncidentFilter {
            projects: Some(projects),
            service: q.service,
            open: q.open.unwrap_or(false),
            before_id: q.before.unwrap_or(0),
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
            ..IncidentFilter::default()
        })
        .await?;
    Ok(Json(rows).into_response())
}

/// An incident the caller may view, or 404 (not 403: its existence is not told).
async fn visible_incident(
    e: &Engine,
    caller: &Caller,
    id: i64,
) -> Result<sluice_store::IncidentRow, ApiError> {
    let inc = e.store.incident(id).await?;
    if !e.may_view(caller, &inc.project) {
        return Err(EngineError::NotFound(format!("incident {id}")).into());
    }
    Ok(inc)
}

/// `GET /api/v1/incidents/{id}`: the incident with its alerts, timeline and derived figures.
pub(super) async fn show(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Api {
    visible_incident(&e, &caller, id).await?;
    let record = crate::engine::incidents::record::read(&e, id).await?;
    Ok(Json(record).into_response())
}

/// `POST /api/v1/incidents/{id}/ack`.
pub(super) async fn ack(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Api {
    visible_incident(&e, &caller, id).await?;
    let done = e.incidents.acknowledge(id, &caller.actor()).await?;
    respond(&e, id, done, "acknowledged").await
}

/// `POST /api/v1/incidents/{id}/resolve`.
pub(super) async fn resolve(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Api {
    visible_incident(&e, &caller, id).await?;
    let done = e.incidents.resolve(id, &caller.actor()).await?;
    respond(&e, id, done, "resolved").await
}

async fn respond(e: &Engine, id: i64, done: bool, what: &str) -> Api {
    let inc = e.store.incident(id).await?;
    if !done {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("incident {id} is {} and cannot be {what}", inc.status),
        ));
    }
    Ok(Json(inc).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsQuery {
    project: Option<String>,
    incident: Option<i64>,
    firing: Option<bool>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/alerts`.
pub(super) async fn alerts(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<AlertsQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    let projects = visible_projects(&e, &caller, q.project.as_deref()).await?;
    let rows = e
        .store
        .alerts(&AlertFilter {
            projects: Some(projects),
            incident: q.incident,
            firing: q.firing.unwrap_or(false),
            before_id: q.before.unwrap_or(0),
            limit: q.limit.unwrap_or(100).clamp(1, 1000),
            ..AlertFilter::default()
        })
        .await?;
    Ok(Json(rows).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct NoiseQuery {
    /// Only this project.
    pub(super) project: Option<String>,
    /// The period, back from now: `30d` (the default), `12w`, `24h`.
    pub(super) since: Option<String>,
    /// An alert resolved by its source within this long of opening counts as auto-resolved
    /// quickly: `5m` (the default), `90s`, `1h`.
    pub(super) within: Option<String>,
}

/// The noise figures per rule over a period, as the API answers them.
#[derive(serde::Serialize)]
pub(super) struct NoiseReport {
    /// The period's start (Unix ms): alerts opened since then count.
    pub(super) since_ms: i64,
    /// Its end: now.
    pub(super) until_ms: i64,
    /// What counts as auto-resolved quickly.
    pub(super) within_ms: i64,
    /// One row per rule and project, the noisiest first.
    pub(super) rules: Vec<RuleNoise>,
}

/// The noise figures of the caller's projects for a query (the API and the page).
pub(super) async fn noise_of(
    e: &Engine,
    caller: &Caller,
    q: &NoiseQuery,
) -> Result<NoiseReport, ApiError> {
    let span = match &q.since {
        Some(s) => sluice_dora::parse_since(s).map_err(|err| {
            ApiError::bad_request(format!("since: {err}")).hint("write e.g. `30d`, `12w` or `24h`")
        })?,
        None => 30 * 86_400_000,
    };
    let within_ms = match &q.within {
        Some(w) => crate::config::parse_duration(w)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .filter(|ms| *ms > 0)
            .ok_or_else(|| {
                ApiError::bad_request(format!("within: `{w}` is not a positive duration"))
                    .hint("write e.g. `5m`, `90s` or `1h`")
            })?,
        None => 5 * 60_000,
    };
    let projects = visible_projects(e, caller, q.project.as_deref()).await?;
    let until_ms = now_ms();
    let since_ms = until_ms.saturating_sub(span);
    let rules = e
        .store
        .alert_noise(&NoiseFilter {
            projects: Some(projects),
            since_ms,
            quick_ms: within_ms,
        })
        .await?;
    Ok(NoiseReport {
        since_ms,
        until_ms,
        within_ms,
        rules,
    })
}

/// `GET /api/v1/alerts/noise?project=&since=30d&within=5m`: per rule, how noisy its alerts
/// were (see docs/incidents.md, "Noise by rule").
pub(super) async fn noise(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<NoiseQuery>, QueryRejection>,
) -> Api {
    let q = query(q)?;
    Ok(Json(noise_of(&e, &caller, &q).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewIntegrationBody {
    name: String,
    service: Option<String>,
    /// An existing key to keep (e.g. a PagerDuty routing key senders already use); a new
    /// one is generated when absent.
    key: Option<String>,
}

/// `POST /api/v1/projects/{name}/integrations`: returns the key once.
pub(super) async fn create_integration(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    b: Result<Json<NewIntegrationBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    e.store.project(&project).await?;
    let name_ok = !b.name.is_empty()
        && b.name.len() <= 63
        && b.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Err(
            ApiError::bad_request(format!("invalid integration name `{}`", b.name))
                .hint("use lower-case letters, digits, `-` and `_`, e.g. `prometheus`"),
        );
    }
    let key = match b.key {
        Some(k) => {
            if k.len() != 32 || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(
                    ApiError::bad_request("an integration key is 32 letters or digits")
                        .hint("leave `key` out to have one generated"),
                );
            }
            k
        }
        None => crate::engine::random_hex(16),
    };
    let hint: String = key.chars().skip(key.len() - 4).collect();
    let created = e
        .store
        .add_integration(
            NewIntegration {
                name: b.name.clone(),
                project: project.clone(),
                service: b.service.clone(),
                key_hash: key_hash(&key),
                key_hint: hint,
                created_by: caller.actor(),
            },
            integration_event(
                EventKind::IntegrationCreated,
                &caller.actor(),
                &project,
                &b.name,
            )
            .payload(json!({ "name": b.name, "service": b.service })),
        )
        .await?;
    let base = e.base_url();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "integration": created,
            "key": key,
            "pagerduty_url": format!("{base}/v2/enqueue"),
            "alertmanager_url": format!("{base}/integrations/{key}/api/v2/alerts"),
            "alertmanager_webhook_url": format!("{base}/integrations/{key}/webhook"),
        })),
    )
        .into_response())
}

/// `GET /api/v1/projects/{name}/integrations`.
pub(super) async fn list_integrations(
    State(e): State<Arc<Engine>>,
    Path(project): Path<String>,
) -> Api {
    Ok(Json(e.store.integrations(Some(&project)).await?).into_response())
}

/// `DELETE /api/v1/projects/{name}/integrations/{id}`.
pub(super) async fn remove_integration(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path((project, id)): Path<(String, i64)>,
) -> Api {
    let found = e.store.integrations(Some(&project)).await?;
    let Some(i) = found.into_iter().find(|i| i.id == id) else {
        return Err(EngineError::NotFound(format!("integration {id} of project {project}")).into());
    };
    let removed = e
        .store
        .remove_integration(
            id,
            integration_event(
                EventKind::IntegrationRemoved,
                &caller.actor(),
                &project,
                &i.name,
            ),
        )
        .await?;
    // A removed key stops working at once, not when its cache entry ages out.
    e.incidents
        .keys
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    Ok(Json(removed).into_response())
}

#[derive(Deserialize)]
pub(super) struct SigQuery {
    sig: Option<String>,
}

/// Checks a signed link; returns the user it was made for, if any.
fn check_link(
    e: &Engine,
    purpose: &str,
    id: i64,
    sig: Option<&str>,
) -> Result<Option<String>, Box<Response>> {
    let refuse = |msg: &str| {
        Box::new((
            StatusCode::FORBIDDEN,
            super::ui::layout(
                "Link not valid",
                "incidents",
                html! { h1 { "Link not valid" } p { (msg) } p { "Open the incident in sluice and act there." } },
            ),
        )
            .into_response())
    };
    let Some(sig) = sig else {
        return Err(refuse("This link carries no signature."));
    };
    match sluice_auth::signed::verify(&e.access.key, purpose, sig, now_ms()) {
        Ok(payload) if payload == id.to_string() => Ok(None),
        Ok(payload)
            if payload
                .split_once(':')
                .is_some_and(|(i, _)| i == id.to_string()) =>
        {
            Ok(payload.split_once(':').map(|(_, u)| u.to_owned()))
        }
        Ok(_) => Err(refuse("This link was made for another incident.")),
        Err(sluice_auth::AuthError::Expired) => Err(refuse("This link has expired.")),
        Err(_) => Err(refuse("This link's signature is not valid.")),
    }
}

fn purpose_of(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        "ack" => Some((ACK_PURPOSE, "Acknowledge")),
        "resolve" => Some((RESOLVE_PURPOSE, "Resolve")),
        _ => None,
    }
}

/// `GET /incidents/{id}/{action}?sig=`: what the signed link will do, with a button.
pub(super) async fn link_page(
    State(e): State<Arc<Engine>>,
    Path((id, action)): Path<(i64, String)>,
    Query(q): Query<SigQuery>,
) -> Response {
    let Some((purpose, verb)) = purpose_of(&action) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(r) = check_link(&e, purpose, id, q.sig.as_deref()) {
        return *r;
    }
    let Ok(inc) = e.store.incident(id).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let sig = q.sig.unwrap_or_default();
    super::ui::layout(
        &format!("{verb} incident {id}"),
        "incidents",
        html! {
            h1 { (verb) " incident #" (id) }
            p { strong { (inc.title) } " — " (inc.project) "/" (inc.service) ", " (inc.severity) ", " (inc.status) }
            form method="post" action=(format!("/incidents/{id}/{action}")) {
                input type="hidden" name="sig" value=(sig);
                button type="submit" { (verb) }
            }
        },
    )
    .into_response()
}

/// `POST /incidents/{id}/{action}` with the signature in the form.
pub(super) async fn link_action(
    State(e): State<Arc<Engine>>,
    Path((id, action)): Path<(i64, String)>,
    form: Result<Form<SigQuery>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some((purpose, verb)) = purpose_of(&action) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let sig = form.ok().and_then(|Form(f)| f.sig);
    let user = match check_link(&e, purpose, id, sig.as_deref()) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let by = match &user {
        Some(u) => format!("{u} (signed link)"),
        None => "signed link".to_owned(),
    };
    let by = by.as_str();
    let done = match action.as_str() {
        "ack" => e.incidents.acknowledge(id, by).await,
        _ => e.incidents.resolve(id, by).await,
    };
    let text = match done {
        Ok(true) => format!("Incident #{id}: {}.", verb.to_lowercase() + "d"),
        Ok(false) => format!(
            "Incident #{id} was already {}.",
            if action == "ack" {
                "acknowledged or resolved"
            } else {
                "resolved"
            }
        ),
        Err(err) => return ApiError::from(err).into_response(),
    };
    Html(
        super::ui::layout(
            &format!("Incident {id}"),
            "incidents",
            html! { h1 { (text) } },
        )
        .0,
    )
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSilenceBody {
    /// Project the silence applies to; absent: every project (needs the role everywhere).
    project: Option<String>,
    /// Label matchers, e.g. `alertname="DiskFull", service=~"web|api"`.
    matchers: String,
    /// Start (Unix ms); absent: now.
    starts_ms: Option<i64>,
    /// End (Unix ms); or `duration` instead.
    ends_ms: Option<i64>,
    /// How long from the start, e.g. `2h`.
    duration: Option<String>,
    /// A weekly maintenance window: `{"days": ["sunday"], "start": "02:00", "end": "04:00",
    /// "time_zone": "Europe/Berlin"}`, active within `starts_ms..ends_ms`.
    recurrence: Option<serde_json::Value>,
    /// Why.
    comment: String,
}

/// `GET /api/v1/silences`.
pub(super) async fn list_silences(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Api {
    let mut rows = e.store.silences(500).await?;
    rows.retain(|s| s.project.as_deref().is_none_or(|p| e.may_view(&caller, p)));
    let now = now_ms();
    let out: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|s| {
            let active = s.expired_ms.is_none()
                && crate::engine::incidents::config::compile_silence(&s)
                    .is_ok_and(|c| c.is_active(now));
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["active"] = json!(active);
            v
        })
        .collect();
    Ok(Json(out).into_response())
}

/// `POST /api/v1/silences`.
pub(super) async fn create_silence(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<NewSilenceBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let target = match &b.project {
        Some(p) => {
            e.store.project(p).await?;
            sluice_auth::Target::project(p)
        }
        None => sluice_auth::Target::default(),
    };
    e.authorize(&caller, sluice_auth::Action::ManageSilences, &target)
        .await?;
    if b.comment.trim().is_empty() {
        return Err(ApiError::bad_request("a silence needs a comment")
            .hint("say why, e.g. \"database maintenance, ticket OPS-12\""));
    }
    let starts = b.starts_ms.unwrap_or_else(now_ms);
    let ends = match (b.ends_ms, &b.duration) {
        (Some(end), None) => end,
        (None, Some(d)) => {
            let d = crate::config::parse_duration(d)
                .map_err(|err| ApiError::bad_request(format!("duration: {err}")))?;
            starts.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
        _ => {
            return Err(ApiError::bad_request("give either `ends_ms` or `duration`")
                .hint("e.g. `\"duration\": \"2h\"`"));
        }
    };
    let row = sluice_store::NewSilence {
        project: b.project.clone(),
        matchers: b.matchers.clone(),
        starts_ms: starts,
        ends_ms: ends,
        recurrence: b.recurrence.clone(),
        comment: b.comment.clone(),
        created_by: caller.actor(),
    };
    // Checked exactly as the engine will read it back.
    let probe = sluice_store::SilenceRow {
        id: 0,
        project: row.project.clone(),
        matchers: row.matchers.clone(),
        starts_ms: starts,
        ends_ms: ends,
        recurrence: row.recurrence.clone(),
        comment: row.comment.clone(),
        created_by: row.created_by.clone(),
        created_ms: 0,
        expired_ms: None,
    };
    if let Err(why) = crate::engine::incidents::config::compile_silence(&probe) {
        return Err(ApiError::bad_request(format!("invalid silence: {why}"))
            .hint("matchers look like `alertname=\"DiskFull\", service=~\"web|api\"`"));
    }
    let event = sluice_core::NewEvent::new(EventKind::SilenceCreated, caller.actor(), "silence/{id}")
        .payload(json!({ "matchers": b.matchers, "starts_ms": starts, "ends_ms": ends, "comment": b.comment, "project": b.project }));
    let event = match &b.project {
        Some(p) => event.project(p),
        None => event,
    };
    let created = e.store.add_silence(row, event).await?;
    e.incidents.silences_changed();
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /api/v1/silences/{id}`: ends it now.
pub(super) async fn expire_silence(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Api {
    let rows = e.store.silences(10_000).await?;
    let found = rows.into_iter().find(|s| s.id == id);
    // Whether a silence exists is only told to those who may manage it.
    let target = match found.as_ref().and_then(|s| s.project.as_deref()) {
        Some(p) => sluice_auth::Target::project(p),
        None => sluice_auth::Target::default(),
    };
    e.authorize(&caller, sluice_auth::Action::ManageSilences, &target)
        .await?;
    let event = sluice_core::NewEvent::new(
        EventKind::SilenceExpired,
        caller.actor(),
        format!("silence/{id}"),
    )
    .payload(json!({ "silence": id }));
    let row = e.store.expire_silence(id, now_ms(), event).await?;
    e.incidents.silences_changed();
    Ok(Json(row).into_response())
}

/// `GET /api/v1/oncall`: who is on call now and next in every schedule of the visible
/// projects.
pub(super) async fn oncall(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Api {
    Ok(Json(on_call_rows(&e, &caller).await?).into_response())
}
