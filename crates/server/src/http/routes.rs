//! The route table: every route the server answers, with its access decision next to its
//! handler. The router is built from this table and nothing else, so a route cannot exist
//! without a decision; the authorisation matrix test walks the same table (through
//! [`route_specs`]) and sends every route a request as every role.

use std::sync::Arc;

use axum::routing::{MethodRouter, delete, get, patch, post, put};
use sluice_auth::Action;

use super::{
    account, api, deploys, hooks, incidents, ingest, metrics, secrets, sse, ui, ui_deploys,
    ui_incidents,
};
use crate::engine::Engine;

/// Who may reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, the sign-in and setup pages, the stylesheet, the API description.
    Public,
    /// Anyone who can prove it: the handler verifies a signature or a routing key
    /// (webhooks, compatible ingest endpoints). Failures are audited there.
    Signed,
    /// Any signed-in user or valid token (their own account).
    SignedIn,
    /// This action on the target [`On`] names.
    Needs(Action, On),
}

/// Where the target of an action comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The whole instance (no project): adding projects, users, unsealing.
    Instance,
    /// The project `{name}` in the path.
    Project,
    /// The project of run `{id}` in the path.
    Run,
    /// The environment of deployment `{id}` in the path (protection applies).
    Deployment,
    /// The project of service instance `{id}` in the path.
    ServiceInstance,
    /// The project of incident `{id}` in the path.
    Incident,
    /// The body or the query names it: the guard only requires a signed-in caller and the
    /// handler asks `Engine::authorize` (listings show only what the caller may view).
    Handler,
}

/// One route: method, path (axum syntax) and access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The path pattern, e.g. `/api/v1/runs/{id}`.
    pub path: &'static str,
    /// The decision.
    pub access: Access,
}

impl RouteSpec {
    /// Whether the route answers with HTML (the web UI) rather than JSON.
    pub fn is_page(&self) -> bool {
        !(self.path.starts_with("/api/")
            || self.path.starts_with("/hooks/")
            || self.path.starts_with("/v2/")
            || self.path.starts_with("/integrations/")
            || self.path.starts_with("/-/"))
            && self.path != "/healthz"
            && self.path != "/metrics"
    }
}

/// A route of the table with its handler.
pub(super) struct Route {
    pub spec: RouteSpec,
    pub handler: MethodRouter<Arc<Engine>>,
}

fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    handler: MethodRouter<Arc<Engine>>,
) -> Route {
    Route {
        spec: RouteSpec {
            method,
            path,
            access,
        },
        handler,
    }
}

/// Every route of the server, without handlers: for tests and documentation.
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|r| r.spec).collect()
}

/// The table. One route per line reads as a table, so rustfmt leaves it alone.
#[rustfmt::skip]
pub(super) fn table() -> Vec<Route> {
    use Access::*;
    use Action::*;
    use On::*;
    vec![
        // Public.
        r("GET", "/healthz", Public, get(|| async { "ok\n" })),
        r("GET", "/api/v1/openapi.json", Public, get(super::openapi)),
        r("GET", "/static/style.css", Public, get(ui::style)),
        r("GET", "/login", Public, get(account::login_page)),
        r("POST", "/login", Public, post(account::login_form)),
        r("GET", "/setup", Public, get(account::setup_page)),
        r("POST", "/setup", Public, post(account::setup_form)),
        r("POST", "/api/v1/login", Public, post(account::login)),
        r("POST", "/api/v1/setup", Public, post(account::setup)),
        // Signed by the sender.
        r("POST", "/hooks/{provider}/{project}", Signed, post(hooks::receive)),
        // Alert ingest, wire-compatible with PagerDuty and Alertmanager (the key authorises).
        r("POST", "/v2/enqueue", Signed, post(ingest::pd_enqueue)),
        r("POST", "/v2/change/enqueue", Signed, post(ingest::pd_change)),
        r("POST", "/integrations/{key}/v2/enqueue", Signed, post(ingest::pd_enqueue)),
        r("POST", "/integrations/{key}/v2/change/enqueue", Signed, post(ingest::pd_change)),
        r("POST", "/api/v2/alerts", Signed, post(ingest::am_alerts)),
        r("POST", "/integrations/{key}/api/v2/alerts", Signed, post(ingest::am_alerts_path)),
        r("POST", "/integrations/{key}/webhook", Signed, post(ingest::am_webhook)),
        r("GET", "/-/ready", Public, get(ingest::ready)),
        r("GET", "/-/healthy", Public, get(ingest::ready)),
        // Signed acknowledge/resolve links of notifications.
        r("GET", "/incidents/{id}/{action}", Signed, get(incidents::link_page)),
        r("POST", "/incidents/{id}/{action}", Signed, post(incidents::link_action)),
        // One's own account.
        r("POST", "/logout", SignedIn, post(account::logout_form)),
        r("GET", "/api/v1/whoami", SignedIn, get(account::whoami)),
        r("GET", "/api/v1/tokens", Needs(ManageTokens, Instance), get(account::list_tokens)),
        r("POST", "/api/v1/tokens", Needs(ManageTokens, Instance), post(account::create_token)),
        r("DELETE", "/api/v1/tokens/{id}", Needs(ManageTokens, Instance), delete(account::revoke_token)),
        // Users and grants.
        r("GET", "/api/v1/users", Needs(ManageUsers, Instance), get(account::list_users)),
        r("POST", "/api/v1/users", Needs(ManageUsers, Instance), post(account::add_user)),
        r("PATCH", "/api/v1/users/{user}", Needs(ManageUsers, Instance), patch(account::update_user)),
        r("DELETE", "/api/v1/users/{user}", Needs(ManageUsers, Instance), delete(account::remove_user)),
        r("POST", "/api/v1/users/{user}/grants", Needs(ManageUsers, Instance), post(account::add_grant)),
        r("DELETE", "/api/v1/users/{user}/grants", Needs(ManageUsers, Instance), delete(account::remove_grant)),
        r("POST", "/api/v1/users/{user}/setup-token", Needs(ManageUsers, Instance), post(account::reset_user)),
        // Metrics of every project.
        r("GET", "/metrics", Needs(ViewProject, Instance), get(metrics::metrics)),
        // Projects, runs, releases, events.
        r("GET", "/api/v1/projects", Needs(ViewProject, Handler), get(api::list_projects)),
        r("POST", "/api/v1/projects", Needs(ManageProject, Instance), post(api::add_project)),
        r("GET", "/api/v1/projects/{name}", Needs(ViewProject, Project), get(api::get_project)),
        r("DELETE", "/api/v1/projects/{name}", Needs(ManageProject, Project), delete(api::remove_project)),
        r("POST", "/api/v1/projects/{name}/sync", Needs(RunPipeline, Project), post(api::sync_project)),
        r("POST", "/api/v1/projects/{name}/runs", Needs(RunPipeline, Project), post(api::create_run)),
        r("GET", "/api/v1/runs", Needs(ViewProject, Handler), get(api::list_runs)),
        r("GET", "/api/v1/runs/{id}", Needs(ViewProject, Run), get(api::get_run)),
        r("GET", "/api/v1/runs/{id}/wait", Needs(ViewProject, Run), get(api::wait_run)),
        r("POST", "/api/v1/runs/{id}/cancel", Needs(CancelRun, Run), post(api::cancel_run)),
        r("GET", "/api/v1/runs/{id}/logs", Needs(ViewProject, Run), get(api::get_logs)),
        r("GET", "/api/v1/runs/{id}/logs/stream", Needs(ViewProject, Run), get(sse::log_stream)),
        r("GET", "/api/v1/releases", Needs(ViewProject, Handler), get(api::list_releases)),
        r("GET", "/api/v1/events", Needs(ViewProject, Handler), get(api::list_events)),
        r("GET", "/api/v1/events/stream", Needs(ViewProject, Handler), get(sse::event_stream)),
        // Deploys.
        r("GET", "/api/v1/deployments", Needs(ViewProject, Handler), get(deploys::list)),
        r("POST", "/api/v1/deployments", Needs(Deploy, Handler), post(deploys::deploy)),
        r("GET", "/api/v1/deployments/{id}", Needs(ViewProject, Deployment), get(deploys::show)),
        r("POST", "/api/v1/rollbacks", Needs(Rollback, Handler), post(deploys::rollback)),
        r("POST", "/api/v1/promotions", Needs(Promote, Handler), post(deploys::promote)),
        r("GET", "/api/v1/status", Needs(ViewProject, Handler), get(deploys::status)),
        r("GET", "/api/v1/instances/{id}/log", Needs(ViewProject, ServiceInstance), get(deploys::instance_log)),
        // Incidents and alerts.
        r("GET", "/api/v1/incidents", Needs(ViewProject, Handler), get(incidents::list)),
        r("GET", "/api/v1/incidents/{id}", Needs(ViewProject, Incident), get(incidents::show)),
        r("POST", "/api/v1/incidents/{id}/ack", Needs(AckIncident, Incident), post(incidents::ack)),
        r("POST", "/api/v1/incidents/{id}/resolve", Needs(ResolveIncident, Incident), post(incidents::resolve)),
        r("GET", "/api/v1/alerts", Needs(ViewProject, Handler), get(incidents::alerts)),
        r("GET", "/api/v1/alerts/noise", Needs(ViewProject, Handler), get(incidents::noise)),
        r("GET", "/api/v1/dora", Needs(ViewProject, Handler), get(ui_incidents::dora_api)),
        r("GET", "/api/v1/oncall", Needs(ViewProject, Handler), get(incidents::oncall)),
        r("GET", "/api/v1/silences", Needs(ViewProject, Handler), get(incidents::list_silences)),
        r("POST", "/api/v1/silences", Needs(ManageSilences, Handler), post(incidents::create_silence)),
        r("DELETE", "/api/v1/silences/{id}", Needs(ManageSilences, Handler), delete(incidents::expire_silence)),
        r("GET", "/incidents", Needs(ViewProject, Handler), get(ui_incidents::list_page)),
        r("GET", "/incidents/{id}", Needs(ViewProject, Incident), get(ui_incidents::detail_page)),
        r("GET", "/alerts/noise", Needs(ViewProject, Handler), get(ui_incidents::noise_page)),
        r("POST", "/ui/incidents/{id}/ack", Needs(AckIncident, Incident), post(ui_incidents::ui_action_ack)),
        r("POST", "/ui/incidents/{id}/resolve", Needs(ResolveIncident, Incident), post(ui_incidents::ui_action_resolve)),
        r("GET", "/oncall", Needs(ViewProject, Handler), get(ui_incidents::oncall_page)),
        r("GET", "/dora", Needs(ViewProject, Handler), get(ui_incidents::dora_page)),
        r("GET", "/api/v1/projects/{name}/integrations", Needs(ViewProject, Project), get(incidents::list_integrations)),
        r("POST", "/api/v1/projects/{name}/integrations", Needs(ManageProject, Project), post(incidents::create_integration)),
        r("DELETE", "/api/v1/projects/{name}/integrations/{id}", Needs(ManageProject, Project), delete(incidents::remove_integration)),
        r("GET", "/api/v1/projects/{name}/oncall/overrides", Needs(ViewProject, Project), get(incidents::list_overrides)),
        r("POST", "/api/v1/projects/{name}/oncall/overrides", Needs(ManageSilences, Project), post(incidents::create_override)),
        r("DELETE", "/api/v1/projects/{name}/oncall/overrides/{id}", Needs(ManageSilences, Project), delete(incidents::remove_override)),
        // Secrets.
        r("POST", "/api/v1/unseal", Needs(Unseal, Instance), post(secrets::unseal)),
        r("POST", "/api/v1/secrets/rotate-key", Needs(Unseal, Instance), post(secrets::rotate_key)),
        r("GET", "/api/v1/projects/{name}/secrets", Needs(ListSecrets, Project), get(secrets::list)),
        r("PUT", "/api/v1/projects/{name}/secrets/{secret}", Needs(WriteSecret, Handler), put(secrets::put)),
        r("DELETE", "/api/v1/projects/{name}/secrets/{secret}", Needs(WriteSecret, Handler), delete(secrets::remove)),
        // Web UI pages.
        r("GET", "/", Needs(ViewProject, Handler), get(ui::overview)),
        r("GET", "/projects/{name}", Needs(ViewProject, Project), get(ui::project_page)),
        r("GET", "/runs", Needs(ViewProject, Handler), get(ui::runs_page)),
        r("GET", "/runs/{id}", Needs(ViewProject, Run), get(ui::run_page)),
        r("GET", "/releases", Needs(ViewProject, Handler), get(ui::releases_page)),
        r("GET", "/events", Needs(ViewProject, Handler), get(ui::events_page)),
        r("GET", "/deployments", Needs(ViewProject, Handler), get(ui_deploys::list_page)),
        r("GET", "/deployments/{id}", Needs(ViewProject, Deployment), get(ui_deploys::deployment_page)),
        r("POST", "/ui/rollback", Needs(Rollback, Handler), post(ui_deploys::rollback)),
        r("POST", "/ui/promote", Needs(Promote, Handler), post(ui_deploys::promote)),
        // Commands on a running deployment, through the API and the UI's buttons.
        r("POST", "/api/v1/deployments/{id}/pause", Needs(PauseResumeAbort, Deployment), deploys::command_route("pause")),
        r("POST", "/api/v1/deployments/{id}/resume", Needs(PauseResumeAbort, Deployment), deploys::command_route("resume")),
        r("POST", "/api/v1/deployments/{id}/abort", Needs(PauseResumeAbort, Deployment), deploys::command_route("abort")),
        r("POST", "/api/v1/deployments/{id}/promote", Needs(Promote, Deployment), deploys::command_route("promote")),
        r("POST", "/api/v1/deployments/{id}/approve", Needs(Approve, Deployment), post(deploys::approve)),
        r("POST", "/ui/deployments/{id}/pause", Needs(PauseResumeAbort, Deployment), ui_deploys::command_route("pause")),
        r("POST", "/ui/deployments/{id}/resume", Needs(PauseResumeAbort, Deployment), ui_deploys::command_route("resume")),
        r("POST", "/ui/deployments/{id}/abort", Needs(PauseResumeAbort, Deployment), ui_deploys::command_route("abort")),
        r("POST", "/ui/deployments/{id}/promote", Needs(Promote, Deployment), ui_deploys::command_route("promote")),
        r("POST", "/ui/deployments/{id}/approve", Needs(Approve, Deployment), post(ui_deploys::approve)),
    ]
}
