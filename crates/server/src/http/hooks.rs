//! Git-host webhooks: `POST /hooks/{provider}/{project}` for `github`, `gitlab`,
//! `bitbucket` and `generic`. A verified push makes the engine sync the project at once; a
//! bad signature is refused with 401 and recorded; a redelivery (same delivery id) is
//! acknowledged and starts nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_core::{EventKind, NewEvent};
use sluice_webhook::{Headers, Provider, WebhookEvent};

use super::ApiError;
use crate::engine::Engine;

pub(super) async fn receive(
    State(e): State<Arc<Engine>>,
    Path((provider, project)): Path<(String, String)>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(p) = Provider::parse(&provider) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("unknown webhook provider `{provider}`"),
        )
        .hint("use github, gitlab, bitbucket or generic"));
    };
    let reject = |status: StatusCode, code: &'static str, reason: String| {
        let e = e.clone();
        let project = project.clone();
        async move {
            let _ = e
                .record(vec![
                    NewEvent::new(
                        EventKind::WebhookRejected,
                        format!("webhook:{}", p.as_str()),
                        format!("project/{project}"),
                    )
                    .payload(json!({
                        "provider": p.as_str(), "project": project, "reason": code,
                        "detail": reason, "remote": remote.to_string(),
                    })),
                ])
                .await;
            ApiError::new(status, code, reason)
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(err) => {
            return Err(reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body could not be read: {}", err.body_text()),
            )
            .await);
        }
    };
    let project_row = match e.store.project(&project).await {
        Ok(p) => p,
        Err(sluice_store::StoreError::NotFound(_)) => {
            return Err(reject(
                StatusCode::NOT_FOUND,
                "unknown_project",
                format!("project `{project}` is not registered"),
            )
            .await
            .hint("register it with `sluice project add`"));
        }
        Err(err) => return Err(err.into()),
    };
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let verified = match sluice_webhook::verify_and_parse(
        p,
        &Headers::new(&pairs),
        &body,
        project_row.webhook_secret.as_bytes(),
    ) {
        Ok(v) => v,
        Err(err) => {
            let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return Err(reject(status, err.code(), err.to_string()).await);
        }
    };
    let fresh = e
        .store
        .record_delivery(
            p.as_str(),
            &verified.delivery_id,
            NewEvent::new(
                EventKind::WebhookAccepted,
                format!("webhook:{}", p.as_str()),
                format!("project/{project}"),
            )
            .project(&project)
            .payload(json!({
                "provider": p.as_str(), "delivery": verified.delivery_id,
                "event": event_name(&verified.event), "remote": remote.to_string(),
            })),
        )
        .await?;
    e.hub.bump();
    if !fresh {
        e.record(vec![
            NewEvent::new(
                EventKind::WebhookDuplicate,
                format!("webhook:{}", p.as_str()),
                format!("project/{project}"),
            )
            .project(&project)
            .payload(json!({ "provider": p.as_str(), "delivery": verified.delivery_id })),
        ])
        .await?;
        return Ok(
            Json(json!({ "status": "duplicate", "delivery": verified.delivery_id }))
                .into_response(),
        );
    }
    match verified.event {
        WebhookEvent::Push(_) => {
            let engine = e.clone();
            tokio::spawn(async move {
                if let Err(err) = engine
                    .sync_project(&project, "webhook", &format!("webhook:{}", p.as_str()))
                    .await
                {
                    tracing::warn!(%project, error = %err, "sync after webhook failed");
                }
            });
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "status": "accepted", "delivery": verified.delivery_id })),
            )
                .into_response())
        }
        WebhookEvent::Ping => Ok(Json(json!({ "status": "pong" })).into_response()),
        WebhookEvent::Other(name) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "ignored", "event": name })),
        )
            .into_response()),
    }
}

fn event_name(e: &WebhookEvent) -> String {
    match e {
        WebhookEvent::Push(_) => "push".into(),
        WebhookEvent::Ping => "ping".into(),
        WebhookEvent::Other(n) => n.clone(),
    }
}
