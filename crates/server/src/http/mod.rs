//! The HTTP edge: one router serving the JSON API under `/api/v1`, webhooks under `/hooks`,
//! Server-Sent Events, `/metrics`, `/healthz` and the web UI, all on one port.
//!
//! Architecture invariant: handlers translate between HTTP and the engine; they hold no
//! state of their own and decide nothing the engine should decide. Every error leaves
//! through [`ApiError`], whose JSON shape is the API's one error contract.

mod account;
mod api;
pub mod auth;
mod deploys;
mod hooks;
mod incidents;
mod ingest;
mod metrics;
pub mod routes;
mod secrets;
mod sse;
mod ui;
mod ui_deploys;
mod ui_incidents;

pub use routes::{Access, On, RouteSpec, route_specs};

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::{Engine, EngineError};

/// The OpenAPI document of `/api/v1`, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the whole router from the route table: every route behind the guard with its
/// access decision.
pub fn router(engine: Arc<Engine>) -> Router {
    let mut router = Router::new();
    for r in routes::table() {
        let guard = axum::middleware::from_fn_with_state((engine.clone(), r.spec), auth::guard);
        router = router.route(r.spec.path, r.handler.layer(guard));
    }
    router
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024))
        .with_state(engine)
}

pub(super) async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such page or endpoint: {}", uri.path()),
    )
    .hint("the API lives under /api/v1; see /api/v1/openapi.json")
}

/// A JSON body, or the API's 400 with a hint.
pub(super) fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    r.map(|Json(t)| t).map_err(|e| {
        ApiError::bad_request(format!("request body: {}", e.body_text()))
            .hint("send a JSON object with the fields listed in /api/v1/openapi.json")
    })
}

/// A query string, or the API's 400 with a hint.
pub(super) fn query<T>(r: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    r.map(|Query(t)| t).map_err(|e| {
        ApiError::bad_request(format!("query string: {}", e.body_text()))
            .hint("see /api/v1/openapi.json for the parameters")
    })
}

/// The API's error contract: `{"error": {"code", "message", "hint"}}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    hint: Option<String>,
    retry_after_s: Option<i64>,
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            hint: None,
            retry_after_s: None,
        }
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, ms: i64) -> Self {
        self.retry_after_s = Some(((ms + 999) / 1000).max(1));
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Adds what to do about it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A 400 for a request that cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            EngineError::BadRequest { message, hint } => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request",
                message,
                hint,
                retry_after_s: None,
            },
            EngineError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            EngineError::State(s) => ApiError::new(StatusCode::CONFLICT, "conflict", s),
            EngineError::Git(g) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "git_error", g.to_string())
                    .hint("check that the repository is reachable from the server")
            }
            EngineError::Store(s) => {
                tracing::error!(error = %s, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    s.to_string(),
                )
            }
            EngineError::Internal(s) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", s)
            }
            EngineError::Unauthorized(s) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", s)
                    .hint("sign in with `sluice login`, or send `Authorization: Bearer <token>`")
            }
            EngineError::Forbidden(s) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", s)
                .hint("ask an admin for the role (`sluice users grant`)"),
            EngineError::RateLimited(ms) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed attempts; retry in {}s", (ms + 999) / 1000),
            )
            .retry_after(ms),
        }
    }
}

impl From<sluice_store::StoreError> for ApiError {
    fn from(e: sluice_store::StoreError) -> Self {
        EngineError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "hint": self.hint }
        });
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = s.to_string().parse()
        {
            r.headers_mut().insert("retry-after", v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        r
    }
}
