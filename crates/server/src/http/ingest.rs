//! Wire-compatible alert ingest: the PagerDuty Events API v2 (`POST /v2/enqueue`, change
//! events at `POST /v2/change/enqueue`), Alertmanager's API (`POST /api/v2/alerts`, what
//! Prometheus sends) and the Alertmanager webhook receiver payload (version 4, at
//! `POST /integrations/{key}/webhook`), so existing senders only change their URL.
//!
//! Every answer, good or bad, is the peer's own: status code and body. A request is either
//! refused whole, with nothing stored, or its signals are in the journal before the answer
//! goes out. The integration key names the project (and maybe the service): it travels as
//! the PagerDuty `routing_key`, as `Authorization: Bearer` (Prometheus' `authorization`
//! setting) or in the path (`/integrations/{key}/...`, Prometheus' `path_prefix`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_alerts::{Signal, SignalAction};
use sluice_core::{EventKind, NewEvent};
use sluice_incident::{Action, AlertSignal};
use sluice_store::Integration;

use crate::engine::{Engine, now_ms, random_hex};

/// How long an Alertmanager alert without `endsAt` stays firing (Alertmanager's
/// `resolve_timeout` default).
const RESOLVE_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// The stored form of an integration key.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn json_response(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(body)).into_response()
}

/// How long a looked-up integration key is served from memory (removing an integration
/// clears the cache at once).
const KEY_CACHE: std::time::Duration = std::time::Duration::from_secs(5);

/// The integration a key names: from memory when it was looked up within [`KEY_CACHE`], so a
/// busy sender costs no store read per request. Unknown keys are not cached.
async fn integration(engine: &Engine, key: &str) -> Option<Integration> {
    if key.is_empty() || key.len() > 256 {
        return None;
    }
    let hash = key_hash(key);
    let keys = &engine.incidents.keys;
    if let Some((integ, at)) = keys.read().unwrap_or_else(|p| p.into_inner()).get(&hash)
        && at.elapsed() < KEY_CACHE
    {
        return Some(integ.clone());
    }
    let found = engine
        .store
        .integration_by_key(&hash)
        .await
        .ok()
        .flatten()?;
    let mut cache = keys.write().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= 10_000 {
        cache.clear();
    }
    cache.insert(hash, (found.clone(), std::time::Instant::now()));
    Some(found)
}

/// A signal in the engine's terms, with the integration's project and service.
fn to_engine(s: Signal, integ: &Integration) -> AlertSignal {
    let service = integ
        .service
        .clone()
        .or_else(|| s.labels.get("service").cloned())
        .or_else(|| s.labels.get("component").cloned())
        .unwrap_or_else(|| "-".to_owned());
    let mut details = s.details;
    if !s.annotations.is_empty() {
        details = json!({ "annotations": s.annotations, "details": details });
    }
    AlertSignal {
        scope: format!("i{}", integ.id),
        key: s.key,
        action: match s.action {
            SignalAction::Trigger => Action::Trigger,
            SignalAction::Acknowledge => Action::Acknowledge,
            SignalAction::Resolve => Action::Resolve,
        },
        project: integ.project.clone(),
        service,
        source: s.source,
        summary: s.summary,
        severity: s.severity,
        labels: s.labels,
        details,
        starts_ms: s.starts_at_ms.unwrap_or(0),
        rule: None,
    }
}

/// The 500 each peer would send when the journal cannot take the signals.
fn unavailable(pagerduty: bool, why: &str) -> Response {
    tracing::error!(error = why, "alert not stored");
    if pagerduty {
        json_response(
            500,
            json!({"status": "error", "message": "the event could not be stored; retry"}),
        )
    } else {
        json_response(
            500,
            json!({"code": 500, "message": format!("alerts could not be stored: {why}")}),
        )
    }
}

/// PagerDuty's "invalid event" answer with one error, at `status`.
fn pd_invalid(error: &str, status: u16) -> Response {
    let r = sluice_alerts::PdRejection::invalid(vec![error.to_owned()]);
    json_response(status, r.body)
}

/// `POST /v2/enqueue`: one PagerDuty event.
pub(super) async fn pd_enqueue(
    State(e): State<Arc<Engine>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return pd_invalid("Request body is too large", 413);
    };
    let mut gen_key = || random_hex(16);
    let event = match sluice_alerts::parse_event(&body, &mut gen_key) {
        Ok(ev) => ev,
        Err(r) => return json_response(r.status, r.body),
    };
    let Some(integ) = integration(&e, &event.routing_key).await else {
        return pd_invalid("Invalid routing key", 400);
    };
    if let Err(r) = rate_limit(&e, &integ, &event.routing_key).await {
        return r;
    }
    let dedup_key = event.dedup_key.clone();
    let signal = to_engine(event.into_signal(), &integ);
    match e.incidents.accept(&[signal]).await {
        Ok(_) => json_response(202, sluice_alerts::accepted_body(&dedup_key)),
        Err(err) => unavailable(true, &err.to_string()),
    }
}

async fn rate_limit(e: &Engine, integ: &Integration, key: &str) -> Result<(), Response> {
    let per_minute = e
        .incidents
        .rate_limits
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&integ.project)
        .copied()
        .unwrap_or_else(|| sluice_spec::Alerts::default().rate_limit);
    let Some(n) = std::num::NonZeroU32::new(per_minute) else {
        return Ok(());
    };
    let mut limiters = e
        .incidents
        .limiters
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let limiter = limiters
        .entry(per_minute)
        .or_insert_with(|| sluice_alerts::RateLimiter::new(n, n));
    match limiter.check(key, now_ms()) {
        Ok(()) => Ok(()),
        Err(_) => {
            let r = sluice_alerts::PdRejection::throttled();
            Err(json_response(r.status, r.body))
        }
    }
}

/// `POST /v2/change/enqueue`: a PagerDuty change event, kept as a deploy marker.
pub(super) async fn pd_change(
    State(e): State<Arc<Engine>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return pd_invalid("Request body is too large", 413);
    };
    let event = match sluice_alerts::parse_change_event(&body) {
        Ok(ev) => ev,
        Err(r) => return json_response(r.status, r.body),
    };
    let Some(integ) = integration(&e, &event.routing_key).await else {
        return pd_invalid("Invalid routing key", 400);
    };
    let ev = NewEvent::new(
        EventKind::ChangeReceived,
        format!("integration:{}", integ.name),
        format!("project/{}", integ.project),
    )
    .project(&integ.project)
    .payload(json!({
        "summary": event.summary,
        "source": event.source,
        "timestamp_ms": event.timestamp_ms,
        "service": integ.service,
        "links": event.links,
        "details": event.custom_details,
    }));
    match e.record(vec![ev]).await {
        Ok(()) => json_response(202, sluice_alerts::change_accepted_body()),
        Err(err) => unavailable(true, &err.to_string()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
}

/// Alertmanager's 401 (it has none; this is what its API would say for a refused request).
fn am_unauthorized() -> Response {
    json_response(
        401,
        json!({"code": 401, "message": "unknown integration key: send it as `Authorization: Bearer KEY` or post to /integrations/KEY/api/v2/alerts"}),
    )
}

/// `POST /api/v2/alerts` with the key as a bearer token.
pub(super) async fn am_alerts(
    State(e): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let key = bearer(&headers).unwrap_or_default().to_owned();
    am_alerts_for(e, &key, body).await
}

/// `POST /integrations/{key}/api/v2/alerts`.
pub(super) async fn am_alerts_path(
    State(e): State<Arc<Engine>>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    am_alerts_for(e, &key, body).await
}

async fn am_alerts_for(e: Arc<Engine>, key: &str, body: Result<Bytes, BytesRejection>) -> Response {
    let Some(integ) = integration(&e, key).await else {
        return am_unauthorized();
    };
    let Ok(body) = body else {
        return json_response(
            413,
            json!({"code": 413, "message": "request body too large"}),
        );
    };
    let (alerts, rejection) =
        match sluice_alerts::parse_postable_alerts(&body, now_ms(), RESOLVE_TIMEOUT_MS) {
            Ok(a) => (a, None),
            // Alertmanager keeps the valid alerts of a batch it answers 400 to.
            Err(mut r) => (std::mem::take(&mut r.accepted), Some(r)),
        };
    let signals: Vec<AlertSignal> = alerts
        .into_iter()
        .map(|a| to_engine(a.into_signal(), &integ))
        .collect();
    if !signals.is_empty()
        && let Err(err) = e.incidents.accept(&signals).await
    {
        return unavailable(false, &err.to_string());
    }
    match rejection {
        Some(r) => json_response(r.status, r.body),
        None => StatusCode::OK.into_response(),
    }
}

/// `POST /integrations/{key}/webhook`: an Alertmanager webhook notification (version 4).
pub(super) async fn am_webhook(
    State(e): State<Arc<Engine>>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(integ) = integration(&e, &key).await else {
        return am_unauthorized();
    };
    let Ok(body) = body else {
        return json_response(
            413,
            json!({"code": 413, "message": "request body too large"}),
        );
    };
    let message = match sluice_alerts::parse_webhook(&body) {
        Ok(m) => m,
        Err(r) => return json_response(r.status, r.body),
    };
    let signals: Vec<AlertSignal> = message
        .into_signals()
        .into_iter()
        .map(|s| to_engine(s, &integ))
        .collect();
    match e.incidents.accept(&signals).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(err) => unavailable(false, &err.to_string()),
    }
}

/// `GET /-/ready` and `/-/healthy`, as Alertmanager answers them.
pub(super) async fn ready() -> &'static str {
    "OK"
}
