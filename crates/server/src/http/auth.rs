//! The guard in front of every route: gives the request an id, resolves its credentials
//! (an `Authorization: Bearer` API token or the session cookie) into a [`Caller`], checks
//! the CSRF token of state-changing browser requests, and applies the route's [`Access`]
//! from the route table. Refusals are audited (`access.denied`) and answered 401 (no or bad
//! credentials; pages redirect to the sign-in page) or 403 (not allowed), as JSON for the
//! API and as a page for the UI.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use sluice_auth::csrf::{SESSION_COOKIE, csrf_token, verify_csrf};
use sluice_auth::{Principal, Target};
use sluice_core::{EventKind, NewEvent};
use sluice_store::origin::{self, Origin};

use super::ApiError;
use super::routes::{Access, On, RouteSpec};
use crate::engine::access::Caller;
use crate::engine::{Engine, EngineError};

/// Largest form body the guard reads to find a CSRF field.
const FORM_LIMIT: usize = 64 * 1024;

/// What pages rendering this request need to know: the caller (who is signed in, what
/// they may see) and the CSRF token their forms carry. Set by the guard for the request's
/// task.
struct PageCtx {
    caller: Caller,
    csrf: Option<String>,
}

tokio::task_local! {
    static PAGE: PageCtx;
}

/// The current request's caller (`None` outside a request).
pub fn caller() -> Option<Caller> {
    PAGE.try_with(|c| c.caller.clone()).ok()
}

/// The CSRF token forms of this page carry (browser sessions only).
pub fn csrf() -> Option<String> {
    PAGE.try_with(|c| c.csrf.clone()).ok().flatten()
}

/// Whether the current request's caller may view `project` (pages filter lists with it).
pub fn visible(engine: &Engine, project: &str) -> bool {
    PAGE.try_with(|c| engine.may_view(&c.caller, project))
        .unwrap_or(false)
}

/// The guard; see the module docs.
pub(super) async fn guard(
    State((engine, spec)): State<(Arc<Engine>, RouteSpec)>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let params: Vec<(String, String)> = params
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let request_id = request_id(&req);
    let o = Origin {
        source: Some(remote.to_string()),
        request_id: request_id.clone(),
    };
    let mut resp = origin::scope(o, check(engine, spec, params, req, next)).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn check(
    engine: Arc<Engine>,
    spec: RouteSpec,
    params: Vec<(String, String)>,
    mut req: Request,
    next: Next,
) -> Response {
    let lenient = matches!(spec.access, Access::Public | Access::Signed);
    let caller = match resolve(&engine, req.headers()).await {
        Ok(c) => c,
        Err(_) if lenient => Caller::anonymous(),
        Err(why) => {
            audit_denied(&engine, &spec, "anonymous", &why).await;
            return refuse(&spec, &req, EngineError::Unauthorized(why));
        }
    };
    // Public routes (the sign-in and setup forms) act on no one's authority.
    if caller.session.is_some() && !is_safe(req.method()) && !lenient {
        let (checked, ok) = csrf_ok(&engine, &caller, req).await;
        req = match checked {
            Some(r) => r,
            None => return ApiError::bad_request("the form body cannot be read").into_response(),
        };
        if !ok {
            let why =
                "the form or request carries no valid CSRF token; reload the page and try again";
            audit_denied(&engine, &spec, &caller.actor(), why).await;
            return refuse(&spec, &req, EngineError::Forbidden(why.into()));
        }
    }
    let decision = match spec.access {
        Access::Public | Access::Signed => Ok(()),
        Access::SignedIn | Access::Needs(_, On::Handler) => match caller.principal {
            Principal::Anonymous => {
                let why = "sign in, or send an API token as `Authorization: Bearer`";
                audit_denied(&engine, &spec, "anonymous", why).await;
                Err(EngineError::Unauthorized(why.into()))
            }
            _ => Ok(()),
        },
        // `authorize` audits its refusals itself.
        Access::Needs(action, on) => match target(&engine, on, &params).await {
            Ok(t) => engine.authorize(&caller, action, &t).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = decision {
        return refuse(&spec, &req, e);
    }
    let ctx = PageCtx {
        csrf: caller
            .session
            .as_deref()
            .map(|s| csrf_token(&engine.access.key, s)),
        caller: caller.clone(),
    };
    req.extensions_mut().insert(caller);
    PAGE.scope(ctx, next.run(req)).await
}

/// `x-request-id` from the client if it is short and plain, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| crate::engine::random_hex(8))
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller of a request: a bearer token wins over the session cookie; neither is
/// anonymous. Presented but invalid credentials are an error.
async fn resolve(engine: &Engine, headers: &HeaderMap) -> Result<Caller, String> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| "the Authorization header is not text".to_string())?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .ok_or("the Authorization header must be `Bearer <token>`")?;
        return engine
            .caller_from_token(token.trim())
            .await
            .map_err(|r| r.0);
    }
    if let Some(session) = cookie(headers, SESSION_COOKIE) {
        return engine.caller_from_session(&session).await.map_err(|r| r.0);
    }
    Ok(Caller::anonymous())
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Checks the CSRF token of a browser request: the `x-csrf-token` header, or the `_csrf`
/// field of a form body (read and put back). Returns the request (None if its body could
/// not be read) and whether the token is valid.
async fn csrf_ok(engine: &Engine, caller: &Caller, req: Request) -> (Option<Request>, bool) {
    let Some(session) = &caller.session else {
        return (Some(req), true);
    };
    let key = &engine.access.key;
    if let Some(h) = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        let ok = verify_csrf(key, session, h);
        return (Some(req), ok);
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (Some(req), false);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return (None, false);
    };
    let ok = form_field(&bytes, "_csrf").is_some_and(|t| verify_csrf(key, session, &t));
    (Some(Request::from_parts(parts, Body::from(bytes))), ok)
}

/// The first value of a field in an urlencoded form.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The target a route's `On` names, from the path.
async fn target(
    engine: &Engine,
    on: On,
    params: &[(String, String)],
) -> Result<Target, EngineError> {
    let key = if on == On::Project { "name" } else { "id" };
    let param = || -> Result<String, EngineError> {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| EngineError::Internal(format!("the route has no `{{{key}}}` parameter")))
    };
    let id = |s: String, what: &str| {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| EngineError::NotFound(format!("{what} `{s}`")))
    };
    // Missing objects read as the handlers say it: "run `7` not found".
    fn missing(what: &str, name: &str) -> impl FnOnce(sluice_store::StoreError) -> EngineError {
        let text = format!("{what} `{name}`");
        move |e| match e {
            sluice_store::StoreError::NotFound(_) => EngineError::NotFound(text),
            other => EngineError::from(other),
        }
    }
    Ok(match on {
        On::Instance | On::Handler => Target::default(),
        On::Project => {
            let name = param()?;
            engine
                .store
                .project(&name)
                .await
                .map_err(missing("project", &name))?;
            Target::project(&name)
        }
        On::Run => {
            let raw = param()?;
            let run = engine
                .store
                .run(id(raw.clone(), "run")?)
                .await
                .map_err(missing("run", &raw))?;
            Target::project(&run.project)
        }
        On::Deployment => {
            let raw = param()?;
            let d = engine
                .store
                .deployment(id(raw.clone(), "deployment")?)
                .await
                .map_err(missing("deployment", &raw))?;
            engine.env_target(&d.project, &d.env, None).await?
        }
        On::Incident => {
            let raw = param()?;
            let inc = engine
                .store
                .incident(id(raw.clone(), "incident")?)
                .await
                .map_err(missing("incident", &raw))?;
            Target::project(&inc.project)
        }
        On::ServiceInstance => {
            let inst = param()?;
            let project = inst.split('.').next().unwrap_or_default();
            engine
                .store
                .project(project)
                .await
                .map_err(missing("instance", &inst))?;
            Target::project(project)
        }
    })
}

async fn audit_denied(engine: &Engine, spec: &RouteSpec, actor: &str, why: &str) {
    let _ = engine
        .record(vec![
            NewEvent::new(
                EventKind::AccessDenied,
                actor,
                format!("route/{} {}", spec.method, spec.path),
            )
            .payload(json!({"reason": why})),
        ])
        .await;
}

/// The refusal: JSON for the API; for pages a redirect to sign in (401) or an error page.
fn refuse(spec: &RouteSpec, req: &Request, e: EngineError) -> Response {
    if spec.is_page() {
        if matches!(e, EngineError::Unauthorized(_)) && is_safe(req.method()) {
            let next = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            let to = format!("/login?next={next}");
            return Redirect::to(&to).into_response();
        }
        let message = e.to_string();
        return super::ui::error_page(ApiError::from(e).status(), message).into_response();
    }
    ApiError::from(e).into_response()
}
