//! Web pages for incidents (list; detail with the merged timeline and Acknowledge/Resolve
//! buttons; the noise figures per alert rule), on-call (who is on call now and next in each
//! schedule) and DORA (the four metrics with SVG charts over time), plus the DORA JSON API
//! they share.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use sluice_dora::{Bucket, Metrics};
use sluice_store::IncidentFilter;

use super::incidents::{NoiseQuery, noise_of, on_call_rows, visible_projects};
use super::ui::{Page, badge, internal, layout, when};
use super::{ApiError, query};
use crate::engine::access::Caller;
use crate::engine::{Engine, now_ms};

fn human(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".into(), sluice_dora::human_duration)
}

/// `GET /incidents`.
pub(super) async fn list_page(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Page {
    let projects = visible_projects(&e, &caller, None)
        .await
        .map_err(|x| x.into_response())?;
    let rows = e
        .store
        .incidents(&IncidentFilter {
            projects: Some(projects),
            limit: 200,
            ..IncidentFilter::default()
        })
        .await
        .map_err(internal)?;
    Ok(layout(
        "Incidents",
        "/incidents",
        html! {
            h1 { "Incidents" }
            p.meta { a href="/alerts/noise" { "Noise by rule" } ": which alert rules open incidents that resolve by themselves or that nobody acknowledges." }
            @if rows.is_empty() {
                p.meta { "No incidents. Alerts arrive through integrations (see docs/incidents.md)." }
            } @else {
                table {
                    tr { th { "#" } th { "status" } th { "severity" } th { "service" } th { "title" } th { "alerts" } th { "opened" } th { "acknowledged" } th { "resolved" } }
                    @for i in &rows {
                        tr {
                            td { a href=(format!("/incidents/{}", i.id)) { "#" (i.id) } }
                            td { (badge(&i.status)) }
                            td { (badge(&i.severity)) }
                            td { (i.project) "/" (i.service) }
                            td { (i.title) }
                            td { (i.alert_count) }
                            td.meta { (when(i.opened_ms)) }
                            td.meta { (human(i.acked_ms.map(|a| a - i.opened_ms))) }
                            td.meta { (human(i.resolved_ms.map(|r| r - i.opened_ms))) }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /incidents/{id}`.
pub(super) async fn detail_page(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Page {
    let record = crate::engine::incidents::record::read(&e, id)
        .await
        .map_err(|x| ApiError::from(x).into_response())?;
    let i = &record.incident;
    if !e.may_view(&caller, &i.project) {
        return Err(super::ui::error_page(
            axum::http::StatusCode::NOT_FOUND,
            format!("incident {id} not found"),
        ));
    }
    let csrf = super::auth::csrf().unwrap_or_default();
    let open = i.status != "resolved";
    Ok(layout(
        &format!("Incident {id}"),
        "/incidents",
        html! {
            h1 { "Incident #" (id) ": " (i.title) " " (badge(&i.status)) }
            div.card.kv {
                span.meta { "service" } span { (i.project) "/" (i.service) }
                span.meta { "severity" } span { (badge(&i.severity)) }
                span.meta { "alerts" } span { (i.alert_count) }
                span.meta { "opened" } span { (when(i.opened_ms)) }
                span.meta { "acknowledged" } span {
                    @if let (Some(a), Some(by)) = (i.acked_ms, &i.acked_by) { (when(a)) " by " (by) " (after " (human(Some(a - i.opened_ms))) ")" } @else { "—" }
                }
                span.meta { "resolved" } span {
                    @if let Some(r) = i.resolved_ms { (when(r)) " by " (i.resolved_by.as_deref().unwrap_or("its alerts")) " (after " (human(Some(r - i.opened_ms))) ")" } @else { "—" }
                }
                span.meta { "suspected cause" } span {
                    @if let Some(s) = &i.suspected_release {
                        "version " (s["version"]) " deployed to " (s["env"].as_str().unwrap_or("?")) " at " (when(s["deployed_ms"].as_i64().unwrap_or_default()))
                        " (" a href=(format!("/deployments/{}", s["deployment"])) { "deployment #" (s["deployment"]) } ", " (s["status"].as_str().unwrap_or("?")) ")"
                    } @else { "no deployment before the first alert" }
                }
            }
            @if open {
                div.card {
                    @if i.acked_ms.is_none() {
                        form.inline method="post" action=(format!("/ui/incidents/{id}/ack")) {
                            input type="hidden" name="_csrf" value=(csrf);
                            button type="submit" { "Acknowledge" }
                        }
                        " "
                    }
                    form.inline method="post" action=(format!("/ui/incidents/{id}/resolve")) {
                        input type="hidden" name="_csrf" value=(csrf);
                        button type="submit" { "Resolve" }
                    }
                }
            }
            h2 { "Timeline" }
            table id="timeline" {
                tr { th { "time" } th { "what" } th { "who" } th { "" } }
                @for t in &record.timeline {
                    tr data-kind=(t.kind) {
                        td.meta { (when(t.at_ms)) }
                        td { span.meta { (t.kind) } }
                        td.meta { (t.actor.as_deref().unwrap_or("")) }
                        td { (t.text) }
                    }
                }
            }
            h2 { "Alerts" }
            table {
                tr { th { "#" } th { "status" } th { "severity" } th { "summary" } th { "labels" } th { "since" } }
                @for a in &record.alerts {
                    tr {
                        td { (a.id) }
                        td { (badge(&a.status)) @if a.flapping { " " span.badge { "flapping" } } }
                        td { (a.severity) }
                        td { (a.summary) }
                        td.mono { @for (k, v) in &a.labels { (k) "=" (v) " " } }
                        td.meta { (when(a.starts_ms)) }
                    }
                }
            }
        },
    ))
}

/// A share as a whole percentage, `—` when there is nothing to divide by.
fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "—".into(), |s| format!("{:.0} %", s * 100.0))
}

/// `GET /alerts/noise?project=&since=30d&within=5m`: the "Noise by rule" table.
pub(super) async fn noise_page(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<NoiseQuery>, QueryRejection>,
) -> Page {
    let q = query(q).map_err(|x| x.into_response())?;
    let report = noise_of(&e, &caller, &q)
        .await
        .map_err(|x| x.into_response())?;
    let within = sluice_dora::human_duration(report.within_ms);
    Ok(layout(
        "Noise by rule",
        "/incidents",
        html! {
            h1 { "Noise by rule: last " (q.since.as_deref().unwrap_or("30d")) }
            p.meta {
                "Alerts opened since " (when(report.since_ms)) ", per rule (its name, else the alert's "
                code { "alertname" } ", else its source). A rule whose alerts mostly resolve by themselves within "
                (within) ", or whose incidents nobody acknowledges, pages people for nothing: raise its threshold or lengthen its "
                code { "for:" } ". Filter with ?project=, ?since= and ?within=; definitions in docs/incidents.md."
            }
            @if report.rules.is_empty() {
                p.meta { "No alerts in this period." }
            } @else {
                table id="noise" {
                    tr {
                        th { "project" } th { "rule" } th { "alerts" } th { "incidents" } th { "alerts per incident" }
                        th { "auto-resolved within " (within) } th { "acknowledged" } th { "flapping" } th { "median time to resolve" }
                    }
                    @for r in &report.rules {
                        tr data-rule=(r.rule) {
                            td { (r.project) }
                            td { (r.rule) }
                            td { (r.alerts) @if r.silenced > 0 { span.meta { " (" (r.silenced) " silenced)" } } }
                            td { (r.incidents) }
                            td { (r.alerts_per_incident.map_or_else(|| "—".into(), |v| format!("{v:.1}"))) }
                            td { (percent(r.auto_resolved_share)) span.meta { " (" (r.auto_resolved_quickly) ")" } }
                            td { (percent(r.acknowledged_share)) span.meta { " (" (r.acknowledged) ")" } }
                            td { (percent(r.flapping_share)) span.meta { " (" (r.flapping) ")" } }
                            td.meta { (human(r.median_resolve_ms)) }
                        }
                    }
                }
            }
        },
    ))
}

/// `POST /ui/incidents/{id}/ack`: the Acknowledge button.
pub(super) async fn ui_action_ack(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let done = e.incidents.acknowledge(id, &caller.actor()).await;
    back_to_incident(id, done)
}

/// `POST /ui/incidents/{id}/resolve`: the Resolve button.
pub(super) async fn ui_action_resolve(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let done = e.incidents.resolve(id, &caller.actor()).await;
    back_to_incident(id, done)
}

fn back_to_incident(id: i64, done: Result<bool, crate::engine::EngineError>) -> Response {
    match done {
        Ok(_) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// A user on call, marked when an override (not a layer) puts them there.
fn on_call_who(c: &sluice_oncall::OnCall) -> String {
    match &c.layer {
        Some(_) => c.user.clone(),
        None => format!("{} (override)", c.user),
    }
}

/// `GET /oncall`: who is on call now and next, per schedule of every visible project, with
/// the overrides added through the API.
pub(super) async fn oncall_page(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Page {
    let rows = on_call_rows(&e, &caller)
        .await
        .map_err(|x| x.into_response())?;
    Ok(layout(
        "On call",
        "/oncall",
        html! {
            h1 { "On call" }
            @if rows.is_empty() {
                p.meta { "No schedules. Define them under `oncall.schedules` in sluice.yml." }
            } @else {
                table {
                    tr { th { "project" } th { "schedule" } th { "now" } th { "until" } th { "next" } th { "zone" } th { "overrides" } }
                    @for r in &rows {
                        tr {
                            td { (r.project) } td { (r.schedule) }
                            td { (r.now.as_ref().map_or_else(|| "nobody".into(), on_call_who)) }
                            td.meta { (r.now.as_ref().and_then(|c| c.until_ms).map_or_else(|| "—".into(), when)) }
                            td { (r.next.as_ref().map_or_else(|| "—".into(), on_call_who)) }
                            td.meta { (r.time_zone) }
                            td.meta {
                                @for o in &r.overrides {
                                    div { "#" (o.id) " " (o.user) ": " (when(o.starts_ms)) " – " (when(o.ends_ms)) }
                                }
                            }
                        }
                    }
                }
                p.meta { "Cover someone's shift without a commit: " code { "sluice oncall override add SCHEDULE --user U --from T --to T --project P" } "." }
            }
        },
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DoraQuery {
    project: Option<String>,
    service: Option<String>,
    /// e.g. `30d`, `12w`, `24h`.
    since: Option<String>,
}

/// The metrics and the series for a query.
async fn dora_of(
    e: &Engine,
    caller: &Caller,
    q: &DoraQuery,
) -> Result<(Metrics, Vec<sluice_dora::Point>, i64, i64), ApiError> {
    let span = match &q.since {
        Some(s) => sluice_dora::parse_since(s).map_err(|err| {
            ApiError::bad_request(format!("since: {err}")).hint("write e.g. `30d`, `12w` or `24h`")
        })?,
        None => 30 * 86_400_000,
    };
    let projects = visible_projects(e, caller, q.project.as_deref()).await?;
    let mut deploys = e.prod_deploys(&projects).await?;
    if let Some(s) = &q.service {
        deploys = sluice_dora::for_service(&deploys, s);
    }
    let now = now_ms();
    let from = now - span;
    let bucket = if span <= 60 * 86_400_000 {
        Bucket::Day
    } else {
        Bucket::Week
    };
    Ok((
        sluice_dora::compute(&deploys, from, now, now),
        sluice_dora::series(&deploys, from, now, bucket),
        from,
        now,
    ))
}

/// `GET /api/v1/dora?project=&service=&since=30d`.
pub(super) async fn dora_api(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<DoraQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let (metrics, series, _, _) = dora_of(&e, &caller, &q).await?;
    Ok(Json(serde_json::json!({ "metrics": metrics, "series": series })).into_response())
}

fn stat_card(
    title: &str,
    value: String,
    level: Option<sluice_dora::Level>,
    note: String,
) -> Markup {
    html! {
        div.card.dora data-metric=(title) {
            div.meta { (title) }
            div.big { (value) }
            div.meta { (note) @if let Some(l) = level { " · " strong { (format!("{l:?}").to_lowercase()) } } }
        }
    }
}

/// `GET /dora`.
pub(super) async fn dora_page(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<DoraQuery>, QueryRejection>,
) -> Page {
    let q = query(q).map_err(|x| x.into_response())?;
    let (m, series, _, _) = dora_of(&e, &caller, &q)
        .await
        .map_err(|x| x.into_response())?;
    let charts = sluice_dora::svg::dora_charts(&series);
    let cfr = m
        .change_failure_rate
        .map_or_else(|| "—".into(), |r| format!("{:.1} %", r * 100.0));
    Ok(layout(
        "DORA metrics",
        "/dora",
        html! {
            h1 { "DORA metrics: production, last " (q.since.as_deref().unwrap_or("30d")) }
            p.meta { "Definitions: docs/dora.md. Filter with ?project=, ?service= and ?since=." }
            div.dora-grid {
                (stat_card("deployment frequency", format!("{:.2}/day", m.deploys_per_day), m.levels.deployment_frequency, format!("{} deployments, {}", m.deployments, m.deployment_frequency_label)))
                (stat_card("lead time for changes", human(m.lead_time.median_ms), m.levels.lead_time, format!("median of {} changes", m.lead_time.samples)))
                (stat_card("change failure rate", cfr, m.levels.change_failure_rate, format!("{} of {} deployments failed", m.failed_deploys, m.deployments)))
                (stat_card("failed deployment recovery time", human(m.recovery.median_ms), m.levels.recovery, format!("median of {} recoveries, {} unrecovered", m.recovery.samples, m.unrecovered_failures)))
            }
            @for (name, svg) in &charts {
                div.card.chart data-chart=(name) { (PreEscaped(svg)) }
            }
        },
    ))
}
