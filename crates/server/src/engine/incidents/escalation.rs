//! Paging people: when an incident is first notified (or its severity rises), the project's
//! escalation policy starts; its levels page users, or whoever a schedule has on call at the
//! moment of paging (overrides added through the API included), by email, until someone
//! acknowledges. The policy's state lives on the incident row, so a restarted server
//! continues where it was; a ticker in the engine loop advances due escalations. Every page,
//! and "nobody on call", is on the timeline.

use std::sync::Arc;

use serde_json::json;
use sluice_oncall::escalation::{self as esc, EscalationState, Page};
use sluice_oncall::{CompiledSchedule, Target};
use sluice_store::IncidentFilter;

use super::notifier::{self, record};
use crate::engine::{Engine, EngineError, now_ms};

/// The policy and compiled schedules of a project, if it has a policy. The schedules
/// include the overrides added through the API, so a page goes to whoever covers the shift.
async fn policy_of(
    engine: &Engine,
    project: &str,
    now_ms: i64,
) -> Option<(sluice_oncall::Policy, Vec<CompiledSchedule>)> {
    let config = engine.production_config(project).await?;
    let name = config.alerts.escalation.as_ref()?;
    let policy = config
        .oncall
        .escalation
        .iter()
        .find(|p| &p.name == name)?
        .clone();
    let schedules = engine
        .on_call_schedules(project, &config, now_ms)
        .await
        .iter()
        .filter_map(|s| s.compile().ok())
        .collect();
    Some((policy, schedules))
}

/// Starts (or restarts, for a severity rise) the escalation of an incident and sends its
/// first pages.
pub async fn start(engine: &Arc<Engine>, incident: i64) -> Result<(), EngineError> {
    let inc = engine.store.incident(incident).await?;
    let now = now_ms();
    let Some((policy, schedules)) = policy_of(engine, &inc.project, now).await else {
        return Ok(());
    };
    let (state, pages) = esc::start(&policy, now, schedules.as_slice());
    engine
        .store
        .set_escalation(incident, &serde_json::to_value(&state).unwrap_or_default())
        .await?;
    send_pages(engine, incident, &policy.name, pages).await;
    Ok(())
}

/// Advances every due escalation of an open, unacknowledged incident.
pub async fn tick(engine: &Arc<Engine>) -> Result<(), EngineError> {
    let now = now_ms();
    let open = engine
        .store
        .incidents(&IncidentFilter {
            open: true,
            limit: 10_000,
            ..IncidentFilter::default()
        })
        .await?;
    for inc in open {
        if inc.acked_ms.is_some() {
            continue;
        }
        let Some(mut state) = inc
            .escalation
            .as_ref()
            .and_then(|v| serde_json::from_value::<EscalationState>(v.clone()).ok())
        else {
            continue;
        };
        if state.next_at_ms.is_none_or(|t| t > now) {
            continue;
        }
        let Some((policy, schedules)) = policy_of(engine, &inc.project, now).await else {
            continue;
        };
        let pages = esc::advance(&policy, &mut state, now, schedules.as_slice());
        engine
            .store
            .set_escalation(inc.id, &serde_json::to_value(&state).unwrap_or_default())
            .await?;
        send_pages(engine, inc.id, &policy.name, pages).await;
    }
    Ok(())
}

async fn send_pages(engine: &Arc<Engine>, incident: i64, policy: &str, pages: Vec<Page>) {
    for p in pages {
        let level = p.level + 1;
        let Some(user) = p.user.clone() else {
            let what = match &p.target {
                Target::Schedule(s) => format!("nobody is on call in schedule {s}"),
                Target::User(u) => format!("user {u} cannot be paged"),
            };
            record(
                engine,
                incident,
                "page",
                policy,
                format!("level {level} of policy {policy}: {what}"),
                json!({"level": level, "round": p.round}),
            )
            .await;
            continue;
        };
        let engine = engine.clone();
        let policy = policy.to_owned();
        tokio::spawn(async move {
            notifier::page_user(&engine, incident, &user, &policy, level, p.round).await;
        });
    }
}
