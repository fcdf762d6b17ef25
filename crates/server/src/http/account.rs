//! Accounts: signing in (browser form with a session cookie, or the API for `sluice login`
//! which answers with an API token), first-time setup with the one-time setup token,
//! signing out, one's own API tokens, and the users and grants an admin manages.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use maud::html;
use serde::Deserialize;
use serde_json::json;
use sluice_auth::csrf::{clear_session_cookie, session_cookie};
use sluice_auth::{Action, Grant, Role, Scope, Target};
use sluice_core::{EventKind, NewEvent};

use super::ui::layout;
use super::{ApiError, body};
use crate::engine::access::{Caller, LOGIN_TOKEN_TTL_MS, SESSION_TTL_MS};
use crate::engine::{Engine, EngineError, now_ms};

type Api = Result<Response, ApiError>;

/// The limiter keys on the client's address without its port.
fn client_ip(remote: &SocketAddr) -> String {
    remote.ip().to_string()
}

fn secure_cookies(e: &Engine) -> bool {
    e.config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// Only local paths are followed after signing in.
fn local_path(next: Option<&str>) -> String {
    super::ui_deploys::back_to(next, "/")
}

fn signed_in(e: &Engine, session: &str, next: &str) -> Response {
    let cookie = session_cookie(
        session,
        u64::try_from(SESSION_TTL_MS / 1000).unwrap_or(0),
        secure_cookies(e),
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct NextQuery {
    next: Option<String>,
    token: Option<String>,
}

fn login_markup(next: &str, message: Option<&str>) -> maud::Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(m) = message { p.fail { (m) } }
        form.card method="post" action="/login" {
            input type="hidden" name="next" value=(next);
            p { label { "User " input name="user" autocomplete="username" required; } }
            p { label { "Password " input type="password" name="password" autocomplete="current-password" required; } }
            p { button.primary type="submit" { "Sign in" } }
        }
        p.meta { "First start? Open the setup link the server printed, or run "
            code { "sluice login --setup-token TOKEN" } "." }
    }
}

/// `GET /login`.
pub(super) async fn login_page(q: Result<Query<NextQuery>, QueryRejection>) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    layout(
        "Sign in",
        "",
        login_markup(&local_path(q.next.as_deref()), None),
    )
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

fn form_refused(title: &str, status: StatusCode, markup: maud::Markup) -> Response {
    (status, layout(title, "", markup)).into_response()
}

/// `POST /login`: the browser form.
pub(super) async fn login_form(
    State(e): State<Arc<Engine>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    f: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = f else {
        return form_refused(
            "Sign in",
            StatusCode::BAD_REQUEST,
            login_markup("/", Some("the form is incomplete")),
        );
    };
    let next = local_path(f.next.as_deref());
    let user = match e.login(&f.user, &f.password, &client_ip(&remote)).await {
        Ok(u) => u,
        Err(err) => return refused("Sign in", err, |m| login_markup(&next, Some(m))),
    };
    match e.start_session(&user.name).await {
        Ok(session) => signed_in(&e, &session, &next),
        Err(err) => super::ui::internal(err),
    }
}

/// A form refused by the engine: the page again with the message, the API's status for
/// the error, and `Retry-After` when rate limited.
fn refused(title: &str, err: EngineError, page: impl Fn(&str) -> maud::Markup) -> Response {
    let message = err.to_string();
    let retry = match &err {
        EngineError::RateLimited(ms) => Some(((ms + 999) / 1000).max(1)),
        _ => None,
    };
    let mut r = form_refused(title, ApiError::from(err).status(), page(&message));
    if let Some(v) = retry.and_then(|s| s.to_string().parse().ok()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn setup_markup(token: &str, message: Option<&str>) -> maud::Markup {
    html! {
        h1 { "Set up sluice" }
        @if let Some(m) = message { p.fail { (m) } }
        form.card method="post" action="/setup" {
            input type="hidden" name="token" value=(token);
            p { label { "New password " input type="password" name="password" autocomplete="new-password" minlength="12" required; } }
            p { button.primary type="submit" { "Set password and sign in" } }
        }
    }
}

/// `GET /setup?token=…`: the one-time setup page.
pub(super) async fn setup_page(q: Result<Query<NextQuery>, QueryRejection>) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    layout(
        "Set up",
        "",
        setup_markup(q.token.as_deref().unwrap_or_default(), None),
    )
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct SetupForm {
    token: String,
    user: Option<String>,
    password: String,
}

/// `POST /setup`: sets the password with the setup token and signs in.
pub(super) async fn setup_form(
    State(e): State<Arc<Engine>>,
    f: Result<Form<SetupForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = f else {
        return form_refused(
            "Set up",
            StatusCode::BAD_REQUEST,
            setup_markup("", Some("the form is incomplete")),
        );
    };
    let user = f.user.as_deref().filter(|u| !u.is_empty());
    match e.complete_setup(&f.token, user, &f.password).await {
        Ok(u) => match e.start_session(&u.name).await {
            Ok(session) => signed_in(&e, &session, "/"),
            Err(err) => super::ui::internal(err),
        },
        Err(err) => refused("Set up", err, |m| setup_markup(&f.token, Some(m))),
    }
}

/// `POST /logout`.
pub(super) async fn logout_form(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Err(err) = e.end_session(&caller).await {
        return super::ui::internal(err);
    }
    (
        [(header::SET_COOKIE, clear_session_cookie(secure_cookies(&e)))],
        Redirect::to("/login"),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    user: String,
    password: String,
    /// A label for the token (e.g. the machine's name).
    token_name: Option<String>,
}

/// `POST /api/v1/login`: a password for an API token (all the user's scopes, 30 days).
pub(super) async fn login(
    State(e): State<Arc<Engine>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    b: Result<Json<LoginBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let user = e.login(&b.user, &b.password, &client_ip(&remote)).await?;
    let name = b.token_name.unwrap_or_else(|| "sluice login".into());
    issue_login_token(&e, &user.name, &name).await
}

async fn issue_login_token(e: &Engine, user: &str, name: &str) -> Api {
    let actor = format!("user:{user}");
    let (row, token) = e
        .create_token(
            user,
            name,
            Scope::ALL.to_vec(),
            Some(LOGIN_TOKEN_TTL_MS),
            &actor,
        )
        .await?;
    e.record(vec![
        NewEvent::new(EventKind::AuthLogin, actor, format!("user/{user}"))
            .payload(json!({"via": "api", "token": row.id})),
    ])
    .await?;
    Ok(Json(
        json!({"user": user, "token": token, "token_id": row.id, "expires_ms": row.expires_ms}),
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetupBody {
    setup_token: String,
    password: String,
    user: Option<String>,
}

/// `POST /api/v1/setup`: sets a password with a one-time setup token; answers a token.
pub(super) async fn setup(
    State(e): State<Arc<Engine>>,
    b: Result<Json<SetupBody>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let u = e
        .complete_setup(&b.setup_token, b.user.as_deref(), &b.password)
        .await?;
    issue_login_token(&e, &u.name, "sluice login (setup)").await
}

/// `GET /api/v1/whoami`.
pub(super) async fn whoami(Extension(caller): Extension<Caller>) -> Api {
    Ok(Json(json!({"user": caller.user, "principal": caller.principal})).into_response())
}

/// An event about user `name` caused by `caller`.
fn user_event(kind: EventKind, caller: &Caller, name: &str) -> NewEvent {
    NewEvent::new(kind, caller.actor(), format!("user/{name}"))
}

fn own(caller: &Caller) -> Result<String, ApiError> {
    caller
        .user
        .clone()
        .ok_or_else(|| EngineError::Unauthorized("sign in first".into()).into())
}

/// `GET /api/v1/tokens`: the caller's own tokens (never their values).
pub(super) async fn list_tokens(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
) -> Api {
    let user = own(&caller)?;
    Ok(Json(e.store.tokens(&user).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    name: String,
    scopes: Vec<Scope>,
    /// Days until it expires; none = never.
    expires_in_days: Option<u32>,
}

/// `POST /api/v1/tokens`: a new token for the caller; the value is in this answer only.
pub(super) async fn create_token(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<NewToken>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    let user = own(&caller)?;
    if b.name.trim().is_empty() || b.name.len() > 100 {
        return Err(ApiError::bad_request("`name` must be 1 to 100 characters"));
    }
    // A token can never carry more than its creator: a token may only mint tokens with
    // scopes it has itself.
    if let sluice_auth::Principal::Token { scopes, .. } = &caller.principal
        && let Some(s) = b.scopes.iter().find(|s| !scopes.contains(s))
    {
        return Err(EngineError::Forbidden(format!(
            "this token lacks scope {s}, so it cannot make a token with it"
        ))
        .into());
    }
    let ttl = b.expires_in_days.map(|d| i64::from(d) * 86_400_000);
    let (row, token) = e
        .create_token(&user, &b.name, b.scopes, ttl, &caller.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "info": row})),
    )
        .into_response())
}

/// `DELETE /api/v1/tokens/{id}`: revoke one of one's tokens (admins: anyone's).
pub(super) async fn revoke_token(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Api {
    let t = e
        .store
        .token(&id)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("token `{id}`")))?;
    if caller.user.as_deref() != Some(t.user.as_str()) {
        e.authorize(&caller, Action::ManageUsers, &Target::default())
            .await?;
    }
    e.store
        .revoke_token(
            &id,
            now_ms(),
            NewEvent::new(
                EventKind::TokenRevoked,
                caller.actor(),
                format!("token/{id}"),
            )
            .payload(json!({"user": t.user})),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/users`: users with their grants.
pub(super) async fn list_users(State(e): State<Arc<Engine>>) -> Api {
    let mut out = Vec::new();
    for u in e.store.users().await? {
        let grants = e.store.grants(&u.name).await?;
        out.push(json!({"user": u, "grants": grants}));
    }
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddUser {
    name: String,
    #[serde(default)]
    admin: bool,
}

fn valid_user_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "user name `{name}` must be 1 to 64 characters of A-Z a-z 0-9 - _ . @"
        )))
    }
}

/// `POST /api/v1/users`: a new user without a password; answers the one-time setup token
/// they set it with (no password ever travels through an admin).
pub(super) async fn add_user(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<AddUser>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    valid_user_name(&b.name)?;
    let u = e
        .store
        .create_user(
            &b.name,
            "",
            b.admin,
            user_event(EventKind::UserCreated, &caller, &b.name).payload(json!({"admin": b.admin})),
        )
        .await?;
    let setup = e.new_setup_token_for(&u.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": u, "setup_token": setup})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUser {
    disabled: Option<bool>,
    admin: Option<bool>,
    /// Where the user's pages are emailed ("" removes it).
    email: Option<String>,
}

/// `PATCH /api/v1/users/{user}`: disable or enable, make or unmake admin.
pub(super) async fn update_user(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Result<Json<UpdateUser>, JsonRejection>,
) -> Api {
    let b = body(b)?;
    if let Some(d) = b.disabled {
        e.store
            .set_user_disabled(
                &name,
                d,
                user_event(EventKind::UserUpdated, &caller, &name).payload(json!({"disabled": d})),
            )
            .await?;
    }
    if let Some(a) = b.admin {
        e.store
            .set_user_admin(
                &name,
                a,
                user_event(EventKind::UserUpdated, &caller, &name).payload(json!({"admin": a})),
            )
            .await?;
    }
    if let Some(m) = &b.email {
        let m = m.trim();
        let plausible = m.is_empty()
            || (m
                .split_once('@')
                .is_some_and(|(u, d)| !u.is_empty() && d.contains('.'))
                && !m.contains(char::is_whitespace));
        if !plausible {
            return Err(
                ApiError::bad_request(format!("`{m}` is not an email address"))
                    .hint("write it as name@example.com, or \"\" to remove it"),
            );
        }
        e.store
            .set_user_email(
                &name,
                m,
                user_event(EventKind::UserUpdated, &caller, &name)
                    .payload(json!({"what": "email"})),
            )
            .await?;
    }
    let u = e
        .store
        .user(&name)
        .await?
        .ok_or_else(|| EngineError::NotFound(format!("user `{name}`")))?;
    Ok(Json(u).into_response())
}

/// `DELETE /api/v1/users/{user}`.
pub(super) async fn remove_user(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Api {
    if caller.user.as_deref() == Some(name.as_str()) {
        return Err(ApiError::bad_request("you cannot remove yourself")
            .hint("ask another admin, or disable the account"));
    }
    e.store
        .delete_user(&name, user_event(EventKind::UserDeleted, &caller, &name))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantBody {
    role: Role,
    project: Option<String>,
    environment: Option<String>,
}

impl GrantBody {
    /// The grant; `*` and empty names are refused (leaving the field out means all).
    fn grant(r: Result<Json<GrantBody>, JsonRejection>) -> Result<Grant, ApiError> {
        let b = body(r)?;
        for (what, v) in [("project", &b.project), ("environment", &b.environment)] {
            if v.as_deref().is_some_and(|v| v.is_empty() || v == "*") {
                return Err(ApiError::bad_request(format!(
                    "`{what}` must name one; leave it out for all"
                )));
            }
        }
        Ok(Grant::new(
            b.role,
            b.project.as_deref(),
            b.environment.as_deref(),
        ))
    }
}

/// `POST /api/v1/users/{user}/grants`.
pub(super) async fn add_grant(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Result<Json<GrantBody>, JsonRejection>,
) -> Api {
    let g = GrantBody::grant(b)?;
    e.store
        .grant(
            &name,
            &g,
            user_event(EventKind::GrantAdded, &caller, &name).payload(json!({"grant": g})),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user": name, "grant": g}))).into_response())
}

/// `DELETE /api/v1/users/{user}/grants` with the grant as the body.
pub(super) async fn remove_grant(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Result<Json<GrantBody>, JsonRejection>,
) -> Api {
    let g = GrantBody::grant(b)?;
    e.store
        .revoke_grant(
            &name,
            &g,
            user_event(EventKind::GrantRemoved, &caller, &name).payload(json!({"grant": g})),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/users/{user}/setup-token`: a one-time token with which the user sets a
/// new password (a reset). Their sessions end.
pub(super) async fn reset_user(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Api {
    // The old password stops working at once (and a missing user is a 404 here); the user's API tokens stay (revoke them
    // with DELETE /api/v1/tokens/{id} if they may be compromised too).
    e.store
        .set_password(
            &name,
            "",
            user_event(EventKind::UserUpdated, &caller, &name)
                .payload(json!({"password": "reset"})),
        )
        .await?;
    e.store
        .delete_sessions_of(
            &name,
            vec![
                user_event(EventKind::AuthLogout, &caller, &name)
                    .payload(json!({"reason": "password reset"})),
            ],
        )
        .await?;
    let setup = e.new_setup_token_for(&name).await?;
    Ok(Json(json!({"user": name, "setup_token": setup})).into_response())
}
