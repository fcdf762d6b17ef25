//! The HTTP edge: one router serving the JSON API under `/api/v1`, webhooks under `/hooks`,
//! Server-Sent Events, `/metrics`, `/healthz` and the web UI, all on one port.
//!
//! Architecture invariant: handlers translate between HTTP and the engine; they hold no
//! state of their own and decide nothing the engine should decide. Every error leaves
//! through [`ApiError`], whose JSON shape is the API's one error contract.

mod api;
mod deploys;
mod hooks;
mod metrics;
mod sse;
mod ui;
mod ui_deploys;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::engine::{Engine, EngineError};

/// The OpenAPI document of `/api/v1`, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the whole router.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/projects",
            get(api::list_projects).post(api::add_project),
        )
        .route(
            "/api/v1/projects/{name}",
            get(api::get_project).delete(api::remove_project),
        )
        .route("/api/v1/projects/{name}/sync", post(api::sync_project))
        .route("/api/v1/projects/{name}/runs", post(api::create_run))
        .route("/api/v1/runs", get(api::list_runs))
        .route("/api/v1/runs/{id}", get(api::get_run))
        .route("/api/v1/runs/{id}/wait", get(api::wait_run))
        .route("/api/v1/runs/{id}/cancel", post(api::cancel_run))
        .route("/api/v1/runs/{id}/logs", get(api::get_logs))
        .route("/api/v1/runs/{id}/logs/stream", get(sse::log_stream))
        .route("/api/v1/releases", get(api::list_releases))
        .route("/api/v1/events", get(api::list_events))
        .route("/api/v1/events/stream", get(sse::event_stream))
        .route(
            "/api/v1/deployments",
            get(deploys::list).post(deploys::deploy),
        )
        .route("/api/v1/deployments/{id}", get(deploys::show))
        .route("/api/v1/deployments/{id}/{command}", post(deploys::command))
        .route("/api/v1/rollbacks", post(deploys::rollback))
        .route("/api/v1/promotions", post(deploys::promote))
        .route("/api/v1/status", get(deploys::status))
        .route("/api/v1/instances/{id}/log", get(deploys::instance_log))
        .route("/hooks/{provider}/{project}", post(hooks::receive))
        .merge(ui::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024))
        .with_state(engine)
}

async fn openapi() -> Response {
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
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            hint: None,
        }
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
        (self.status, Json(body)).into_response()
    }
}
