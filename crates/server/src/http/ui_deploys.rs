//! The deployment pages of the web UI: the services x environments matrix on the home page,
//! the deployment history (`/deployments`) and one deployment (`/deployments/{id}`: header,
//! traffic split, instances and the timeline of decisions with the figures behind each).
//!
//! Buttons are plain HTML forms posting to `/ui/...` routes. Each handler only parses the
//! form, calls the engine (the same functions the API calls) and answers `303 See Other`
//! back to the page, or an error page with the engine's message and a 4xx status. There is
//! no authentication yet: when it comes (and CSRF tokens with it), it wraps these handlers
//! without changing them.
//!
//! Live updates: pages mark the parts that change with `data-live` and an id; a small script
//! listens to the event stream and, debounced, fetches the page again and swaps those parts
//! in place (no reload, so scroll position and the browser's state survive). The deployment
//! page also appends new timeline rows straight from the stream.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, post};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::Value;
use sluice_auth::Action;
use sluice_core::{DeployStatus, EventKind};
use sluice_runtime::{InstanceState, InstanceStatus};
use sluice_store::{Deployment, DeploymentFilter, Event, EventFilter};

use super::ApiError;
use super::ui::{Page, badge, dur, error_page, internal, layout, when};
use crate::engine::access::Caller;
use crate::engine::{Engine, EngineError};

/// One row of `Engine::status()` (the JSON of `GET /api/v1/status`).
#[derive(Deserialize)]
struct TargetView {
    project: String,
    service: String,
    env: String,
    desired_version: Option<i64>,
    stable_version: Option<i64>,
    #[serde(default)]
    replicas: u32,
    expose: Option<String>,
    #[serde(default)]
    ready: usize,
    #[serde(default)]
    traffic: String,
    #[serde(default)]
    health: String,
    deployment: Option<RunningView>,
    #[serde(default)]
    instances: Vec<InstanceStatus>,
}

#[derive(Deserialize)]
struct RunningView {
    id: i64,
    version: i64,
    phase: String,
}

impl TargetView {
    fn key(&self) -> String {
        format!("{}/{}/{}", self.project, self.service, self.env)
    }

    fn is(&self, project: &str, service: &str, env: &str) -> bool {
        self.project == project && self.service == service && self.env == env
    }
}

async fn targets(e: &Engine) -> Result<Vec<TargetView>, Response> {
    let rows = e.status().await.map_err(engine_failure)?;
    let mut out = Vec::with_capacity(rows.len());
    for v in rows {
        let t: TargetView = serde_json::from_value(v).map_err(internal)?;
        if super::auth::visible(e, &t.project) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Parses the status' `traffic` text (`"v1 80%, v2 20%"`) into (version, percent) pairs.
fn traffic_split(s: &str) -> Vec<(String, u32)> {
    s.split(", ")
        .filter_map(|part| {
            let (v, p) = part.rsplit_once(' ')?;
            Some((v.to_string(), p.trim_end_matches('%').parse().ok()?))
        })
        .collect()
}

/// The traffic split as a small SVG bar (one segment per version) with a legend.
fn traffic_bar(traffic: &str, width: u32) -> Markup {
    let split = traffic_split(traffic);
    let total: u32 = split.iter().map(|(_, p)| p).sum();
    // (x, width) of each segment; the last one takes the rounding remainder.
    let mut segs = Vec::with_capacity(split.len());
    let mut x = 0u32;
    for (i, (_, p)) in split.iter().enumerate() {
        let w = if i + 1 == split.len() {
            width.saturating_sub(x)
        } else {
            (width * p).checked_div(total).unwrap_or(0)
        };
        segs.push((x, w));
        x += w;
    }
    html! {
        span.traffic data-traffic=(traffic) {
            @if split.is_empty() || total == 0 {
                span.meta { "no traffic" }
            } @else {
                svg.bar xmlns="http://www.w3.org/2000/svg" width=(width) height="10" viewBox={"0 0 " (width) " 10"} role="img" aria-label={"traffic: " (traffic)} {
                    @for (i, ((v, p), (x, w))) in split.iter().zip(&segs).enumerate() {
                        rect class={"t" (i.min(3))} x=(x) y="0" width=(w) height="10" { title { (v) " " (p) "%" } }
                    }
                }
                " "
                @for (i, (v, p)) in split.iter().enumerate() {
                    span class={"leg t" (i.min(3))} { (v) " " (p) "%" } " "
                }
            }
        }
    }
}

fn instance_state(s: &InstanceState) -> String {
    match s {
        InstanceState::Starting => "starting".into(),
        InstanceState::Ready => "ready".into(),
        InstanceState::Unhealthy => "unhealthy".into(),
        InstanceState::Restarting { attempt } => format!("restarting (attempt {attempt})"),
        InstanceState::CrashLoop => "crash loop".into(),
        InstanceState::Exited { code: Some(c) } => format!("exited ({c})"),
        InstanceState::Exited { code: None } => "exited".into(),
        InstanceState::Stopping => "stopping".into(),
        InstanceState::Stopped => "stopped".into(),
    }
}

/// A button that posts a small form. `fields` become hidden inputs.
fn button(action: &str, fields: &[(&str, String)], label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            @if let Some(t) = super::auth::csrf() { input type="hidden" name="_csrf" value=(t); }
            @for (name, value) in fields { input type="hidden" name=(*name) value=(value); }
            button type="submit" class=(class) { (label) }
        }
    }
}

/// What the buttons of one target need to know.
struct TargetActions {
    project: String,
    service: String,
    env: String,
    /// The release a rollback returns to (the last one that succeeded before the current).
    rollback_to: Option<i64>,
    /// The environment after this one (in `sluice.yml` order) the service deploys to.
    promote_to: Option<String>,
    /// A release serves here, so it can be promoted.
    serving: bool,
    /// A deployment of the target is running.
    running: bool,
}

impl TargetActions {
    async fn of(e: &Engine, t: &TargetView) -> Result<TargetActions, Response> {
        let current = t.stable_version.or(t.desired_version);
        let history = e
            .store
            .deployments(&DeploymentFilter {
                project: Some(t.project.clone()),
                service: Some(t.service.clone()),
                env: Some(t.env.clone()),
                running: false,
                limit: 1000,
            })
            .await
            .map_err(internal)?;
        // The same choice `Engine::rollback` makes without `to`; naming it in the form keeps
        // the button's label and its effect the same even if the history moves meanwhile.
        let rollback_to = history
            .iter()
            .filter(|d| d.status == DeployStatus::Succeeded && Some(d.version) != current)
            .map(|d| d.version)
            .next();
        let promote_to = match current {
            Some(v) => next_env(e, &t.project, &t.service, &t.env, v).await,
            None => None,
        };
        Ok(TargetActions {
            project: t.project.clone(),
            service: t.service.clone(),
            env: t.env.clone(),
            rollback_to,
            promote_to,
            serving: t.stable_version.is_some(),
            running: t.deployment.is_some(),
        })
    }

    /// Rollback and promotion of the target; none while a deployment of it runs (its own
    /// Abort is the way back then, and a new request would only queue behind it).
    fn buttons(&self, back: &str) -> Markup {
        if self.running {
            return html! {};
        }
        let base = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
            let mut f = vec![
                ("project", self.project.clone()),
                ("service", self.service.clone()),
                ("back", back.to_string()),
            ];
            f.extend_from_slice(extra);
            f
        };
        html! {
            @if let Some(v) = self.rollback_to {
                (button("/ui/rollback", &base(&[("env", self.env.clone()), ("to", v.to_string())]), &format!("Rollback to v{v}"), "warn"))
            }
            @if let (Some(to), true) = (&self.promote_to, self.serving) {
                (button("/ui/promote", &base(&[("from", self.env.clone()), ("to", to.clone())]), &format!("Promote to {to}"), "primary"))
            }
        }
    }
}

/// The environment after `env`, in `sluice.yml` order, that `service` deploys to (read from
/// the configuration of the release that serves, so it is what a promotion would check).
async fn next_env(
    e: &Engine,
    project: &str,
    service: &str,
    env: &str,
    version: i64,
) -> Option<String> {
    let release = e.release_of(project, service, Some(version)).await.ok()?;
    let mirror = e.mirror_of(project).await.ok()?;
    let (_, parsed) = e.config_at(&mirror, project, &release.commit).await.ok()?;
    let config = parsed.as_ref().as_ref().ok()?;
    let envs: Vec<&str> = config
        .environments
        .iter()
        .map(|x| x.name.as_str())
        .filter(|x| config.deploy_target(service, x).is_some())
        .collect();
    let at = envs.iter().position(|x| *x == env)?;
    envs.get(at + 1).map(|x| x.to_string())
}

fn health(t: &TargetView) -> Markup {
    let ok = t.health == "healthy" && t.ready as u32 >= t.replicas;
    // Instances of a release being deployed are not ready for a while: that is progress,
    // not trouble.
    let class = if ok {
        "health ok"
    } else if t.instances.is_empty() {
        "health"
    } else if t.deployment.is_some() {
        "health warn"
    } else {
        "health bad"
    };
    // Ready/total per version while two run side by side (a deployment, a warm blue), so
    // the counts never read like "3/2".
    let mut versions: Vec<(&str, usize, usize)> = Vec::new();
    for i in &t.instances {
        match versions.iter_mut().find(|(v, _, _)| *v == i.version) {
            Some(x) => {
                x.1 += usize::from(i.ready);
                x.2 += 1;
            }
            None => versions.push((&i.version, usize::from(i.ready), 1)),
        }
    }
    versions.sort_by_key(|(v, _, _)| v.trim_start_matches('v').parse::<i64>().unwrap_or(0));
    let text = match versions.as_slice() {
        [] => format!("0/{} ready", t.replicas),
        [(_, r, _)] => format!("{r}/{} ready", t.replicas),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|(v, r, n)| format!("{v} {r}/{n}"))
                .collect();
            format!("{} ready", parts.join(" · "))
        }
    };
    html! {
        span class=(class) data-health=(t.health) title=(t.health) {
            (text)
            @if !ok && !t.instances.is_empty() { " · " (t.health) }
        }
    }
}

/// The services x environments matrix (rows: project/service; columns: environments).
pub(super) async fn matrix(e: &Engine) -> Result<Markup, Response> {
    let rows = targets(e).await?;
    if rows.is_empty() {
        return Ok(html! {
            p.meta { "Nothing is deployed yet. Give a service a `deploy:` section in sluice.yml; a successful pipeline on an environment's branch deploys it." }
        });
    }
    // Columns in sluice.yml order (first seen across projects), then any other.
    let mut envs: Vec<String> = Vec::new();
    let mut services: Vec<(String, String)> = Vec::new();
    let mut actions: HashMap<String, TargetActions> = HashMap::new();
    for t in &rows {
        let a = TargetActions::of(e, t).await?;
        if let Some(v) = t.stable_version.or(t.desired_version) {
            for x in env_order(e, &t.project, &t.service, v).await {
                if !envs.contains(&x) {
                    envs.push(x);
                }
            }
        }
        if !envs.contains(&t.env) {
            envs.push(t.env.clone());
        }
        let s = (t.project.clone(), t.service.clone());
        if !services.contains(&s) {
            services.push(s);
        }
        actions.insert(t.key(), a);
    }
    Ok(html! {
        table.matrix {
            thead { tr { th { "Service" } @for x in &envs { th { (x) } } } }
            tbody {
                @for (p, s) in &services {
                    tr {
                        td { b { (s) } br; a.meta href={"/projects/" (p)} { (p) } }
                        @for x in &envs {
                            @match rows.iter().find(|t| t.is(p, s, x)) {
                                None => td.meta.empty { "not deployed" },
                                Some(t) => td { (cell(t, actions.get(&t.key()))) },
                            }
                        }
                    }
                }
            }
        }
    })
}

/// Environments of `service` in `sluice.yml` order at a release.
async fn env_order(e: &Engine, project: &str, service: &str, version: i64) -> Vec<String> {
    let Ok(release) = e.release_of(project, service, Some(version)).await else {
        return vec![];
    };
    let Ok(mirror) = e.mirror_of(project).await else {
        return vec![];
    };
    let Ok((_, parsed)) = e.config_at(&mirror, project, &release.commit).await else {
        return vec![];
    };
    match parsed.as_ref() {
        Ok(c) => c.environments.iter().map(|x| x.name.clone()).collect(),
        Err(_) => vec![],
    }
}

fn cell(t: &TargetView, actions: Option<&TargetActions>) -> Markup {
    let serving = t.stable_version.map(|v| v.to_string()).unwrap_or_default();
    let desired = t.desired_version.map(|v| v.to_string()).unwrap_or_default();
    html! {
        div.cell data-target=(t.key()) data-serving=(serving) data-desired=(desired) {
            div.rel {
                @match t.stable_version {
                    Some(v) => b.serving { "v" (v) },
                    None => span.meta { "not serving" },
                }
                @if t.desired_version.is_some() && t.desired_version != t.stable_version {
                    " " span.desired title="desired release" { "→ v" (desired) }
                }
                " " (health(t))
            }
            div { (traffic_bar(&t.traffic, 90)) }
            @if let Some(d) = &t.deployment {
                div.running {
                    a href={"/deployments/" (d.id)} data-deployment=(d.id) { "#" (d.id) } " "
                    (badge("running")) " v" (d.version) " · " span.phase { (d.phase) }
                }
            }
            @if let Some(a) = actions {
                div.actions { (a.buttons("/")) }
            }
        }
    }
}

/// Kinds whose events change what the matrix and the deployment pages show.
pub(super) fn deploy_kinds() -> Vec<&'static str> {
    EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| {
            k.starts_with("deploy.")
                || k.starts_with("instance")
                || *k == "target.desired"
                || *k == "drift.healed"
        })
        .collect()
}

/// A script that, on any event of `kinds` after `after`, fetches the page again (debounced)
/// and swaps every element marked `data-live` (by id) in place.
pub(super) fn live_sections(kinds: &[&str], after: i64) -> Markup {
    let kinds = serde_json::to_string(kinds).unwrap_or_else(|_| "[]".into());
    PreEscaped(
        LIVE_SECTIONS
            .replace("__AFTER__", &after.to_string())
            .replace("__KINDS__", &kinds),
    )
}

/// One event stream per page (browsers allow few connections per host, and pages kept in
/// the back-forward cache may hold theirs): a page script that wants the events themselves
/// sets `window.sluiceLive`, which is called with each one before the refresh.
const LIVE_SECTIONS: &str = r#"<script>
(function(){var es=new EventSource('/api/v1/events/stream?after=__AFTER__');var t=null,busy=false,again=false;
window.addEventListener('pagehide',function(){es.close();});window.addEventListener('pageshow',function(e){if(e.persisted)location.reload();});
function later(){if(!t)t=setTimeout(refresh,250);}
function refresh(){t=null;if(busy){again=true;return;}busy=true;
fetch(location.href,{headers:{accept:'text/html'},cache:'no-store'}).then(function(r){return r.text()}).then(function(h){
var d=new DOMParser().parseFromString(h,'text/html');
d.querySelectorAll('[data-live]').forEach(function(n){var o=document.getElementById(n.id);if(o&&o.innerHTML!==n.innerHTML)o.innerHTML=n.innerHTML;});
window.__sluiceRefreshes=(window.__sluiceRefreshes||0)+1;
}).catch(function(){}).then(function(){busy=false;if(again){again=false;later();}});}
function on(m){if(window.sluiceLive){try{window.sluiceLive(JSON.parse(m.data));}catch(x){}}later();}
__KINDS__.forEach(function(k){es.addEventListener(k,on);});})();
</script>"#;

pub(super) async fn list_page(State(e): State<Arc<Engine>>) -> Page {
    let last = e.store.last_event_seq().await.map_err(internal)?;
    let deps = e
        .store
        .deployments(&DeploymentFilter {
            limit: 200,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    Ok(layout(
        "Deployments",
        "/deployments",
        html! {
            h1 { "Deployments" }
            div #deployments data-live { (deployments_table(&deps)) }
            (live_sections(&deploy_kinds(), last))
        },
    ))
}

fn deployments_table(deps: &[Deployment]) -> Markup {
    html! {
        table {
            thead { tr { th { "Deployment" } th { "Service" } th { "Env" } th { "Release" } th { "From" } th { "Strategy" } th { "Status" } th { "Trigger" } th { "Started" } th { "Duration" } th { "Reason" } } }
            tbody {
                @for d in deps {
                    tr data-deployment=(d.id) {
                        td { a href={"/deployments/" (d.id)} { "#" (d.id) } }
                        td.nw { b { (d.service) } " " a.meta href={"/projects/" (d.project)} { (d.project) } }
                        td { (d.env) }
                        td { "v" (d.version) }
                        td { @if let Some(f) = d.from_version { "v" (f) } @else { span.meta { "—" } } }
                        td.nw { (d.strategy) }
                        td.nw { (badge(d.status.as_str())) @if !d.status.is_terminal() { " " span.meta { (d.phase) } } }
                        td { (d.trigger) " " span.meta { "by " (d.actor) } }
                        td.meta { (when(d.created_ms)) }
                        td.nw { (dur(Some(d.created_ms), d.finished_ms)) }
                        td { @if let Some(r) = &d.reason { (r) } }
                    }
                }
                @if deps.is_empty() { tr { td colspan="11" .meta { "No deployments yet." } } }
            }
        }
    }
}

fn is_paused(d: &Deployment) -> bool {
    serde_json::from_value::<sluice_deploy::Deployment>(d.state.clone())
        .map(|m| m.is_paused())
        .unwrap_or(false)
}

/// Payload fields the timeline's message already says (or that identify the deployment).
const SHOWN: &[&str] = &[
    "deployment",
    "service",
    "env",
    "version",
    "from_version",
    "strategy",
    "status",
    "reason",
    "what",
    "kind",
    "figures",
    "at_ms",
];

/// One timeline line: the message and the figures behind it. Decisions carry both (`what`,
/// `figures`); the start and the end are summarised, with their other fields as figures.
/// `TIMELINE_JS` renders appended rows the same way.
fn event_line(ev: &Event) -> (String, Vec<(String, String)>) {
    let p = &ev.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
    let msg = match p.get("what").and_then(Value::as_str) {
        Some(w) => w.to_string(),
        None => match ev.kind {
            EventKind::DeployStarted => format!(
                "deploying v{}{} ({})",
                p.get("version").map(fmt_value).unwrap_or_default(),
                p.get("from_version")
                    .filter(|v| !v.is_null())
                    .map(|v| format!(" from v{}", fmt_value(v)))
                    .unwrap_or_default(),
                s("strategy")
            ),
            EventKind::DeployFinished => {
                let r = s("reason");
                format!(
                    "{}{}",
                    s("status").replace('_', " "),
                    if r.is_empty() {
                        String::new()
                    } else {
                        format!(": {r}")
                    }
                )
            }
            _ => String::new(),
        },
    };
    let mut figures = Vec::new();
    match p.get("figures").filter(|f| f.is_object()) {
        Some(f) => flatten("", f, &mut figures),
        None => {
            if let Some(o) = p.as_object() {
                for (k, v) in o {
                    if !SHOWN.contains(&k.as_str()) && !v.is_null() {
                        flatten(k, v, &mut figures);
                    }
                }
            }
        }
    }
    figures.sort();
    (msg, figures)
}

/// Nested objects become dotted keys (`stable.error_rate`), so every figure reads alike.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v.as_object() {
        Some(o) => {
            for (k, v) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        None => out.push((prefix.to_string(), fmt_value(v))),
    }
}

/// A figure for display: strings as they are, floats to at most four decimals.
fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => {
            let s = format!("{:.4}", n.as_f64().unwrap_or(0.0));
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if s.is_empty() || s == "-" || s == "-0" {
                "0".into()
            } else {
                s.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// `HH:MM:SS.mmm` (UTC) for timeline rows, where events are milliseconds apart.
fn clock(ms: i64) -> String {
    let ms = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    )
}

fn timeline_row(ev: &Event, start_ms: i64) -> Markup {
    let (msg, figures) = event_line(ev);
    let kind = ev.payload.get("kind").and_then(Value::as_str);
    html! {
        tr data-seq=(ev.seq) data-kind=(ev.kind.as_str()) {
            td.meta title=(when(ev.time_ms)) { (clock(ev.time_ms)) }
            td.meta { "+" (dur(Some(start_ms), Some(ev.time_ms))) }
            td { code { (kind.unwrap_or(ev.kind.as_str())) } }
            td { (msg) }
            td.figs { @for (k, v) in &figures { span.fig { span.k { (k) } "=" (v) } " " } }
        }
    }
}

/// Appends rows for new events of this deployment (fed by the page's one event stream).
const TIMELINE_JS: &str = r#"<script>
(function(){var id=__ID__,start=__START__,tb=document.getElementById('timeline');
var shown=__SHOWN__;
function fmt(v){if(typeof v==='number')return Number.isInteger(v)?String(v):String(+v.toFixed(4));if(typeof v==='string')return v;return JSON.stringify(v);}
function pad(n,w){n=String(n);while(n.length<w)n='0'+n;return n;}
function clock(ms){var d=new Date(ms);return pad(d.getUTCHours(),2)+':'+pad(d.getUTCMinutes(),2)+':'+pad(d.getUTCSeconds(),2)+'.'+pad(d.getUTCMilliseconds(),3);}
function dur(ms){ms=Math.max(0,ms);if(ms<1000)return ms+' ms';if(ms<60000)return Math.floor(ms/1000)+'.'+Math.floor(ms%1000/100)+' s';return Math.floor(ms/60000)+'m '+(Math.floor(ms/1000)%60)+'s';}
function msg(e){var p=e.payload||{};if(typeof p.what==='string')return p.what;
if(e.kind==='deploy.started')return 'deploying v'+fmt(p.version)+(p.from_version!=null?' from v'+fmt(p.from_version):'')+' ('+(p.strategy||'')+')';
if(e.kind==='deploy.finished')return String(p.status||'').replace('_',' ')+(p.reason?': '+p.reason:'');return '';}
function flat(pre,v,out){if(v&&typeof v==='object'&&!Array.isArray(v)){Object.keys(v).forEach(function(k){flat(pre?pre+'.'+k:k,v[k],out);});}else out.push([pre,fmt(v)]);}
function figs(p){var out=[];if(p.figures&&typeof p.figures==='object'&&!Array.isArray(p.figures)){flat('',p.figures,out);}
else{Object.keys(p).forEach(function(k){if(shown.indexOf(k)<0&&p[k]!=null)flat(k,p[k],out);});}
return out.sort(function(a,b){return a[0]<b[0]?-1:a[0]>b[0]?1:0;});}
function td(text,cls){var c=document.createElement('td');if(cls)c.className=cls;if(text!=null)c.textContent=text;return c;}
function add(e){if(e.subject!=='deployment/'+id)return;if(tb.querySelector('tr[data-seq="'+e.seq+'"]'))return;
var tr=document.createElement('tr');tr.setAttribute('data-seq',e.seq);tr.setAttribute('data-kind',e.kind);
var t=td(clock(e.time_ms),'meta');t.title=new Date(e.time_ms).toISOString();tr.appendChild(t);
tr.appendChild(td('+'+dur(e.time_ms-start),'meta'));
var k=td(null);var code=document.createElement('code');code.textContent=(e.payload&&typeof e.payload.kind==='string')?e.payload.kind:e.kind;k.appendChild(code);tr.appendChild(k);
tr.appendChild(td(msg(e)));var f=td(null,'figs');
figs(e.payload||{}).forEach(function(kv){var s=document.createElement('span');s.className='fig';var kk=document.createElement('span');kk.className='k';kk.textContent=kv[0];s.appendChild(kk);s.appendChild(document.createTextNode('='+kv[1]));f.appendChild(s);f.appendChild(document.createTextNode(' '));});
tr.appendChild(f);var empty=tb.querySelector('tr.empty');if(empty)empty.remove();tb.appendChild(tr);}
window.sluiceLive=add;})();
</script>"#;

pub(super) async fn deployment_page(State(e): State<Arc<Engine>>, Path(id): Path<String>) -> Page {
    let not_found = || {
        error_page(
            StatusCode::NOT_FOUND,
            format!("deployment `{id}` not found"),
        )
    };
    let did: i64 = id.parse().ok().filter(|n| *n > 0).ok_or_else(not_found)?;
    // The cursor first: the live stream then starts exactly after what this page shows.
    let last = e.store.last_event_seq().await.map_err(internal)?;
    let d = match e.store.deployment(did).await {
        Ok(d) => d,
        Err(sluice_store::StoreError::NotFound(_)) => return Err(not_found()),
        Err(err) => return Err(internal(err)),
    };
    let events = e
        .store
        .events(&EventFilter {
            subject: Some(format!("deployment/{did}")),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let rows = targets(&e).await?;
    let target = rows.iter().find(|t| t.is(&d.project, &d.service, &d.env));
    let actions = match target {
        Some(t) => Some(TargetActions::of(&e, t).await?),
        None => None,
    };
    let back = format!("/deployments/{did}");
    let shown = serde_json::to_string(SHOWN).unwrap_or_else(|_| "[]".into());
    Ok(layout(
        &format!("Deployment #{did}"),
        "/deployments",
        html! {
            div #dep-head data-live {
                h1 { "Deployment #" (d.id) " " span #dep-status data-status=(d.status.as_str()) { (badge(d.status.as_str())) }
                     @if is_paused(&d) && !d.status.is_terminal() { " " span.badge.s-cancelled { "paused" } } }
                div.card.kv {
                    span.meta { "Service" } span { b { (d.service) } " · " a href={"/projects/" (d.project)} { (d.project) } }
                    span.meta { "Environment" } span { (d.env) }
                    span.meta { "Release" } span #dep-version { "v" (d.version) }
                    span.meta { "From" } span { @if let Some(f) = d.from_version { "v" (f) } @else { "— (first deploy)" } }
                    span.meta { "Strategy" } span { (d.strategy) }
                    span.meta { "Phase" } span #dep-phase { (d.phase) }
                    @if let Some(r) = &d.reason { span.meta { "Reason" } span #dep-reason { (r) } }
                    span.meta { "Trigger" } span { (d.trigger) " by " (d.actor) }
                    span.meta { "Started" } span { (when(d.created_ms)) }
                    span.meta { "Duration" } span { (dur(Some(d.created_ms), d.finished_ms)) }
                }
                @let waiting = crate::engine::gate::awaiting(&d);
                @if waiting {
                    div.card #dep-gate {
                        @match e.gate(&d).await {
                            Ok(g) => { "Waiting: " (g.to_string()) }
                            Err(err) => { "Gate: " (err.to_string()) }
                        }
                    }
                }
                div.actions {
                    @let f = [("back", back.clone())];
                    @if waiting {
                        (button(&format!("/ui/deployments/{did}/approve"), &f, "Approve", "primary"))
                    } @else if !d.status.is_terminal() {
                        @if is_paused(&d) {
                            (button(&format!("/ui/deployments/{did}/resume"), &f, "Resume", ""))
                        } @else {
                            (button(&format!("/ui/deployments/{did}/pause"), &f, "Pause", ""))
                        }
                        (button(&format!("/ui/deployments/{did}/promote"), &f, "Promote", "primary"))
                    }
                    @if !d.status.is_terminal() {
                        (button(&format!("/ui/deployments/{did}/abort"), &f, "Abort", "danger"))
                    }
                    @if let Some(a) = &actions { (a.buttons(&back)) }
                }
            }
            div #dep-target data-live {
                h2 { "Traffic now " span.meta { "(" (d.service) " in " (d.env) ")" } }
                @match target {
                    None => p.meta { "Nothing serves this target now." },
                    Some(t) => {
                        div.card {
                            (traffic_bar(&t.traffic, 240)) " · "
                            (health(t))
                            @if let Some(x) = &t.expose { " · " span.mono { (x) } }
                            @if let Some(r) = &t.deployment { @if r.id != d.id { " · now deploying " a href={"/deployments/" (r.id)} { "#" (r.id) } } }
                        }
                        h2 { "Instances" }
                        table {
                            thead { tr { th { "Instance" } th { "Version" } th { "Port" } th { "State" } th { "Ready" } th { "Restarts" } th { "Last error" } } }
                            tbody {
                                @for i in &t.instances {
                                    tr data-instance=(i.id) {
                                        td.mono.nw { (i.id) } td { (i.version) } td.mono.nw { (i.port) }
                                        td.nw { (instance_state(&i.state)) }
                                        td { @if i.ready { span.health.ok { "yes" } } @else { span.health.bad { "no" } } }
                                        td { (i.restarts) }
                                        // A ready instance's last error is history (often the
                                        // checks before it first answered): shown, but quiet.
                                        @match (&i.last_error, i.ready) {
                                            (Some(err), false) => td.mono { (err) },
                                            (Some(err), true) => td.mono.meta.old title="before it became ready" { (err) },
                                            (None, _) => td {},
                                        }
                                    }
                                }
                                @if t.instances.is_empty() { tr { td colspan="7" .meta { "No instances." } } }
                            }
                        }
                    }
                }
            }
            h2 { "Timeline" }
            p.meta { "Every step the strategy took, with the measured values behind each decision." }
            table.timeline {
                thead { tr { th { "Time (UTC)" } th { "" } th { "Kind" } th { "What" } th { "Figures" } } }
                tbody #timeline {
                    @for ev in &events { (timeline_row(ev, d.created_ms)) }
                    @if events.is_empty() { tr.empty { td colspan="5" .meta { "No events yet." } } }
                }
            }
            (PreEscaped(TIMELINE_JS
                .replace("__ID__", &did.to_string())
                .replace("__START__", &d.created_ms.to_string())
                .replace("__SHOWN__", &shown)))
            (live_sections(&deploy_kinds(), last))
        },
    ))
}

/// Where to go after a button or a sign-in: `back` if it is a local path (never another
/// site), else `default`.
pub(super) fn back_to(back: Option<&str>, default: &str) -> String {
    match back {
        Some(b) if b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') => b.into(),
        _ => default.into(),
    }
}

fn engine_failure(e: EngineError) -> Response {
    failure("the request failed", ApiError::from(e), "/")
}

/// The error page of a button: the engine's message and hint, with its 4xx/5xx status.
fn failure(what: &str, err: ApiError, back: &str) -> Response {
    (
        err.status,
        layout(
            "Error",
            "",
            html! {
                h1 { "Could not " (what) }
                div.card {
                    p.fail { (err.message) }
                    @if let Some(h) = &err.hint { p.meta { (h) } }
                    p { a href=(back) { "Back" } }
                }
            },
        ),
    )
        .into_response()
}

fn form_error(r: FormRejection) -> Response {
    failure("read the form", ApiError::bad_request(r.body_text()), "/")
}

#[derive(Deserialize)]
pub(super) struct BackForm {
    back: Option<String>,
}

/// The route of a button on a running deployment:
/// `POST /ui/deployments/{id}/{pause|resume|promote|abort}`.
pub(super) fn command_route(cmd: &'static str) -> MethodRouter<Arc<Engine>> {
    post(
        move |State(e): State<Arc<Engine>>,
              Path(id): Path<String>,
              Extension(caller): Extension<Caller>,
              f: Result<Form<BackForm>, FormRejection>| async move {
            let Form(f) = match f {
                Ok(f) => f,
                Err(r) => return form_error(r),
            };
            let back = back_to(f.back.as_deref(), &format!("/deployments/{id}"));
            let did = match super::deploys::deployment_id(&id) {
                Ok(d) => d,
                Err(err) => return failure(&format!("{cmd} deployment {id}"), err, &back),
            };
            match e.deployment_command(did, cmd, &caller.actor()).await {
                Ok(()) => Redirect::to(&back).into_response(),
                Err(err) => failure(&format!("{cmd} deployment #{did}"), err.into(), &back),
            }
        },
    )
}

/// `POST /ui/deployments/{id}/approve`.
pub(super) async fn approve(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    f: Result<Form<BackForm>, FormRejection>,
) -> Response {
    let Form(f) = match f {
        Ok(f) => f,
        Err(r) => return form_error(r),
    };
    let back = back_to(f.back.as_deref(), &format!("/deployments/{id}"));
    let did = match super::deploys::deployment_id(&id) {
        Ok(d) => d,
        Err(err) => return failure("approve", err, &back),
    };
    match e.approve(did, &caller, "").await {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(err) => failure(&format!("approve deployment #{did}"), err.into(), &back),
    }
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    project: String,
    service: String,
    env: String,
    to: Option<i64>,
    back: Option<String>,
}

/// `POST /ui/rollback`: fields `project`, `service`, `env`, optional `to` and `back`.
pub(super) async fn rollback(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    f: Result<Form<RollbackForm>, FormRejection>,
) -> Response {
    let Form(f) = match f {
        Ok(f) => f,
        Err(r) => return form_error(r),
    };
    let back = back_to(f.back.as_deref(), "/");
    let what = format!("roll back {} in {}", f.service, f.env);
    let result = match e
        .authorize_env(&caller, Action::Rollback, &f.project, &f.env)
        .await
    {
        Ok(()) => {
            e.rollback(&f.project, &f.service, &f.env, f.to, &caller.actor())
                .await
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(err) => failure(&what, err.into(), &back),
    }
}

#[derive(Deserialize)]
pub(super) struct PromoteForm {
    project: String,
    service: String,
    from: String,
    to: String,
    back: Option<String>,
}

/// `POST /ui/promote`: fields `project`, `service`, `from`, `to`, optional `back`.
pub(super) async fn promote(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    f: Result<Form<PromoteForm>, FormRejection>,
) -> Response {
    let Form(f) = match f {
        Ok(f) => f,
        Err(r) => return form_error(r),
    };
    let back = back_to(f.back.as_deref(), "/");
    let what = format!("promote {} from {} to {}", f.service, f.from, f.to);
    let result = match e
        .authorize_env(&caller, Action::Promote, &f.project, &f.to)
        .await
    {
        Ok(()) => {
            e.promote(&f.project, &f.service, &f.from, &f.to, &caller.actor())
                .await
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(err) => failure(&what, err.into(), &back),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_text_parses() {
        assert_eq!(
            traffic_split("v1 80%, v2 20%"),
            vec![("v1".into(), 80), ("v2".into(), 20)]
        );
        assert!(traffic_split("").is_empty());
    }

    #[test]
    fn figures_format_like_the_script() {
        assert_eq!(fmt_value(&serde_json::json!(0.21)), "0.21");
        assert_eq!(fmt_value(&serde_json::json!(0.123456)), "0.1235");
        assert_eq!(fmt_value(&serde_json::json!(2.0)), "2");
        assert_eq!(fmt_value(&serde_json::json!(412)), "412");
        assert_eq!(fmt_value(&serde_json::json!("x")), "x");
        assert_eq!(fmt_value(&serde_json::json!(true)), "true");
        let mut out = Vec::new();
        flatten(
            "",
            &serde_json::json!({"b": 1, "stable": {"error_rate": 0.0, "latency_ms": 1.975714}}),
            &mut out,
        );
        out.sort();
        assert_eq!(
            out,
            [
                ("b", "1"),
                ("stable.error_rate", "0"),
                ("stable.latency_ms", "1.9757")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn back_is_local_only() {
        assert_eq!(back_to(Some("/deployments/3"), "/"), "/deployments/3");
        assert_eq!(back_to(Some("//evil.example"), "/"), "/");
        assert_eq!(back_to(Some("https://evil.example"), "/"), "/");
        assert_eq!(back_to(None, "/x"), "/x");
    }
}
