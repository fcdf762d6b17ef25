//! Secret endpoints: write-only secrets per project and environment, unsealing the server
//! and rotating the key-encryption key. No response ever carries a secret value or key
//! material: listings show names, scopes, versions and who wrote them. The engine decides
//! (`engine/vault.rs`); this module parses requests and maps [`VaultError`] to statuses,
//! a sealed server being `503 sealed`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use sluice_secrets::Zeroizing;
use sluice_store::SecretMeta;

use super::{ApiError, query};
use crate::engine::Engine;
use crate::engine::access::Caller;
use crate::engine::vault::{VaultError, parse_env};

type Api = Result<Response, ApiError>;

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Sealed(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "sealed", e.to_string())
                    .hint("run `sluice unseal` with the server's key file")
            }
            VaultError::Invalid { message, hint } => {
                let err = ApiError::bad_request(message);
                match hint {
                    Some(h) => err.hint(h),
                    None => err,
                }
            }
            VaultError::TooLarge(message) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            VaultError::WrongKey(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "wrong_key", message)
            }
            VaultError::Engine(e) => e.into(),
            VaultError::Internal(message) => {
                tracing::error!(error = %message, "secret store failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

/// A JSON body, or a 400 that does not quote the body (it may hold a secret or a key).
fn body<T>(r: Result<Json<T>, JsonRejection>, expected: &str) -> Result<T, ApiError> {
    r.map(|Json(t)| t).map_err(|_| {
        ApiError::bad_request(format!("the request body is not {expected}")).hint(
            "see /api/v1/openapi.json; the body is not repeated here because it may hold a secret",
        )
    })
}

/// What may be shown of a secret: everything but its value.
fn meta(m: &SecretMeta) -> serde_json::Value {
    json!({
        "name": m.name,
        "environment": m.environment.as_deref().unwrap_or("*"),
        "version": m.version,
        "updated_ms": m.created_ms,
        "updated_by": m.created_by,
        "key_id": m.kek_id,
    })
}

/// `POST /api/v1/unseal` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnsealBody {
    key: String,
}

/// `POST /api/v1/unseal`: give the server its key-encryption key.
pub(super) async fn unseal(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<UnsealBody>, JsonRejection>,
) -> Api {
    let b = body(b, r#"a JSON object {"key": "sluice-kek-v1:…"}"#)?;
    let key = Zeroizing::new(b.key);
    let u = e.unseal(&caller, &key).await?;
    let message = if u.already {
        format!("the server already holds key {}", u.key_id)
    } else {
        format!("unsealed with key {}", u.key_id)
    };
    Ok(Json(
        json!({ "sealed": false, "key_id": u.key_id, "already": u.already, "message": message }),
    )
    .into_response())
}

/// `POST /api/v1/secrets/rotate-key` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    #[serde(default)]
    new_key: Option<String>,
}

/// `POST /api/v1/secrets/rotate-key`: re-wrap every secret under a new key. The body may be
/// empty (the server generates the key when it lives in a file).
pub(super) async fn rotate_key(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    b: Result<Json<RotateBody>, JsonRejection>,
) -> Api {
    let new_key = match b {
        // No body at all means "generate one"; anything else must be the documented shape.
        Err(JsonRejection::MissingJsonContentType(_)) => None,
        other => body(
            other,
            r#"empty or a JSON object {"new_key": "sluice-kek-v1:…"}"#,
        )?
        .new_key
        .map(Zeroizing::new),
    };
    let r = e
        .rotate_key(&caller, new_key.as_deref().map(String::as_str))
        .await?;
    Ok(Json(json!({
        "rewrapped": r.rewrapped,
        "old_key_id": r.old_key_id,
        "new_key_id": r.new_key_id,
        "key_file": r.key_file,
        "message": r.message,
    }))
    .into_response())
}

/// `GET /api/v1/projects/{name}/secrets`: names, scopes and versions, never values.
pub(super) async fn list(State(e): State<Arc<Engine>>, Path(project): Path<String>) -> Api {
    let secrets = e.list_secrets(&project).await?;
    Ok(Json(json!({
        "project": project,
        "sealed": e.vault.is_sealed(),
        "secrets": secrets.iter().map(meta).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The environment a write or delete is for: `?env=ENV`; absent (or `*`) is every
/// environment of the project.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeQuery {
    env: Option<String>,
}

/// `PUT .../secrets/{secret}` body: the value as text, or hex-encoded for bytes that are
/// not UTF-8; exactly one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutBody {
    value: Option<String>,
    value_hex: Option<String>,
}

/// `PUT /api/v1/projects/{name}/secrets/{secret}?env=ENV`: store a new version.
pub(super) async fn put(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path((project, name)): Path<(String, String)>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
    b: Result<Json<PutBody>, JsonRejection>,
) -> Api {
    let env = parse_env(query(q)?.env.as_deref())?;
    let b = body(b, r#"a JSON object {"value": "…"} or {"value_hex": "…"}"#)?;
    let value = match (b.value, b.value_hex) {
        (Some(v), None) => Zeroizing::new(v.into_bytes()),
        (None, Some(text)) => {
            let text = Zeroizing::new(text);
            Zeroizing::new(
                hex::decode(text.trim())
                    .map_err(|_| ApiError::bad_request("value_hex is not valid hex"))?,
            )
        }
        _ => {
            return Err(ApiError::bad_request(
                "give the secret's value in exactly one of `value` and `value_hex`",
            )
            .hint("`sluice secrets set PROJECT NAME` reads the value from stdin"));
        }
    };
    let m = e
        .put_secret(&caller, &project, &name, env.as_deref(), value)
        .await?;
    Ok(Json(meta(&m)).into_response())
}

/// `DELETE /api/v1/projects/{name}/secrets/{secret}?env=ENV`.
pub(super) async fn remove(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    Path((project, name)): Path<(String, String)>,
    q: Result<Query<ScopeQuery>, QueryRejection>,
) -> Api {
    let env = parse_env(query(q)?.env.as_deref())?;
    let versions = e
        .delete_secret(&caller, &project, &name, env.as_deref())
        .await?;
    Ok(Json(json!({
        "project": project, "name": name,
        "environment": env.as_deref().unwrap_or("*"),
        "deleted_versions": versions,
    }))
    .into_response())
}
