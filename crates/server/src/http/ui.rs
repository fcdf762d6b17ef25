//! The web UI: server-rendered HTML (maud, escaped at compile time), no build step. Live
//! parts use a few lines of inline JavaScript over the SSE endpoints. The layout's
//! navigation is the shell later pages (incidents, metrics, settings) join. The deployment
//! pages and the status matrix live in `ui_deploys.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sluice_store::{EventFilter, LogFilter, Release, ReleaseFilter, Run, RunFilter, Step};

use super::auth::visible;
use crate::engine::{Engine, short};

const CSS: &str = r#"
:root{--bg:#f6f7f9;--fg:#1d232b;--mut:#6a7482;--line:#dde1e6;--ok:#1f8a4c;--bad:#c8322b;--run:#1f6fd1;--warn:#c27803;--card:#fff}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;align-items:center;gap:24px;padding:0 20px;height:48px;background:#14181f;color:#fff}
header a{color:#c9d1dc;text-decoration:none;padding:14px 2px}header a.on,header a:hover{color:#fff;border-bottom:2px solid #5aa0ff}
header .brand{font-weight:700;color:#fff;letter-spacing:.5px;margin-right:8px}
header .soon{color:#5d6673;cursor:default}header nav{flex:1}header .who{color:#c9d1dc}
main{max-width:1200px;margin:0 auto;padding:20px}
h1{font-size:20px;margin:4px 0 16px}h2{font-size:16px;margin:24px 0 8px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line)}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}th{font-weight:600;color:var(--mut);font-size:12px;text-transform:uppercase}
a{color:var(--run)}code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--mut)}
.s-succeeded{background:var(--ok)}.s-failed,.s-timed_out{background:var(--bad)}.s-running{background:var(--run)}.s-queued,.s-pending{background:#8a94a3}
.s-skipped{background:#b7bec8}.s-cancelled,.s-interrupted{background:var(--warn)}
.card{background:var(--card);border:1px solid var(--line);padding:12px 16px;margin-bottom:16px}
.meta{color:var(--mut)}.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}
div.dag{overflow-x:auto;background:var(--card);border:1px solid var(--line);padding:8px}
.dag rect{rx:6;stroke:#0002}.dag text{font:12px system-ui;fill:#fff}.dag .edge{stroke:#9aa3ae;fill:none;stroke-width:1.5}
.dag .f-succeeded{fill:var(--ok)}.dag .f-failed,.dag .f-timed_out{fill:var(--bad)}.dag .f-running{fill:var(--run)}.dag .f-pending{fill:#8a94a3}.dag .f-skipped{fill:#b7bec8}.dag .f-cancelled,.dag .f-interrupted{fill:var(--warn)}
.log{background:#0f131a;color:#d7dde5;padding:10px 12px;max-height:520px;overflow:auto;white-space:pre-wrap;word-break:break-all;margin:0}
.log .err{color:#ff9b93}.log .sys{color:#7fb3ff}.log .st{color:#7c8796}
.tests{font-size:12px;color:var(--mut)}
td.mono{overflow-wrap:anywhere}td.meta{white-space:nowrap}nav a,nav span{margin-right:14px}.fail{color:var(--bad)}
.s-rolled_back{background:var(--warn)}.s-superseded{background:#b7bec8}
table.matrix td{min-width:230px}table.matrix td:first-child{min-width:0;width:1%;white-space:nowrap}
.cell .rel{display:flex;align-items:baseline;gap:8px;flex-wrap:wrap}.cell .serving{font-size:16px}.cell .desired{color:var(--run);font-weight:600}
.cell>div{margin-bottom:4px}
.s-triggered,.s-critical,.s-error{background:var(--bad)}.s-acknowledged,.s-warning{background:var(--warn)}.s-resolved{background:var(--ok)}.s-firing{background:var(--bad)}.s-info{background:#8a94a3}
.dora-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:12px}.dora .big{font-size:24px;font-weight:600;margin:4px 0}.chart svg{width:100%;height:auto}.cell .running{font-size:12.5px}
.health{font-size:12.5px;color:var(--mut)}.health.ok{color:var(--ok)}.health.bad{color:var(--bad)}.health.warn{color:var(--warn)}
td.nw,td.mono.nw{white-space:nowrap;overflow-wrap:normal}td.old{white-space:normal;opacity:.75}
.traffic{font-size:12px;white-space:nowrap}svg.bar{vertical-align:middle;border-radius:2px;background:#e8ebef}
svg.bar .t0{fill:#4f86d9}svg.bar .t1{fill:var(--ok)}svg.bar .t2{fill:var(--warn)}svg.bar .t3{fill:#8a94a3}
.leg{margin-left:2px;color:var(--mut)}.leg::before{content:"";display:inline-block;width:8px;height:8px;border-radius:2px;margin-right:4px;background:#8a94a3}
.leg.t0::before{background:#4f86d9}.leg.t1::before{background:var(--ok)}.leg.t2::before{background:var(--warn)}
.actions{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 12px}.cell .actions{margin:6px 0 0}form.inline{display:inline;margin:0}
button{font:inherit;font-size:12.5px;padding:2px 10px;border:1px solid #c5ccd5;border-radius:4px;background:#fff;color:var(--fg);cursor:pointer}
button:hover{border-color:var(--run);color:var(--run)}button.primary{background:var(--run);border-color:var(--run);color:#fff}button.primary:hover{background:#195cb0;color:#fff}
button.warn{color:#8a5500;border-color:#e2c48f}button.warn:hover{background:#fdf6ea}button.danger{color:var(--bad);border-color:#e6b8b5}button.danger:hover{background:#fdf0ef}
.figs .fig{display:inline-block;font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#eef1f5;border-radius:3px;padding:0 6px;margin:1px 2px 1px 0}.figs .k{color:var(--mut)}
table.timeline td:nth-child(3){white-space:nowrap}table.timeline td:nth-child(4){min-width:260px;max-width:420px}
"#;

pub(super) async fn style() -> Response {
    (
        [
            ("content-type", "text/css"),
            ("cache-control", "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

pub(super) fn layout(title: &str, active: &str, body: Markup) -> Html<String> {
    let nav = [
        ("/", "Overview"),
        ("/runs", "Runs"),
        ("/releases", "Releases"),
        ("/deployments", "Deployments"),
        ("/incidents", "Incidents"),
        ("/oncall", "On call"),
        ("/dora", "DORA"),
        ("/events", "Events"),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · sluice" }
                    link rel="stylesheet" href="/static/style.css";
                }
                body {
                    header {
                        a.brand href="/" { "sluice" }
                        nav {
                            @for (href, label) in nav {
                                a class=@if active == href { "on" } href=(href) { (label) } " "
                            }
                        }
                        @if let Some(u) = super::auth::caller().and_then(|c| c.user) {
                            span.who { (u) }
                            @if let Some(t) = super::auth::csrf() {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="_csrf" value=(t);
                                    button type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

pub(super) fn badge(status: &str) -> Markup {
    html! { span class={"badge s-" (status)} data-status=(status) { (status.replace('_', " ")) } }
}

pub(super) fn when(ms: i64) -> String {
    let (y, m, d, h, mi, s) = sluice_core::time::utc_parts(ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

pub(super) fn dur(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => {
            let ms = (e - s).max(0);
            if ms < 1000 {
                format!("{ms} ms")
            } else if ms < 60_000 {
                // Truncated, in integers: the deployment page's script renders the same.
                format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
            } else {
                format!("{}m {}s", ms / 60_000, (ms / 1000) % 60)
            }
        }
        (Some(_), None) => "running".into(),
        _ => String::new(),
    }
}

fn runs_table(runs: &[Run]) -> Markup {
    html! {
        table {
            thead { tr { th { "Run" } th { "Status" } th { "Project" } th { "Env" } th { "Commit" } th { "Services" } th { "Trigger" } th { "Created" } th { "Duration" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={"/runs/" (r.id)} { "#" (r.id) } }
                        td { (badge(r.status.as_str())) }
                        td { a href={"/projects/" (r.project)} { (r.project) } }
                        td { (r.env) }
                        td.mono { (short(&r.commit)) " " span.meta { (r.branch) } }
                        td { (r.services.join(", ")) }
                        td { (r.trigger) }
                        td.meta { (when(r.created_ms)) }
                        td { (dur(r.started_ms, r.finished_ms)) }
                    }
                }
                @if runs.is_empty() { tr { td colspan="9" .meta { "No runs yet. Push to an environment's branch, or run `sluice run PROJECT`." } } }
            }
        }
    }
}

fn releases_table(rels: &[Release]) -> Markup {
    html! {
        table {
            thead { tr { th { "Release" } th { "Project" } th { "Commit" } th { "Built in" } th { "Gates" } th { "Artifact" } th { "Created" } } }
            tbody {
                @for r in rels {
                    tr {
                        td { b { (r.service) " v" (r.version) } }
                        td { a href={"/projects/" (r.project)} { (r.project) } }
                        td.mono { (short(&r.commit)) " " span.meta { (r.branch) } }
                        td { (r.env) " · " a href={"/runs/" (r.run_id)} { "run #" (r.run_id) } }
                        td {
                            @if let Some(g) = r.gates.as_object() {
                                @for (name, v) in g {
                                    span.meta { (name) ": " }
                                    (badge(v.get("status").and_then(|s| s.as_str()).unwrap_or("unknown")))
                                    " "
                                }
                            }
                        }
                        td.mono title=(r.artifact_sha256) {
                            "sha256:" (&r.artifact_sha256[..12.min(r.artifact_sha256.len())]) " · " (r.artifact_bytes) " B"
                            @if r.artifact_pruned { " (pruned)" }
                            @if let Some(id) = &r.image_id {
                                br; span title=(id) { "image " (short_image(id)) }
                                @if let Some(t) = &r.image_tag { " " span.meta { (t) } }
                            }
                        }
                        td.meta { (when(r.created_ms)) }
                    }
                }
                @if rels.is_empty() { tr { td colspan="7" .meta { "No releases yet." } } }
            }
        }
    }
}

/// `sha256:0123456789ab` from a full image id.
fn short_image(id: &str) -> &str {
    let end = id.find(':').map_or(0, |i| i + 1) + 12;
    id.get(..end.min(id.len())).unwrap_or(id)
}

/// A scan step's report: its verdict, every finding (allowed and expired allowlist entries
/// marked), and why the gate failed.
fn vuln_report(step: &str, value: &serde_json::Value) -> Markup {
    let report: sluice_vuln::Report = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            return html! { div.card { b { (step) } " " span.meta { "report unreadable: " (e) } } };
        }
    };
    let expired = |f: &sluice_vuln::Finding| {
        report
            .expired_allows
            .iter()
            .find(|e| e.id == f.advisory_id || f.aliases.contains(&e.id))
    };
    html! {
        div.card.vuln data-scan=(step) {
            b { (step) } " "
            (badge(if report.passed { "succeeded" } else { "failed" }))
            " " span.meta { (report.headline()) }
            @if !report.findings.is_empty() {
                table {
                    thead { tr { th { "Status" } th { "Package" } th { "Installed" } th { "Advisory" } th { "Severity" } th { "Fixed in" } th { "File" } } }
                    tbody {
                        @for f in &report.findings {
                            tr {
                                td {
                                    @if f.failing { span.fail { "fails the gate" } }
                                    @else if let Some(a) = &f.allowed_by { span title=(a.reason) { "allowed until " (a.expires) } }
                                    @else if let Some(k) = &f.informational { "warning (" (k) ")" }
                                    @else { span.meta { "below threshold" } }
                                    @if let Some(e) = expired(f) { br; span.fail title=(e.reason) { "allowlist entry expired " (e.expires) } }
                                }
                                td { (f.package) }
                                td.mono { (f.installed_version) }
                                td.mono title=(f.summary) { (f.advisory_id) }
                                td { (f.severity) @if let Some(sc) = f.cvss_score { " " span.meta { (format!("{sc:.1}")) } } }
                                td.mono { @if f.fixed_versions.is_empty() { span.meta { "no fix" } } @else { (f.fixed_versions.join(", ")) } }
                                td.mono.meta { (f.source_file) }
                            }
                        }
                    }
                }
            }
            @for r in &report.reasons { div.fail { (r) } }
            @for e in &report.expired_allows { div.meta { "expired allowlist entry " (e.id) " (" (e.expires) "): " (e.reason) } }
            @for id in &report.unused_allows { div.meta { "unused allowlist entry " (id) } }
        }
    }
}

pub(super) type Page = Result<Html<String>, Response>;

pub(super) fn error_page(status: StatusCode, msg: String) -> Response {
    (
        status,
        layout("Error", "", html! { h1 { "Not here" } p { (msg) } }),
    )
        .into_response()
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the server failed: {e}"),
    )
}

/// The kinds that change the list pages.
const RELOAD_KINDS: [&str; 6] = [
    "run.queued",
    "run.started",
    "run.finished",
    "step.finished",
    "release.created",
    "project.added",
];

/// Reloads the page when the event log moves (debounced), for list pages. Every page closes
/// its streams when it is left: a page kept in the back-forward cache would otherwise hold
/// one of the few connections a browser allows per host, and live pages opened later stall.
const LIVE_RELOAD: &str = r#"<script>
(function(){var es=new EventSource('/api/v1/events/stream');var t=null;
window.addEventListener('pagehide',function(){es.close();});window.addEventListener('pageshow',function(e){if(e.persisted)location.reload();});
es.onmessage=es.onerror=null;['run.queued','run.started','run.finished','step.finished','release.created','project.added'].forEach(function(k){
es.addEventListener(k,function(){if(t)return;t=setTimeout(function(){location.reload()},400);});});})();
</script>"#;

pub(super) async fn overview(State(e): State<Arc<Engine>>) -> Page {
    // The cursor first: the live script then misses nothing that happens after this read.
    let last = e.store.last_event_seq().await.map_err(internal)?;
    let matrix = super::ui_deploys::matrix(&e).await?;
    let mut projects = e.store.projects().await.map_err(internal)?;
    projects.retain(|p| visible(&e, &p.name));
    let mut runs = e
        .store
        .runs(&RunFilter {
            limit: 15,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    runs.retain(|r| visible(&e, &r.project));
    // The overview updates in place (no reload): the matrix, the projects and the runs.
    let mut kinds = super::ui_deploys::deploy_kinds();
    kinds.extend(RELOAD_KINDS);
    kinds.push("project.removed");
    Ok(layout(
        "Overview",
        "/",
        html! {
            h1 { "Overview" }
            h2 { "Services" }
            div #matrix data-live { (matrix) }
            h2 { "Projects" }
            div #projects data-live {
            table {
                thead { tr { th { "Project" } th { "Source" } th { "Polling" } th { "Added" } } }
                tbody {
                    @for p in &projects {
                        tr {
                            td { a href={"/projects/" (p.name)} { (p.name) } }
                            td.mono { (p.source) }
                            td { @if p.poll_interval_s > 0 { "every " (p.poll_interval_s) " s" } @else { "off" } }
                            td.meta { (when(p.created_ms)) }
                        }
                    }
                    @if projects.is_empty() { tr { td colspan="4" .meta { "No projects yet. Add one with `sluice project add PATH_OR_URL`." } } }
                }
            }
            }
            h2 { "Recent runs" }
            div #recent-runs data-live { (runs_table(&runs)) }
            (super::ui_deploys::live_sections(&kinds, last))
        },
    ))
}

pub(super) async fn project_page(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> Page {
    let p = match e.store.project(&name).await {
        Ok(p) => p,
        Err(sluice_store::StoreError::NotFound(_)) => {
            return Err(error_page(
                StatusCode::NOT_FOUND,
                format!("project `{name}` is not registered"),
            ));
        }
        Err(err) => return Err(internal(err)),
    };
    let heads = e.store.branch_heads(&name).await.map_err(internal)?;
    let runs = e
        .store
        .runs(&RunFilter {
            project: Some(name.clone()),
            limit: 20,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let rels = e
        .store
        .releases(&ReleaseFilter {
            project: Some(name.clone()),
            service: None,
            limit: 20,
        })
        .await
        .map_err(internal)?;
    let base = e.base_url();
    Ok(layout(
        &p.name,
        "/",
        html! {
            h1 { "Project " (p.name) }
            div.card.kv {
                span.meta { "Source" } span.mono { (p.source) }
                span.meta { "Polling" } span { @if p.poll_interval_s > 0 { "every " (p.poll_interval_s) " s" } @else { "off" } }
                span.meta { "Webhooks" } span.mono { (base) "/hooks/{github|gitlab|bitbucket|generic}/" (p.name) }
            }
            h2 { "Branches" }
            table {
                thead { tr { th { "Branch" } th { "Head" } th { "Seen" } } }
                tbody { @for h in &heads { tr { td { (h.branch) } td.mono { (short(&h.commit)) } td.meta { (when(h.updated_ms)) } } } }
            }
            h2 { "Runs" }
            (runs_table(&runs))
            h2 { "Releases" }
            (releases_table(&rels))
            (PreEscaped(LIVE_RELOAD))
        },
    ))
}

pub(super) async fn runs_page(State(e): State<Arc<Engine>>) -> Page {
    let mut runs = e
        .store
        .runs(&RunFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    runs.retain(|r| visible(&e, &r.project));
    Ok(layout(
        "Runs",
        "/runs",
        html! { h1 { "Runs" } (runs_table(&runs)) (PreEscaped(LIVE_RELOAD)) },
    ))
}

pub(super) async fn releases_page(State(e): State<Arc<Engine>>) -> Page {
    let mut rels = e
        .store
        .releases(&ReleaseFilter {
            limit: 200,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    rels.retain(|r| visible(&e, &r.project));
    Ok(layout(
        "Releases",
        "/releases",
        html! { h1 { "Releases" } (releases_table(&rels)) (PreEscaped(LIVE_RELOAD)) },
    ))
}

pub(super) async fn events_page(State(e): State<Arc<Engine>>) -> Page {
    let last = e.store.last_event_seq().await.map_err(internal)?;
    let mut events = e
        .store
        .events(&EventFilter {
            after: (last - 200).max(0),
            limit: 200,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let caller = super::auth::caller();
    events.retain(|ev| {
        caller
            .as_ref()
            .is_some_and(|c| e.may_see_event(c, ev.project.as_deref()))
    });
    Ok(layout(
        "Events",
        "/events",
        html! {
            h1 { "Event log" }
            p.meta { "Every state change, newest first. This page follows the log live." }
            table {
                thead { tr { th { "#" } th { "Time" } th { "Kind" } th { "Actor" } th { "Subject" } th { "Details" } } }
                tbody id="events" {
                    @for ev in events.iter().rev() {
                        tr {
                            td.mono { (ev.seq) } td.meta { (when(ev.time_ms)) } td { code { (ev.kind.as_str()) } }
                            td { (ev.actor) } td.mono { (ev.subject) } td.mono { (ev.payload.to_string()) }
                        }
                    }
                }
            }
            (PreEscaped(format!(r#"<script>
(function(){{var tb=document.getElementById('events');var es=new EventSource('/api/v1/events/stream?after={last}');
window.addEventListener('pagehide',function(){{es.close();}});window.addEventListener('pageshow',function(e){{if(e.persisted)location.reload();}});
es.onmessage=null;function add(m){{var e=JSON.parse(m.data);var tr=document.createElement('tr');
[e.seq,new Date(e.time_ms).toISOString(),e.kind,e.actor,e.subject,JSON.stringify(e.payload)].forEach(function(v,i){{var td=document.createElement('td');td.textContent=v;if(i==0||i>3)td.className='mono';tr.appendChild(td);}});
tb.insertBefore(tr,tb.firstChild);}}
{kinds}}})();</script>"#, kinds = sluice_core::EventKind::ALL.iter().map(|k| format!("es.addEventListener('{}',add);", k.as_str())).collect::<String>())))
        },
    ))
}

/// Lays steps out by depth (longest chain of needs before them) for the DAG drawing.
fn layout_dag(steps: &[Step]) -> (Vec<(usize, usize)>, usize, usize) {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut depth = vec![0usize; steps.len()];
    // Steps are stored in definition order and needs are acyclic: relax until stable.
    for _ in 0..steps.len() {
        let mut changed = false;
        for (i, s) in steps.iter().enumerate() {
            for n in &s.needs {
                if let Some(&j) = index.get(n.as_str())
                    && depth[i] < depth[j] + 1
                {
                    depth[i] = depth[j] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows_in_col: HashMap<usize, usize> = HashMap::new();
    let pos: Vec<(usize, usize)> = depth
        .iter()
        .map(|&d| {
            let r = rows_in_col.entry(d).or_insert(0);
            *r += 1;
            (d, *r - 1)
        })
        .collect();
    let cols = depth.iter().max().map(|m| m + 1).unwrap_or(1);
    let rows = rows_in_col.values().max().copied().unwrap_or(1);
    (pos, cols, rows)
}

fn dag_svg(steps: &[Step]) -> Markup {
    const W: usize = 190;
    const H: usize = 44;
    const GX: usize = 60;
    const GY: usize = 14;
    let (pos, cols, rows) = layout_dag(steps);
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let xy = |i: usize| (8 + pos[i].0 * (W + GX), 8 + pos[i].1 * (H + GY));
    let width = 16 + cols * (W + GX) - GX;
    let height = 16 + rows * (H + GY) - GY;
    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox={"0 0 " (width) " " (height)} role="img" aria-label="pipeline steps" {
            @for (i, s) in steps.iter().enumerate() {
                @for n in &s.needs {
                    @if let Some(&j) = index.get(n.as_str()) {
                        @let (x1, y1) = xy(j);
                        @let (x2, y2) = xy(i);
                        path.edge d={"M" (x1 + W) " " (y1 + H / 2) " C" (x1 + W + GX / 2) " " (y1 + H / 2) " " (x2 - GX / 2) " " (y2 + H / 2) " " (x2) " " (y2 + H / 2)} {}
                    }
                }
            }
            @for (i, s) in steps.iter().enumerate() {
                @let (x, y) = xy(i);
                g.node data-step=(s.name) {
                    a href={"#log-" (s.name.replace('/', "-"))} {
                        rect class={"f-" (s.status.as_str())} x=(x) y=(y) width=(W) height=(H) {}
                        text x=(x + 10) y=(y + 18) { (s.name) @if s.gate { " ◆" } }
                        text.sub x=(x + 10) y=(y + 35) { (s.status.as_str().replace('_', " ")) @if s.finished_ms.is_some() { " " (dur(s.started_ms, s.finished_ms)) } }
                    }
                }
            }
        }
    }
}

pub(super) async fn run_page(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> Page {
    let not_found = || error_page(StatusCode::NOT_FOUND, format!("run `{id}` not found"));
    let rid: i64 = id.parse().map_err(|_| not_found())?;
    let run = match e.store.run(rid).await {
        Ok(r) => r,
        Err(sluice_store::StoreError::NotFound(_)) => return Err(not_found()),
        Err(err) => return Err(internal(err)),
    };
    let steps = e.store.steps(rid).await.map_err(internal)?;
    let lines = e
        .store
        .logs(&LogFilter {
            run_id: rid,
            step: None,
            after: 0,
            limit: 20_000,
        })
        .await
        .map_err(internal)?;
    let last_line = lines.last().map(|l| l.id).unwrap_or(0);
    let rels: Vec<Release> = e
        .store
        .releases(&ReleaseFilter {
            project: Some(run.project.clone()),
            service: None,
            limit: 500,
        })
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|r| r.run_id == rid)
        .collect();
    let mut by_step: HashMap<&str, Vec<&sluice_store::LogLine>> = HashMap::new();
    for l in &lines {
        by_step.entry(l.step.as_str()).or_default().push(l);
    }
    let mut log_sections: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
    for l in &lines {
        if !log_sections.contains(&l.step) {
            log_sections.insert(0, l.step.clone());
        }
    }
    let live = !run.status.is_terminal();
    let step_of = |name: &str| steps.iter().find(|s| s.name == name);
    Ok(layout(
        &format!("Run #{}", run.id),
        "/runs",
        html! {
            h1 { "Run #" (run.id) " " span #run-status { (badge(run.status.as_str())) } }
            div.card.kv {
                span.meta { "Project" } a href={"/projects/" (run.project)} { (run.project) }
                span.meta { "Environment" } span { (run.env) }
                span.meta { "Commit" } span.mono { (run.commit) " on " (run.branch) }
                span.meta { "Trigger" } span { (run.trigger) " by " (run.actor) @if let Some(o) = run.rerun_of { " (re-run of " a href={"/runs/" (o)} { "#" (o) } ")" } }
                span.meta { "Created" } span { (when(run.created_ms)) }
                span.meta { "Duration" } span { (dur(run.started_ms, run.finished_ms)) }
            }
            h2 { "Steps" }
            div.dag { (dag_svg(&steps)) }
            @if steps.iter().any(|s| s.tests.is_some()) {
                h2 { "Tests" }
                table {
                    thead { tr { th { "Step" } th { "Passed" } th { "Failed" } th { "Skipped" } th { "Failing tests" } } }
                    tbody {
                        @for s in &steps {
                            @if let Some(t) = &s.tests {
                                tr { td { (s.name) } td { (t.passed) } td class=@if t.failed > 0 { "fail" } { (t.failed) } td { (t.skipped) }
                                     td.mono { @for f in &t.failing { div.fail { (f) } } } }
                            }
                        }
                    }
                }
            }
            @if steps.iter().any(|s| s.vuln_report.is_some()) {
                h2 { "Vulnerability reports" }
                @for s in &steps {
                    @if let Some(r) = &s.vuln_report { (vuln_report(&s.name, r)) }
                }
            }
            @if !rels.is_empty() {
                h2 { "Releases" }
                (releases_table(&rels))
            }
            h2 { "Logs" }
            @for name in &log_sections {
                @let st = step_of(name);
                div.card id={"log-" (name.replace('/', "-"))} {
                    b { (name) } " "
                    @if let Some(s) = st {
                        span.step-status data-step=(s.name) { (badge(s.status.as_str())) }
                        @if s.gate { " " span.meta { "gate" } }
                        @if s.attempt > 1 { " " span.meta { "attempt " (s.attempt) } }
                        @if let Some(c) = s.exit_code { " " span.meta { "exit " (c) } }
                        @if let Some(id) = &s.image_id { " " span.meta.mono title=(id) { "image " (short_image(id)) } }
                    }
                    pre.log data-step=(name) {
                        @if let Some(ls) = by_step.get(name.as_str()) {
                            @for l in ls { span class=(l.stream) { (l.line) "\n" } }
                        }
                    }
                }
            }
            @if live {
                (PreEscaped(format!(r#"<script>
(function(){{
var es=new EventSource('/api/v1/runs/{rid}/logs/stream?after={last_line}');
function pre(step){{var p=document.querySelector('pre.log[data-step="'+CSS.escape(step)+'"]');return p;}}
es.addEventListener('log',function(m){{var l=JSON.parse(m.data);var p=pre(l.step);if(!p)return;
var s=document.createElement('span');s.className=l.stream;s.textContent=l.line+'\n';p.appendChild(s);p.scrollTop=p.scrollHeight;}});
es.addEventListener('end',function(){{es.close();setTimeout(function(){{location.reload()}},300);}});
var ev=new EventSource('/api/v1/events/stream?subject=run/{rid}');var t=null;
window.addEventListener('pagehide',function(){{es.close();ev.close();}});window.addEventListener('pageshow',function(e){{if(e.persisted)location.reload();}});
function refresh(){{t=null;fetch('/api/v1/runs/{rid}').then(function(r){{return r.json()}}).then(function(run){{
var rb=document.querySelector('#run-status .badge');rb.className='badge s-'+run.status;rb.textContent=run.status.replace('_',' ');
run.steps.forEach(function(s){{document.querySelectorAll('[data-step="'+CSS.escape(s.name)+'"] rect').forEach(function(r){{r.setAttribute('class','f-'+s.status)}});
document.querySelectorAll('.step-status[data-step="'+CSS.escape(s.name)+'"] .badge').forEach(function(b){{b.className='badge s-'+s.status;b.textContent=s.status.replace('_',' ')}});
document.querySelectorAll('g.node[data-step="'+CSS.escape(s.name)+'"] text.sub').forEach(function(x){{x.textContent=s.status.replace('_',' ')}});}});}});}}
['step.started','step.finished','step.skipped','step.retrying','run.started','run.finished'].forEach(function(k){{ev.addEventListener(k,function(){{if(!t)t=setTimeout(refresh,100);}});}});
}})();
</script>"#)))
            }
        },
    ))
}
