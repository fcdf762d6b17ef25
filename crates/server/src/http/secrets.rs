//! Secret endpoints (placeholder until the secret store is wired).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::ApiError;
use crate::engine::Engine;

fn todo() -> Result<Response, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "not yet",
    ))
}

pub(super) async fn unseal(State(_e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    todo()
}
pub(super) async fn rotate_key(State(_e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    todo()
}
pub(super) async fn list(State(_e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    todo()
}
pub(super) async fn put(State(_e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    todo()
}
pub(super) async fn remove(State(_e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    todo()
}
