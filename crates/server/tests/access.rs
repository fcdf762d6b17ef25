//! Who may do what, end to end over HTTP against a real server: the authorisation matrix
//! (every route of the route table x every kind of caller x an unprotected and a protected
//! environment, expectations from the policy itself), protected environments with approvals
//! and a wait timer, pipelines deploying from the environment's branch, and refused
//! credentials (forged cookies, missing CSRF tokens, revoked tokens, disabled users, wrong
//! passwords with rate limiting), each refusal audited.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{APP, KillOnDrop, Repo, TOKEN, deployments, eventually, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_auth::{Action, Grant, Principal, Role, Scope, Target, authorize};
use sluice_core::{DeployStatus, EventKind};
use sluice_server::Server;
use sluice_server::http::{Access, On, RouteSpec, route_specs};
use sluice_store::EventFilter;

const PASSWORD: &str = "correct horse battery staple";

fn yml(staging: u16, production: u16, gate: &str) -> String {
    format!(
        r#"
project: app
environments:
  staging:
    branch: main
  production:
    branch: release
    protected: true
    {gate}
services:
  web:
    steps:
      package:
        run: mkdir -p out && cp app.py version.txt out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py
      health: {{ http: /healthz, interval: 100ms, timeout: 1s }}
      stop_grace: 1s
      progress_deadline: 30s
      environments:
        staging: {{ expose: "127.0.0.1:{staging}" }}
        production: {{ expose: "127.0.0.1:{production}" }}
"#
    )
}

fn repo(root: &Path, gate: &str) -> Repo {
    let r = Repo::new(root);
    r.write("app.py", APP);
    r.write("sluice.yml", &yml(free_port(), free_port(), gate));
    r.commit_version("1");
    r
}

/// A client that does not follow redirects (a refusal of a page is a redirect to sign in).
fn raw(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn call(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.json(b);
    }
    r.send().await.unwrap()
}

/// Adds a user with a role on every project and environment and signs them in through
/// their setup token; returns their API token (all scopes).
async fn user_with_role(base: &str, name: &str, role: Role) -> String {
    let admin = raw(Some(TOKEN));
    let r = call(
        &admin,
        Method::POST,
        &format!("{base}/api/v1/users"),
        Some(&json!({"name": name})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let setup = v["setup_token"].as_str().unwrap().to_string();
    let r = call(
        &admin,
        Method::POST,
        &format!("{base}/api/v1/users/{name}/grants"),
        Some(&json!({"role": role})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(
        &raw(None),
        Method::POST,
        &format!("{base}/api/v1/setup"),
        Some(&json!({"setup_token": setup, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// One kind of caller: the token it sends and the principal the policy sees.
struct Who {
    label: &'static str,
    token: Option<String>,
    principal: Principal,
}

fn as_token(user: &str, role: Role, scopes: &[Scope]) -> Principal {
    Principal::Token {
        user: user.into(),
        grants: vec![Grant::new(role, None, None)],
        scopes: scopes.to_vec(),
    }
}

/// A concrete request for a route.
struct Sample {
    path: String,
    body: Option<Value>,
    form: Option<Vec<(&'static str, String)>>,
    target: Target,
}

struct World {
    run: i64,
    dep_staging: i64,
    dep_production: i64,
    instance: String,
    users: u32,
}

fn env_target(env: &str) -> Target {
    let production = env == "production";
    Target::env(
        "app",
        env,
        production,
        Some(if production { "release" } else { "main" }),
    )
}

/// The samples for a route; `None` when the route has none (the test fails: every route
/// of the table must be exercised).
fn samples(spec: &RouteSpec, w: &mut World) -> Option<Vec<Sample>> {
    let project = || Target::project("app");
    let s = |path: String, body: Option<Value>, target: Target| Sample {
        path,
        body,
        form: None,
        target,
    };
    let per_env = |f: &dyn Fn(&str) -> Sample| vec![f("staging"), f("production")];
    let dep = |env: &str, w: &World| {
        if env == "production" {
            w.dep_production
        } else {
            w.dep_staging
        }
    };
    let m = spec.method;
    Some(match (m, spec.path) {
        (
            "GET",
            "/healthz"
            | "/api/v1/openapi.json"
            | "/static/style.css"
            | "/login"
            | "/setup"
            | "/metrics"
            | "/api/v1/whoami"
            | "/api/v1/tokens"
            | "/api/v1/users"
            | "/api/v1/projects"
            | "/api/v1/runs"
            | "/api/v1/releases"
            | "/api/v1/events"
            | "/api/v1/events/stream"
            | "/api/v1/deployments"
            | "/api/v1/status"
            | "/"
            | "/runs"
            | "/releases"
            | "/events"
            | "/deployments",
        ) => {
            vec![s(spec.path.to_string(), None, Target::default())]
        }
        ("POST", "/login") => vec![Sample {
            path: "/login".into(),
            body: None,
            form: Some(vec![
                ("user", "nobody".into()),
                ("password", "wrong".into()),
            ]),
            target: Target::default(),
        }],
        ("POST", "/setup") => vec![Sample {
            path: "/setup".into(),
            body: None,
            form: Some(vec![
                ("token", "bogus".into()),
                ("password", PASSWORD.into()),
            ]),
            target: Target::default(),
        }],
        ("POST", "/logout") => vec![Sample {
            path: "/logout".into(),
            body: None,
            form: Some(vec![]),
            target: Target::default(),
        }],
        ("POST", "/api/v1/login") => vec![s(
            "/api/v1/login".into(),
            Some(json!({"user": "nobody", "password": "wrong"})),
            Target::default(),
        )],
        ("POST", "/api/v1/setup") => vec![s(
            "/api/v1/setup".into(),
            Some(json!({"setup_token": "bogus", "password": PASSWORD})),
            Target::default(),
        )],
        ("POST", "/hooks/{provider}/{project}") => {
            vec![s("/hooks/github/app".into(), Some(json!({})), project())]
        }
        // Ingest: the key in the body, path or bearer authorises (none here: all refused
        // the same way for every caller).
        (
            "POST",
            "/v2/enqueue"
            | "/v2/change/enqueue"
            | "/api/v2/alerts"
            | "/integrations/{key}/v2/enqueue"
            | "/integrations/{key}/v2/change/enqueue"
            | "/integrations/{key}/api/v2/alerts"
            | "/integrations/{key}/webhook",
        ) => vec![s(
            spec.path
                .replace("{key}", "0123456789abcdef0123456789abcdef"),
            Some(json!({"routing_key": "0123456789abcdef0123456789abcdef"})),
            Target::default(),
        )],
        (
            "GET",
            "/-/ready" | "/-/healthy" | "/api/v1/incidents" | "/api/v1/alerts" | "/api/v1/dora"
            | "/api/v1/oncall" | "/api/v1/silences" | "/incidents" | "/oncall" | "/dora",
        ) => {
            vec![s(spec.path.to_string(), None, Target::default())]
        }
        ("GET", "/api/v1/alerts/noise" | "/alerts/noise") => {
            vec![s(spec.path.to_string(), None, Target::default())]
        }
        ("GET" | "POST", "/incidents/{id}/{action}") => {
            vec![s("/incidents/1/ack?sig=forged".into(), None, project())]
        }
        ("GET", "/api/v1/incidents/{id}" | "/incidents/{id}") => {
            vec![s(spec.path.replace("{id}", "1"), None, project())]
        }
        ("POST", "/ui/incidents/{id}/ack" | "/ui/incidents/{id}/resolve") => vec![Sample {
            path: spec.path.replace("{id}", "1"),
            body: None,
            form: Some(vec![]),
            target: project(),
        }],
        ("POST", "/api/v1/incidents/{id}/ack" | "/api/v1/incidents/{id}/resolve") => {
            vec![s(spec.path.replace("{id}", "1"), None, project())]
        }
        ("POST", "/api/v1/silences") => vec![s(
            spec.path.into(),
            Some(
                json!({"project": "app", "matchers": "alertname=\"Matrix\"", "duration": "1h", "comment": "matrix"}),
            ),
            project(),
        )],
        ("DELETE", "/api/v1/silences/{id}") => {
            vec![s("/api/v1/silences/999".into(), None, Target::default())]
        }
        ("GET", "/api/v1/projects/{name}/integrations") => {
            vec![s(
                "/api/v1/projects/app/integrations".into(),
                None,
                project(),
            )]
        }
        ("POST", "/api/v1/projects/{name}/integrations") => {
            w.users += 1;
            vec![s(
                "/api/v1/projects/app/integrations".into(),
                Some(json!({"name": format!("matrix{}", w.users)})),
                project(),
            )]
        }
        ("DELETE", "/api/v1/projects/{name}/integrations/{id}") => {
            vec![s(
                "/api/v1/projects/app/integrations/999".into(),
                None,
                project(),
            )]
        }
        ("GET", "/api/v1/projects/{name}/oncall/overrides") => {
            vec![s(
                "/api/v1/projects/app/oncall/overrides".into(),
                None,
                project(),
            )]
        }
        // The project has no schedules: an allowed caller gets 400, a refused one 401/403.
        ("POST", "/api/v1/projects/{name}/oncall/overrides") => vec![s(
            "/api/v1/projects/app/oncall/overrides".into(),
            Some(json!({
                "schedule": "primary",
                "user": "victim",
                "start": "2099-01-01T00:00:00Z",
                "end": "2099-01-02T00:00:00Z",
            })),
            project(),
        )],
        ("DELETE", "/api/v1/projects/{name}/oncall/overrides/{id}") => vec![s(
            "/api/v1/projects/app/oncall/overrides/999".into(),
            None,
            project(),
        )],
        ("POST", "/api/v1/tokens") => vec![s(
            spec.path.into(),
            Some(json!({"name": "matrix", "scopes": ["read"]})),
            Target::default(),
        )],
        ("DELETE", "/api/v1/tokens/{id}") => vec![s(
            "/api/v1/tokens/no-such-token".into(),
            None,
            Target::default(),
        )],
        ("POST", "/api/v1/users") => {
            w.users += 1;
            vec![s(
                spec.path.into(),
                Some(json!({"name": format!("new{}", w.users)})),
                Target::default(),
            )]
        }
        ("PATCH", "/api/v1/users/{user}") => vec![s(
            "/api/v1/users/victim".into(),
            Some(json!({"disabled": false})),
            Target::default(),
        )],
        ("DELETE", "/api/v1/users/{user}") => {
            vec![s("/api/v1/users/victim".into(), None, Target::default())]
        }
        ("POST" | "DELETE", "/api/v1/users/{user}/grants") => vec![s(
            "/api/v1/users/victim/grants".into(),
            Some(json!({"role": "viewer"})),
            Target::default(),
        )],
        ("POST", "/api/v1/users/{user}/setup-token") => vec![s(
            "/api/v1/users/victim/setup-token".into(),
            None,
            Target::default(),
        )],
        ("POST", "/api/v1/projects") => vec![s(
            spec.path.into(),
            Some(json!({"source": "/nonexistent/repo"})),
            Target::default(),
        )],
        ("GET", "/api/v1/projects/{name}") => {
            vec![s("/api/v1/projects/app".into(), None, project())]
        }
        ("DELETE", "/api/v1/projects/{name}") => vec![s(
            "/api/v1/projects/scratch".into(),
            None,
            Target::project("scratch"),
        )],
        ("POST", "/api/v1/projects/{name}/sync") => {
            vec![s("/api/v1/projects/app/sync".into(), None, project())]
        }
        ("POST", "/api/v1/projects/{name}/runs") => vec![s(
            "/api/v1/projects/app/runs".into(),
            Some(json!({"commit": "0000000"})),
            project(),
        )],
        (
            "GET",
            "/api/v1/runs/{id}"
            | "/api/v1/runs/{id}/logs"
            | "/api/v1/runs/{id}/logs/stream"
            | "/runs/{id}",
        ) => {
            vec![s(
                spec.path.replace("{id}", &w.run.to_string()),
                None,
                project(),
            )]
        }
        ("GET", "/api/v1/runs/{id}/wait") => vec![s(
            format!("/api/v1/runs/{}/wait?timeout_s=1", w.run),
            None,
            project(),
        )],
        ("POST", "/api/v1/runs/{id}/cancel") => {
            vec![s(format!("/api/v1/runs/{}/cancel", w.run), None, project())]
        }
        ("GET", "/api/v1/instances/{id}/log") => vec![s(
            format!("/api/v1/instances/{}/log", w.instance),
            None,
            project(),
        )],
        ("GET", "/projects/{name}") => vec![s("/projects/app".into(), None, project())],
        ("POST", "/api/v1/deployments") => per_env(&|env| {
            s(
                spec.path.into(),
                Some(json!({"project": "app", "service": "web", "env": env, "version": 999})),
                env_target(env),
            )
        }),
        ("POST", "/api/v1/rollbacks") => per_env(&|env| {
            s(
                spec.path.into(),
                Some(json!({"project": "app", "service": "web", "env": env, "to": 999})),
                env_target(env),
            )
        }),
        ("POST", "/api/v1/promotions") => per_env(&|env| {
            s(
                spec.path.into(),
                Some(json!({"project": "app", "service": "web", "from": "nowhere", "to": env})),
                env_target(env),
            )
        }),
        ("GET", "/api/v1/deployments/{id}" | "/deployments/{id}") => per_env(&|env| {
            s(
                spec.path.replace("{id}", &dep(env, w).to_string()),
                None,
                env_target(env),
            )
        }),
        ("POST", p) if p.starts_with("/api/v1/deployments/{id}/") => per_env(&|env| {
            s(
                p.replace("{id}", &dep(env, w).to_string()),
                Some(json!({})),
                env_target(env),
            )
        }),
        ("POST", p) if p.starts_with("/ui/deployments/{id}/") => per_env(&|env| Sample {
            path: p.replace("{id}", &dep(env, w).to_string()),
            body: None,
            form: Some(vec![("back", "/".into())]),
            target: env_target(env),
        }),
        ("POST", "/ui/rollback") => per_env(&|env| Sample {
            path: spec.path.into(),
            body: None,
            form: Some(vec![
                ("project", "app".into()),
                ("service", "web".into()),
                ("env", env.into()),
                ("to", "999".into()),
            ]),
            target: env_target(env),
        }),
        ("POST", "/ui/promote") => per_env(&|env| Sample {
            path: spec.path.into(),
            body: None,
            form: Some(vec![
                ("project", "app".into()),
                ("service", "web".into()),
                ("from", "nowhere".into()),
                ("to", env.into()),
            ]),
            target: env_target(env),
        }),
        ("POST", "/api/v1/unseal") => vec![s(
            spec.path.into(),
            Some(json!({"key": "not a key"})),
            Target::default(),
        )],
        ("POST", "/api/v1/secrets/rotate-key") => vec![s(
            spec.path.into(),
            Some(json!({"new_key": "not a key"})),
            Target::default(),
        )],
        ("GET", "/api/v1/projects/{name}/secrets") => {
            vec![s("/api/v1/projects/app/secrets".into(), None, project())]
        }
        ("PUT", "/api/v1/projects/{name}/secrets/{secret}") => per_env(&|env| {
            s(
                format!("/api/v1/projects/app/secrets/MATRIX_SECRET?env={env}"),
                Some(json!({"value": "matrix-secret-value"})),
                env_target(env),
            )
        }),
        ("DELETE", "/api/v1/projects/{name}/secrets/{secret}") => per_env(&|env| {
            s(
                format!("/api/v1/projects/app/secrets/NO_SUCH?env={env}"),
                None,
                env_target(env),
            )
        }),
        _ => return None,
    })
}

/// What the guard and the handlers must answer: allowed (anything but 401/403 and a
/// redirect to sign in), or refused.
fn expected(spec: &RouteSpec, who: &Who, target: &Target) -> Option<bool> {
    match spec.access {
        Access::Public | Access::Signed => None,
        Access::SignedIn | Access::Needs(_, On::Handler)
            if matches!(who.principal, Principal::Anonymous) =>
        {
            Some(false)
        }
        Access::SignedIn => Some(true),
        Access::Needs(action, On::Handler) if is_listing(action, spec) => Some(true),
        Access::Needs(action, On::Instance) => {
            Some(authorize(&who.principal, action, &Target::default()).allowed)
        }
        Access::Needs(action, _) => Some(authorize(&who.principal, action, target).allowed),
    }
}

/// Listings: any signed-in caller gets one, filtered to what they may see.
fn is_listing(action: Action, spec: &RouteSpec) -> bool {
    action == Action::ViewProject && spec.method == "GET"
}

fn refused_by_guard(status: StatusCode, location: Option<&str>) -> bool {
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || (status == StatusCode::SEE_OTHER
            && location.is_some_and(|l| l.starts_with("/login?next=")))
}

async fn start(root: &Path, gate: &str) -> (Server, Repo, KillOnDrop) {
    let r = repo(root, gate);
    let s = Server::start(common::config(root.join("data")))
        .await
        .unwrap();
    let kill = KillOnDrop::new(&s);
    s.engine
        .add_project(&r.path(), None, Some(0), None, "test")
        .await
        .unwrap();
    // The pipeline on main deploys v1 to staging.
    eventually("v1 to serve in staging", 60, || async {
        deployments(&s)
            .await
            .into_iter()
            .find(|d| d.env == "staging" && d.status == DeployStatus::Succeeded)
    })
    .await;
    (s, r, kill)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_decides_for_every_role_on_protected_and_unprotected_environments() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _repo, _kill) = start(tmp.path(), "approvals: 1").await;
    let base = s.url();
    // A second project to delete, and a user to manage.
    let scratch = Repo::init(tmp.path().join("scratch"), "main");
    scratch.write(
        "sluice.yml",
        "project: scratch\nenvironments: { staging: { branch: main } }\nservices:\n  a:\n    steps:\n      s:\n        run: \"true\"\n",
    );
    scratch.commit_version("1");
    s.engine
        .add_project(&scratch.path(), None, Some(0), None, "test")
        .await
        .unwrap();
    user_with_role(&base, "victim", Role::Viewer).await;

    let viewer = user_with_role(&base, "vera", Role::Viewer).await;
    let developer = user_with_role(&base, "dev", Role::Developer).await;
    let releaser = user_with_role(&base, "rel", Role::Releaser).await;
    let requester = user_with_role(&base, "req", Role::Releaser).await;
    // A developer's token limited to reading.
    let r = call(
        &raw(Some(&developer)),
        Method::POST,
        &format!("{base}/api/v1/tokens"),
        Some(&json!({"name": "ro", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let read_only = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // A manual deploy to production, waiting for one approval.
    let r = call(
        &raw(Some(&requester)),
        Method::POST,
        &format!("{base}/api/v1/deployments"),
        Some(&json!({"project": "app", "service": "web", "env": "production"})),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    let prod = eventually("the production deploy to wait at its gate", 30, || async {
        deployments(&s)
            .await
            .into_iter()
            .find(|d| d.env == "production")
    })
    .await;
    assert_eq!(prod.phase, "awaiting_approval");
    let staging = deployments(&s)
        .await
        .into_iter()
        .find(|d| d.env == "staging")
        .unwrap();
    let status = common::fetch_json(&format!("{base}/api/v1/status")).await;
    let instance = status
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["env"] == "staging")
        .and_then(|t| t["instances"][0]["id"].as_str())
        .unwrap()
        .to_string();
    let run = s
        .engine
        .store
        .runs(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.project == "app")
        .unwrap()
        .id;
    // An incident of the project, for the incident routes.
    s.engine
        .store
        .apply_alert_batch(sluice_store::AlertBatch {
            new_incidents: vec![sluice_store::NewIncidentRow {
                id: 1,
                project: "app".into(),
                service: "web".into(),
                group_key: "app/web".into(),
                title: "matrix".into(),
                severity: "warning".into(),
                rule: None,
                opened_ms: 1,
                suspected_release: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut w = World {
        run,
        dep_staging: staging.id,
        dep_production: prod.id,
        instance,
        users: 0,
    };

    let all = Scope::ALL;
    let whos = [
        Who {
            label: "anonymous",
            token: None,
            principal: Principal::Anonymous,
        },
        Who {
            label: "viewer",
            token: Some(viewer),
            principal: as_token("vera", Role::Viewer, &all),
        },
        Who {
            label: "developer",
            token: Some(developer),
            principal: as_token("dev", Role::Developer, &all),
        },
        Who {
            label: "developer read-only token",
            token: Some(read_only),
            principal: as_token("dev", Role::Developer, &[Scope::Read]),
        },
        Who {
            label: "releaser",
            token: Some(releaser),
            principal: as_token("rel", Role::Releaser, &all),
        },
        Who {
            label: "admin",
            token: Some(TOKEN.to_string()),
            principal: as_token("admin", Role::Admin, &all),
        },
    ];
    let specs = route_specs();
    let mut missing = Vec::new();
    let mut failures = Vec::new();
    let mut cells = 0usize;
    let (mut allowed_cells, mut refused_cells) = (0usize, 0usize);
    for spec in &specs {
        let Some(list) = samples(spec, &mut w) else {
            missing.push(format!("{} {}", spec.method, spec.path));
            continue;
        };
        for sample in list {
            let mut statuses = BTreeMap::new();
            for who in &whos {
                let c = raw(who.token.as_deref());
                let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
                let mut req = c.request(method, format!("{base}{}", sample.path));
                if let Some(b) = &sample.body {
                    req = req.json(b);
                }
                if let Some(f) = &sample.form {
                    let body: String = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(f.iter().map(|(k, v)| (*k, v.as_str())))
                        .finish();
                    req = req
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status();
                let location = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_string);
                drop(resp);
                cells += 1;
                // The sign-in limiter counts failures per user name: "too many" is still a
                // refusal of the same credentials.
                let same = if status == StatusCode::TOO_MANY_REQUESTS {
                    StatusCode::UNAUTHORIZED
                } else {
                    status
                };
                statuses.insert(who.label, same);
                let refused = refused_by_guard(status, location.as_deref());
                match expected(spec, who, &sample.target) {
                    None => {}
                    Some(true) => {
                        allowed_cells += 1;
                        if refused {
                            failures.push(format!(
                                "{} {} as {}: expected allowed, got {status}",
                                spec.method, sample.path, who.label
                            ));
                        }
                    }
                    Some(false) => {
                        refused_cells += 1;
                        let right = match (&who.principal, spec.is_page() && spec.method == "GET") {
                            (Principal::Anonymous, true) => {
                                status == StatusCode::SEE_OTHER && refused
                            }
                            (Principal::Anonymous, false) => status == StatusCode::UNAUTHORIZED,
                            _ => status == StatusCode::FORBIDDEN,
                        };
                        if !right {
                            failures.push(format!(
                                "{} {} as {}: expected refused, got {status} {location:?}",
                                spec.method, sample.path, who.label
                            ));
                        }
                    }
                }
            }
            // Public and signed routes: the guard lets everyone through alike.
            if matches!(spec.access, Access::Public | Access::Signed)
                && statuses["anonymous"] != statuses["admin"]
            {
                failures.push(format!(
                    "{} {}: public route answers differently by caller: {statuses:?}",
                    spec.method, sample.path
                ));
            }
        }
    }
    eprintln!(
        "authorisation matrix: {} routes, {} callers, {cells} requests ({allowed_cells} allowed, {refused_cells} refused, the rest public)",
        specs.len(),
        whos.len()
    );
    assert!(
        missing.is_empty(),
        "routes without a sample in this test: {missing:?}"
    );
    assert!(
        failures.is_empty(),
        "{} wrong decisions:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Refusals are in the audit trail with who, where from and which request.
    let denied = s
        .engine
        .store
        .events(&EventFilter {
            kinds: vec![EventKind::AccessDenied],
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        denied.len() >= refused_cells,
        "{} access.denied entries for {refused_cells} refusals",
        denied.len()
    );
    assert!(
        denied
            .iter()
            .all(|e| e.source.is_some() && e.request_id.is_some())
    );
    assert!(
        denied
            .iter()
            .any(|e| e.actor == "user:dev" && e.subject == "env/app/production")
    );
    s.stop_all().await;
}

/// Signs in through the browser form; returns the session cookie and the CSRF token of
/// the signed-in page.
async fn browser_sign_in(base: &str, user: &str) -> (String, String) {
    let r = raw(None)
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "user={user}&password={}&next=/",
            PASSWORD.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = raw(None)
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page
        .find("name=\"_csrf\" value=\"")
        .expect("a CSRF field on the signed-in page");
    let rest = &page[at + 20..];
    let csrf = rest[..rest.find('"').unwrap()].to_string();
    (cookie, csrf)
}

async fn denials(s: &Server) -> usize {
    s.engine
        .store
        .events(&EventFilter {
            kinds: vec![EventKind::AccessDenied, EventKind::AuthLoginFailed],
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cookies_missing_csrf_revoked_tokens_disabled_users_and_password_guessing_are_refused()
 {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _repo, _kill) = start(tmp.path(), "").await;
    let base = s.url();
    let dev = user_with_role(&base, "dev", Role::Developer).await;
    let staging = deployments(&s)
        .await
        .into_iter()
        .find(|d| d.env == "staging")
        .unwrap();
    let form = |cookie: &str, body: String| {
        raw(None)
            .post(format!("{base}/ui/rollback"))
            .header("cookie", cookie.to_string())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let before = denials(&s).await;
    let events_before = s.engine.store.last_event_seq().await.unwrap();

    // A forged session cookie: 401, nothing changes.
    let r = form(
        "sluice_session=slc_s_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "project=app&service=web&env=staging".into(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A real session without the CSRF token: 403.
    let (cookie, csrf) = browser_sign_in(&base, "dev").await;
    let r = form(&cookie, "project=app&service=web&env=staging&to=1".into())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With a wrong one: 403.
    let r = form(
        &cookie,
        "project=app&service=web&env=staging&to=1&_csrf=bogus".into(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Nothing was rolled back by any of them.
    assert_eq!(deployments(&s).await.len(), 1);
    assert_eq!(deployments(&s).await[0].id, staging.id);
    // With the right token the same form works (a 303 back to the page).
    let r = form(
        &cookie,
        format!("project=app&service=web&env=staging&to=999&_csrf={csrf}"),
    )
    .send()
    .await
    .unwrap();
    assert_ne!(r.status(), StatusCode::FORBIDDEN);
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);

    // Tokens: malformed, unknown, revoked and a disabled user's are all refused.
    let api = |t: &str| raw(Some(t)).get(format!("{base}/api/v1/projects"));
    assert_eq!(
        api("garbage").send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api("slc_a_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api(&dev).send().await.unwrap().status(), StatusCode::OK);
    let r = call(
        &raw(Some(&dev)),
        Method::POST,
        &format!("{base}/api/v1/tokens"),
        Some(&json!({"name": "short", "scopes": ["read"]})),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let (second, id) = (
        v["token"].as_str().unwrap().to_string(),
        v["info"]["id"].as_str().unwrap().to_string(),
    );
    assert_eq!(api(&second).send().await.unwrap().status(), StatusCode::OK);
    let r = call(
        &raw(Some(&dev)),
        Method::DELETE,
        &format!("{base}/api/v1/tokens/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api(&second).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = call(
        &raw(Some(TOKEN)),
        Method::PATCH,
        &format!("{base}/api/v1/users/dev"),
        Some(&json!({"disabled": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        api(&dev).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Disabling ended the browser session too: the page sends them to sign in.
    let r = raw(None)
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=")
    );

    // Guessing passwords: refused, then rate limited with Retry-After; the right password
    // is refused too while the limit holds.
    let login = |pw: &str| call_owned(base.clone(), json!({"user": "guessme", "password": pw}));
    user_with_role(&base, "guessme", Role::Viewer).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = login(&format!("wrong-{i}")).await;
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(
        *statuses.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
    assert_eq!(
        login(PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Every refusal above is an audit entry with its source address and request id.
    let after = denials(&s).await;
    assert!(
        after - before >= 12,
        "only {} refusals audited",
        after - before
    );
    let events = s
        .engine
        .store
        .events(&EventFilter {
            after: events_before,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::AccessDenied | EventKind::AuthLoginFailed))
            .all(|e| e.source.is_some() && e.request_id.is_some())
    );
    s.stop_all().await;
}

async fn call_owned(base: String, body: Value) -> reqwest::Response {
    call(
        &raw(None),
        Method::POST,
        &format!("{base}/api/v1/login"),
        Some(&body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_production_needs_a_releaser_approvals_and_the_wait_timer_and_takes_its_own_pipeline()
 {
    let tmp = tempfile::tempdir().unwrap();
    let (s, repo, _kill) = start(tmp.path(), "approvals: 1\n    wait_timer: 2s").await;
    let base = s.url();
    let dev = user_with_role(&base, "dev", Role::Developer).await;
    let alice = user_with_role(&base, "alice", Role::Releaser).await;
    let bob = user_with_role(&base, "bob", Role::Releaser).await;
    let deploy = |token: String, env: &'static str| {
        let base = base.clone();
        async move {
            call(
                &raw(Some(&token)),
                Method::POST,
                &format!("{base}/api/v1/deployments"),
                Some(&json!({"project": "app", "service": "web", "env": env})),
            )
            .await
        }
    };
    // A developer deploys to staging but not to production, nor rolls back or promotes there.
    assert_eq!(
        deploy(dev.clone(), "staging").await.status(),
        StatusCode::ACCEPTED
    );
    let r = deploy(dev.clone(), "production").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let msg = r.text().await.unwrap();
    assert!(
        msg.contains("releaser") && msg.contains("production"),
        "{msg}"
    );
    let r = call(
        &raw(Some(&dev)),
        Method::POST,
        &format!("{base}/api/v1/promotions"),
        Some(&json!({"project": "app", "service": "web", "from": "staging", "to": "production"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = call(
        &raw(Some(&dev)),
        Method::POST,
        &format!("{base}/api/v1/rollbacks"),
        Some(&json!({"project": "app", "service": "web", "env": "production"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(deployments(&s).await.iter().all(|d| d.env != "production"));

    // A releaser's promotion waits for an approval by someone else, then for the timer.
    let r = call(
        &raw(Some(&alice)),
        Method::POST,
        &format!("{base}/api/v1/promotions"),
        Some(&json!({"project": "app", "service": "web", "from": "staging", "to": "production"})),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "{}",
        r.text().await.unwrap()
    );
    let d = eventually("the promotion to wait at the gate", 30, || async {
        deployments(&s)
            .await
            .into_iter()
            .find(|d| d.env == "production")
    })
    .await;
    assert_eq!(d.phase, "awaiting_approval");
    let show: Value = raw(Some(&alice))
        .get(format!("{base}/api/v1/deployments/{}", d.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        show["gate"],
        json!({"state": "needs_approvals", "have": 0, "need": 1})
    );
    let approve = |token: String| {
        let base = base.clone();
        async move {
            call(
                &raw(Some(&token)),
                Method::POST,
                &format!("{base}/api/v1/deployments/{}/approve", d.id),
                Some(&json!({"comment": "ok"})),
            )
            .await
        }
    };
    // No self-approval, and developers may not approve.
    let r = approve(alice.clone()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("someone else"));
    assert_eq!(approve(dev.clone()).await.status(), StatusCode::FORBIDDEN);
    // Nothing started meanwhile.
    assert_eq!(
        s.engine.store.deployment(d.id).await.unwrap().phase,
        "awaiting_approval"
    );
    let r = approve(bob.clone()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let gate: Value = r.json().await.unwrap();
    assert_eq!(gate["gate"]["state"], "waiting", "{gate}");
    let until = gate["gate"]["until_ms"].as_i64().unwrap();
    assert!(until >= d.created_ms + 2000);
    let done = eventually("the production deploy to finish", 60, || async {
        let d = s.engine.store.deployment(d.id).await.unwrap();
        d.status.is_terminal().then_some(d)
    })
    .await;
    assert_eq!(done.status, DeployStatus::Succeeded, "{:?}", done.reason);
    let passed = s
        .engine
        .store
        .events(&EventFilter {
            subject: Some(format!("deployment/{}", d.id)),
            kinds: vec![EventKind::GatePassed],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(passed.len(), 1);
    assert!(
        passed[0].time_ms >= until,
        "the gate opened before the wait timer ran out"
    );

    // A pipeline on production's own branch deploys there, with no approval.
    repo.git(&["checkout", "-q", "-b", "release"]);
    repo.commit_version("2");
    s.engine.sync_project("app", "test", "test").await.unwrap();
    let auto = eventually(
        "the release branch's pipeline to deploy production",
        60,
        || async {
            deployments(&s)
                .await
                .into_iter()
                .find(|x| x.env == "production" && x.id != d.id && x.status.is_terminal())
        },
    )
    .await;
    assert_eq!(auto.status, DeployStatus::Succeeded, "{:?}", auto.reason);
    assert_eq!(auto.trigger, "pipeline");
    let production_deploys = || async {
        deployments(&s)
            .await
            .into_iter()
            .filter(|x| x.env == "production")
            .count()
    };
    let before = production_deploys().await;
    let runs_done = || async {
        s.engine
            .store
            .runs(&Default::default())
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.status.is_terminal())
            .count()
    };

    // A developer's branch whose sluice.yml names itself production's branch: its pipeline
    // runs, but production's branch stays `release` (pinned), so nothing deploys there.
    repo.git(&["checkout", "-q", "-b", "aaa", "main"]);
    let yml_path = repo.0.join("sluice.yml");
    let text = std::fs::read_to_string(&yml_path).unwrap();
    std::fs::write(&yml_path, text.replace("branch: release", "branch: aaa")).unwrap();
    repo.commit_version("3");
    let done = runs_done().await;
    s.engine.sync_project("app", "test", "test").await.unwrap();
    eventually("the aaa branch's run to finish", 60, || async {
        (runs_done().await > done).then_some(())
    })
    .await;
    let t = s
        .engine
        .env_target("app", "production", None)
        .await
        .unwrap();
    assert_eq!(t.env_branch.as_deref(), Some("release"));
    assert!(t.protected);

    // A developer's manual run "on" release of a commit that is not release's head: it may
    // run, but it is not production's pipeline, so it does not deploy there.
    repo.git(&["checkout", "-q", "-b", "feature", "main"]);
    repo.commit_version("4");
    s.engine.sync_project("app", "test", "test").await.unwrap();
    let r = call(
        &raw(Some(&dev)),
        Method::POST,
        &format!("{base}/api/v1/projects/app/runs"),
        Some(&json!({"env": "production", "branch": "release", "commit": "feature", "wait": true, "timeout_s": 60})),
    )
    .await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["status"], "succeeded", "{body}");
    let released = run["releases"][0]["version"].as_i64().unwrap();
    // The deploy request is made by the run itself before it finishes: the desired
    // release of production did not move to it, and the refusal is audited.
    let prod = s
        .engine
        .store
        .target("app", "web", "production")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        prod.desired_version,
        Some(released),
        "a developer's run deployed production"
    );
    let refused = s
        .engine
        .store
        .events(&EventFilter {
            kinds: vec![EventKind::AccessDenied],
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        refused
            .iter()
            .any(|e| e.actor.starts_with("pipeline:app@release (commit")
                && e.subject == "env/app/production"),
        "{refused:?}"
    );
    assert_eq!(production_deploys().await, before);

    // Nor does such a run read production's secrets: a step asking for one fails, and the
    // refusal is audited. (The API never returns secret values to anyone.)
    let r = call(
        &raw(Some(&alice)),
        Method::PUT,
        &format!("{base}/api/v1/projects/app/secrets/DB?env=production"),
        Some(&json!({"value": "production-db-value-1"})),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = call(
        &raw(Some(&dev)),
        Method::PUT,
        &format!("{base}/api/v1/projects/app/secrets/DB?env=production"),
        Some(&json!({"value": "developer-overwrite-1"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = std::fs::read_to_string(&yml_path).unwrap();
    std::fs::write(
        &yml_path,
        text.replace(
            "        run: mkdir -p out && cp app.py version.txt out/\n",
            "        run: mkdir -p out && cp app.py version.txt out/ && printf %s \"$DB\" | sha256sum\n        secrets: [DB]\n",
        ),
    )
    .unwrap();
    repo.commit_version("5");
    s.engine.sync_project("app", "test", "test").await.unwrap();
    let r = call(
        &raw(Some(&dev)),
        Method::POST,
        &format!("{base}/api/v1/projects/app/runs"),
        Some(&json!({"env": "production", "branch": "release", "commit": "feature", "wait": true, "timeout_s": 60})),
    )
    .await;
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["status"], "failed", "{run}");
    let log: Value = raw(Some(&dev))
        .get(format!("{base}/api/v1/runs/{}/logs", run["id"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log = log.to_string();
    assert!(log.contains("is not available to this run"), "{log}");
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(b"production-db-value-1"));
    assert!(
        !log.contains(&digest),
        "the production secret reached a developer's run"
    );

    // A pipeline of another branch (main) may not deploy to production.
    let pipeline = sluice_server::engine::access::Caller {
        principal: Principal::Pipeline {
            project: "app".into(),
            branch: "main".into(),
        },
        user: None,
        session: None,
    };
    let t = s
        .engine
        .env_target("app", "production", None)
        .await
        .unwrap();
    assert!(
        s.engine
            .authorize(&pipeline, Action::Deploy, &t)
            .await
            .is_err()
    );
    s.stop_all().await;
}

/// Arbitrary bodies, names and headers against the sign-in, setup, token and user
/// endpoints: never a 5xx, never a crash, and garbage never signs anyone in.
#[test]
fn fuzzed_authentication_requests_are_refused_cleanly() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let s = rt
        .block_on(Server::start(common::config(tmp.path().join("data"))))
        .unwrap();
    let base = s.url();
    let endpoints = [
        ("POST", "/api/v1/login", false),
        ("POST", "/api/v1/setup", false),
        ("POST", "/login", false),
        ("POST", "/setup", false),
        ("POST", "/api/v1/tokens", true),
        ("POST", "/api/v1/users", true),
        ("PATCH", "/api/v1/users/x", true),
        ("POST", "/api/v1/users/x/grants", true),
        ("DELETE", "/api/v1/users/x/grants", true),
        ("DELETE", "/api/v1/tokens/x", true),
        ("POST", "/api/v1/unseal", true),
        ("PUT", "/api/v1/projects/x/secrets/y", true),
    ];
    let json_value = prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        proptest::collection::vec(any::<String>(), 0..3).prop_map(|v| json!(v)),
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (b, "application/json")),
        proptest::collection::btree_map(
            prop_oneof![
                Just("user".to_string()),
                Just("password".to_string()),
                Just("setup_token".to_string()),
                Just("name".to_string()),
                Just("scopes".to_string()),
                Just("role".to_string()),
                Just("key".to_string()),
                Just("value".to_string()),
                any::<String>()
            ],
            json_value,
            0..5
        )
        .prop_map(|m| (serde_json::to_vec(&m).unwrap(), "application/json")),
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| (b, "application/x-www-form-urlencoded")),
    ];
    let auth = prop_oneof![
        Just(None),
        any::<String>().prop_map(Some),
        "slc_[asu]_[A-Za-z0-9_-]{43}".prop_map(Some),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0..endpoints.len(), body, auth, any::<bool>()),
            |(i, (bytes, ctype), auth, use_admin)| {
                let (method, path, needs_auth) = endpoints[i];
                let status = rt.block_on(async {
                    let mut r = reqwest::Client::new()
                        .request(
                            Method::from_bytes(method.as_bytes()).unwrap(),
                            format!("{base}{path}"),
                        )
                        .header("content-type", ctype)
                        .body(bytes);
                    if needs_auth && use_admin {
                        r = r.bearer_auth(TOKEN);
                    } else if let Some(a) = auth
                        && let Ok(v) = reqwest::header::HeaderValue::from_str(&a)
                    {
                        r = r.header("authorization", v);
                    }
                    r.send().await.unwrap().status()
                });
                prop_assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{method} {path} answered {status}"
                );
                if !(needs_auth && use_admin) && path.ends_with("login") {
                    prop_assert!(!status.is_success(), "garbage signed in: {status}");
                }
                Ok(())
            },
        )
        .unwrap();
    // Still serving after all of it.
    let ok = rt.block_on(async {
        raw(Some(TOKEN))
            .get(format!("{base}/api/v1/whoami"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ok, StatusCode::OK);
    rt.block_on(s.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_setup_token_is_printed_while_no_one_can_sign_in() {
    let tmp = tempfile::tempdir().unwrap();
    let start = || async {
        let mut c = common::config(tmp.path().join("data"));
        c.admin_token = None;
        Server::start(c).await.unwrap()
    };
    let s = start().await;
    let first = s
        .setup_token
        .clone()
        .expect("a first start prints a setup token");
    s.stop().await;
    // The first token was never used: the next start prints a new one (the old one stays
    // valid until it expires).
    let s = start().await;
    let second = s.setup_token.clone().expect("still no one can sign in");
    assert_ne!(first, second);
    let r = call(
        &raw(None),
        Method::POST,
        &format!("{}/api/v1/setup", s.url()),
        Some(&json!({"setup_token": second, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Used once only.
    let r = call(
        &raw(None),
        Method::POST,
        &format!("{}/api/v1/setup", s.url()),
        Some(&json!({"setup_token": second, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
    let s = start().await;
    assert_eq!(s.setup_token, None, "the admin has a password now");
    s.stop().await;
}

/// A password hashed with older Argon2 parameters still signs in, and is then stored again
/// with the current ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_password_hash_is_replaced_at_sign_in() {
    use argon2::PasswordHasher;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(common::config(tmp.path().join("data")))
        .await
        .unwrap();
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8, 1, 1, None).unwrap(),
    );
    let old = weak.hash_password(PASSWORD.as_bytes()).unwrap().to_string();
    assert!(sluice_auth::password::needs_rehash(&old));
    s.engine
        .store
        .create_user(
            "old",
            &old,
            false,
            sluice_core::NewEvent::new(EventKind::UserCreated, "test", "user/old"),
        )
        .await
        .unwrap();
    let login = || async {
        call(
            &raw(None),
            Method::POST,
            &format!("{}/api/v1/login", s.url()),
            Some(&json!({"user": "old", "password": PASSWORD})),
        )
        .await
        .status()
    };
    assert_eq!(login().await, StatusCode::OK);
    let stored = s
        .engine
        .store
        .user("old")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert_ne!(stored, old);
    assert!(!sluice_auth::password::needs_rehash(&stored), "{stored}");
    assert_eq!(
        login().await,
        StatusCode::OK,
        "the new hash holds the same password"
    );
    s.stop().await;
}
