//! Server-Sent Events: the live event log and live run logs.
//!
//! Both streams read from the store from a cursor (the `after` parameter or the
//! `Last-Event-ID` header a reconnecting browser sends), then wait for the hub to say the
//! store changed. A reconnect therefore never loses or repeats an entry.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use sluice_store::{EventFilter, LogFilter};

use super::api::EventsQuery;
use super::{ApiError, query};
use crate::engine::Engine;
use crate::engine::access::Caller;

fn last_event_id(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn sse<S>(s: S) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /api/v1/events/stream`: every new event, as it is committed.
pub(super) async fn event_stream(
    State(e): State<Arc<Engine>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let mut filter = q.filter()?;
    if let Some(id) = last_event_id(&headers) {
        filter.after = id;
    } else if filter.after == 0 {
        // A fresh subscriber without a cursor gets only what happens from now on.
        filter.after = e.store.last_event_seq().await?;
    }
    let rx = e.hub.subscribe();
    let state = (e, caller, filter, rx, Vec::<Event>::new());
    let s = stream::unfold(
        state,
        |(e, caller, mut filter, mut rx, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (e, caller, filter, rx, queue)));
                }
                rx.borrow_and_update();
                let f = EventFilter {
                    limit: 500,
                    ..filter.clone()
                };
                match e.store.events(&f).await {
                    Ok(events) if !events.is_empty() => {
                        filter.after = events.last().map(|x| x.seq).unwrap_or(filter.after);
                        queue = events
                            .iter()
                            .rev()
                            .filter(|x| e.may_see_event(&caller, x.project.as_deref()))
                            .map(|x| {
                                Event::default()
                                    .id(x.seq.to_string())
                                    .event(x.kind.as_str())
                                    .data(serde_json::to_string(x).unwrap_or_default())
                            })
                            .collect();
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "event stream read failed"),
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
            }
        },
    );
    Ok(sse(s))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LogStreamQuery {
    after: Option<i64>,
    step: Option<String>,
}

/// `GET /api/v1/runs/{id}/logs/stream`: the run's log lines (`log` events) until the run is
/// finished and every line was sent, then one `end` event with the run's status.
pub(super) async fn log_stream(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<LogStreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("run `{id}` not found"),
        )
    })?;
    e.store.run(id).await?;
    let filter = LogFilter {
        run_id: id,
        step: q.step,
        after: last_event_id(&headers).or(q.after).unwrap_or(0),
        limit: 1000,
    };
    let rx = e.hub.subscribe();
    let state = (e, filter, rx, Vec::<Event>::new(), false);
    let s = stream::unfold(
        state,
        |(e, mut filter, mut rx, mut queue, ended)| async move {
            if ended {
                return None;
            }
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (e, filter, rx, queue, false)));
                }
                rx.borrow_and_update();
                // Read the status before the lines: if the run was finished before this read,
                // every one of its lines is already committed and the read below gets them all.
                let status = e.store.run(filter.run_id).await.ok().map(|r| r.status);
                match e.store.logs(&filter).await {
                    Ok(lines) if !lines.is_empty() => {
                        filter.after = lines.last().map(|l| l.id).unwrap_or(filter.after);
                        queue = lines
                            .iter()
                            .rev()
                            .map(|l| {
                                Event::default()
                                    .id(l.id.to_string())
                                    .event("log")
                                    .data(serde_json::to_string(l).unwrap_or_default())
                            })
                            .collect();
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "log stream read failed"),
                }
                match status {
                    Some(s) if s.is_terminal() => {
                        let end = Event::default()
                            .event("end")
                            .data(json!({ "status": s }).to_string());
                        return Some((Ok(end), (e, filter, rx, queue, true)));
                    }
                    None => return None,
                    _ => {}
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
            }
        },
    );
    Ok(sse(s))
}
