//! The incident record as people read it: the incident, its alerts, and one timeline that
//! merges the stored entries (notifications, deliveries, status changes) with the alerts
//! firing and resolving and with the deployments of the affected service around that time,
//! and the change events (deploy markers from other tools) of the same window.
//! The API, the UI and the postmortem posted to the ticket webhook all read this.

use serde::Serialize;
use sluice_core::EventKind;
use sluice_notify::{AlertLine, IncidentRecord, SuspectedCause, TimelineEntry};
use sluice_store::{AlertFilter, AlertRow, DeploymentFilter, EventFilter, IncidentRow};

use crate::engine::{Engine, EngineError, now_ms};

/// Alerts of one incident shown in its record at most (the count says how many there are).
const MAX_ALERTS: i64 = 1000;
/// Alerts that get their own timeline entries; the rest are summed up in one.
const TIMELINE_ALERTS: usize = 50;
/// Deployments (and change events) this long before the incident opened are on its
/// timeline.
const DEPLOYS_BEFORE_MS: i64 = 2 * 3600 * 1000;
/// Change events on one timeline at most (the latest are kept).
const MAX_CHANGES: usize = 100;
/// Change events read from the event log per query.
const CHANGE_PAGE: i64 = 1000;

/// One line of the merged timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// When.
    pub at_ms: i64,
    /// `opened`, `alert`, `alert_resolved`, `deploy`, `rollback`, `change`, `delivery`,
    /// `acknowledged`, ...
    pub kind: String,
    /// Who.
    pub actor: Option<String>,
    /// What happened.
    pub text: String,
    /// Details.
    pub data: serde_json::Value,
}

/// An incident with everything around it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The incident.
    pub incident: IncidentRow,
    /// Its alerts, newest first.
    pub alerts: Vec<AlertRow>,
    /// Everything that happened, oldest first.
    pub timeline: Vec<Entry>,
    /// Time to acknowledge.
    pub mtta_ms: Option<i64>,
    /// Time to resolve.
    pub mttr_ms: Option<i64>,
}

/// Reads the record of incident `id`.
pub async fn read(engine: &Engine, id: i64) -> Result<Record, EngineError> {
    let incident = engine.store.incident(id).await?;
    let alerts = engine
        .store
        .alerts(&AlertFilter {
            incident: Some(id),
            limit: MAX_ALERTS,
            ..AlertFilter::default()
        })
        .await?;
    let mut timeline: Vec<Entry> = engine
        .store
        .incident_timeline(id)
        .await?
        .into_iter()
        .map(|t| Entry {
            at_ms: t.at_ms,
            kind: t.kind,
            actor: t.actor,
            text: t.text,
            data: t.data,
        })
        .collect();
    let mut oldest_first: Vec<&AlertRow> = alerts.iter().collect();
    oldest_first.sort_by_key(|a| a.id);
    for a in oldest_first.iter().take(TIMELINE_ALERTS) {
        timeline.push(Entry {
            at_ms: a.created_ms,
            kind: "alert".into(),
            actor: Some(a.source.clone()),
            text: format!("alert fired ({}): {}", a.severity, a.summary),
            data: serde_json::json!({ "alert": a.id, "labels": a.labels }),
        });
        if let Some(r) = a.resolved_ms {
            timeline.push(Entry {
                at_ms: r,
                kind: "alert_resolved".into(),
                actor: Some(a.source.clone()),
                text: format!("alert resolved: {}", a.summary),
                data: serde_json::json!({ "alert": a.id }),
            });
        }
    }
    if incident.alert_count > TIMELINE_ALERTS as i64 {
        timeline.push(Entry {
            at_ms: oldest_first
                .last()
                .map_or(incident.opened_ms, |a| a.created_ms),
            kind: "alert".into(),
            actor: None,
            text: format!(
                "{} more alerts joined (see the alert list)",
                incident.alert_count - TIMELINE_ALERTS as i64
            ),
            data: serde_json::json!({}),
        });
    }
    let until = incident.resolved_ms.unwrap_or_else(now_ms);
    let deployments = engine
        .store
        .deployments(&DeploymentFilter {
            project: Some(incident.project.clone()),
            service: Some(incident.service.clone()),
            limit: 100,
            ..DeploymentFilter::default()
        })
        .await?;
    for d in deployments
        .iter()
        .filter(|d| d.created_ms >= incident.opened_ms - DEPLOYS_BEFORE_MS && d.created_ms <= until)
    {
        timeline.push(Entry {
            at_ms: d.created_ms,
            kind: "deploy".into(),
            actor: Some(d.actor.clone()),
            text: format!(
                "deployment #{} of version {} to {} started ({})",
                d.id, d.version, d.env, d.strategy
            ),
            data: serde_json::json!({ "deployment": d.id, "version": d.version, "env": d.env }),
        });
        if let Some(f) = d.finished_ms {
            let kind = if d.status.as_str() == "rolled_back" {
                "rollback"
            } else {
                "deploy"
            };
            timeline.push(Entry {
                at_ms: f,
                kind: kind.into(),
                actor: Some("system".into()),
                text: format!(
                    "deployment #{} of version {} to {} {}{}",
                    d.id,
                    d.version,
                    d.env,
                    d.status.as_str().replace('_', " "),
                    d.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                data: serde_json::json!({ "deployment": d.id, "status": d.status.as_str() }),
            });
        }
    }
    timeline.extend(
        change_entries(
            engine,
            &incident,
            incident.opened_ms - DEPLOYS_BEFORE_MS,
            until,
        )
        .await?,
    );
    timeline.sort_by_key(|e| e.at_ms);
    Ok(Record {
        mtta_ms: incident.acked_ms.map(|a| a - incident.opened_ms),
        mttr_ms: incident.resolved_ms.map(|r| r - incident.opened_ms),
        incident,
        alerts,
        timeline,
    })
}

/// The project's change events (`change.received`: PagerDuty change events, deploy markers
/// of tools other than sluice) within `[from_ms, until_ms]` as timeline entries: those of
/// the incident's service when their integration names one, and those whose integration
/// names no service. A change is placed at its own `timestamp` when the sender gave one, else
/// when it arrived. At most [`MAX_CHANGES`] entries, the latest; one line says how many more.
async fn change_entries(
    engine: &Engine,
    incident: &IncidentRow,
    from_ms: i64,
    until_ms: i64,
) -> Result<Vec<Entry>, EngineError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = engine
            .store
            .events(&EventFilter {
                after,
                limit: CHANGE_PAGE,
                project: Some(incident.project.clone()),
                kinds: vec![EventKind::ChangeReceived],
                subject: None,
                // A change arrives at or after its own timestamp: earlier arrivals cannot
                // fall in the window.
                since_ms: Some(from_ms),
            })
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        let full = page.len() as i64 == CHANGE_PAGE;
        for e in page {
            let p = &e.payload;
            if p["service"].as_str().is_some_and(|s| s != incident.service) {
                continue;
            }
            let at_ms = p["timestamp_ms"].as_i64().unwrap_or(e.time_ms);
            if at_ms < from_ms || at_ms > until_ms {
                continue;
            }
            let summary = p["summary"].as_str().unwrap_or("(no summary)");
            let text = match p["source"].as_str().filter(|s| !s.is_empty()) {
                Some(source) => format!("change: {summary} ({source})"),
                None => format!("change: {summary}"),
            };
            out.push(Entry {
                at_ms,
                kind: "change".into(),
                actor: Some(e.actor.clone()),
                text,
                data: serde_json::json!({
                    "event": e.seq,
                    "source": p["source"],
                    "service": p["service"],
                    "links": p["links"],
                }),
            });
        }
        if !full {
            break;
        }
    }
    out.sort_by_key(|e| e.at_ms);
    if out.len() > MAX_CHANGES {
        let dropped = out.len() - MAX_CHANGES;
        let kept = out.split_off(dropped);
        let first = kept.first().map_or(from_ms, |e| e.at_ms);
        out = vec![Entry {
            at_ms: first,
            kind: "change".into(),
            actor: None,
            text: format!(
                "{dropped} earlier change events (see the event log, kind change.received)"
            ),
            data: serde_json::json!({}),
        }];
        out.extend(kept);
    }
    Ok(out)
}

impl Record {
    /// The record in the postmortem model.
    pub fn postmortem(&self) -> IncidentRecord {
        let i = &self.incident;
        IncidentRecord {
            id: i.id,
            title: i.title.clone(),
            project: i.project.clone(),
            service: i.service.clone(),
            severity: i.severity.clone(),
            status: i.status.clone(),
            opened_at_ms: i.opened_ms,
            acknowledged_at_ms: i.acked_ms,
            acknowledged_by: i.acked_by.clone(),
            resolved_at_ms: i.resolved_ms,
            resolved_by: i.resolved_by.clone(),
            suspected_cause: i.suspected_release.as_ref().map(|s| SuspectedCause {
                release: format!("{}/{} v{}", i.project, i.service, s["version"]),
                version: s["version"].to_string(),
                deployed_at_ms: s["deployed_ms"].as_i64().unwrap_or_default(),
                deployment_id: s["deployment"].as_i64().unwrap_or_default(),
            }),
            alerts: self
                .alerts
                .iter()
                .map(|a| AlertLine {
                    summary: a.summary.clone(),
                    severity: a.severity.clone(),
                    labels: a.labels.clone(),
                    starts_at_ms: a.starts_ms,
                })
                .collect(),
            timeline: self
                .timeline
                .iter()
                .map(|e| TimelineEntry {
                    at_ms: e.at_ms,
                    kind: e.kind.clone(),
                    actor: e.actor.clone(),
                    text: e.text.clone(),
                })
                .collect(),
        }
    }
}
