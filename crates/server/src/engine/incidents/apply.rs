//! Turns the engine's effects into one store batch (rows, timeline entries, events) and the
//! notifications to send once it is committed.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_core::{EventKind, NewEvent};
use sluice_incident::{Effect, NotifyKind, Severity};
use sluice_store::{
    AlertBatch, AlertChange, DeploymentFilter, IncidentChange, NewAlertRow, NewIncidentRow,
    NewTimelineEntry,
};

use super::notifier::Notification;
use crate::engine::{Engine, EngineError};

/// A stored severity name back as a severity (unknown names read as warning).
pub(crate) fn severity(name: &str) -> Severity {
    name.parse().unwrap_or(Severity::Warning)
}

fn entry(
    incident_id: i64,
    at_ms: i64,
    kind: &str,
    actor: Option<&str>,
    text: String,
) -> NewTimelineEntry {
    NewTimelineEntry {
        incident_id,
        at_ms,
        kind: kind.to_owned(),
        actor: actor.map(str::to_owned),
        text,
        data: json!({}),
    }
}

fn incident_event(kind: EventKind, actor: &str, project: &str, id: i64) -> NewEvent {
    NewEvent::new(kind, actor, format!("incident/{id}")).project(project)
}

/// The release most recently deployed to the service before `at_ms`: the suspected cause.
async fn suspected_release(
    engine: &Engine,
    project: &str,
    service: &str,
    at_ms: i64,
) -> Result<Option<serde_json::Value>, EngineError> {
    let deployments = engine
        .store
        .deployments(&DeploymentFilter {
            project: Some(project.to_owned()),
            service: Some(service.to_owned()),
            limit: 20,
            ..DeploymentFilter::default()
        })
        .await?;
    Ok(deployments
        .into_iter()
        .filter(|d| d.created_ms <= at_ms)
        .max_by_key(|d| d.created_ms)
        .map(|d| {
            json!({
                "deployment": d.id,
                "version": d.version,
                "env": d.env,
                "status": d.status.as_str(),
                "deployed_ms": d.created_ms,
                "strategy": d.strategy,
            })
        }))
}

/// The batch for `effects` and the notifications they call for.
pub(super) async fn to_batch(
    engine: &Engine,
    effects: Vec<Effect>,
    applied: Option<i64>,
) -> Result<(AlertBatch, Vec<Notification>, Vec<i64>), EngineError> {
    let mut b = AlertBatch {
        applied_seq: applied,
        ..AlertBatch::default()
    };
    let mut joined: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut notes = Vec::new();
    let mut resolved = Vec::new();
    // Projects of incidents opened in this batch (others are read when needed).
    let mut projects: BTreeMap<i64, String> = BTreeMap::new();
    for e in effects {
        match e {
            Effect::AlertOpened {
                id,
                incident,
                silenced_by,
                at_ms,
                signal,
            } => {
                let s = *signal;
                b.new_alerts.push(NewAlertRow {
                    id,
                    scope: s.scope,
                    dedup_key: s.key,
                    project: s.project,
                    service: s.service,
                    source: s.source,
                    rule: s.rule,
                    severity: s.severity.as_str().to_owned(),
                    summary: s.summary,
                    labels: s.labels,
                    details: s.details,
                    incident_id: incident,
                    silenced: silenced_by.is_some(),
                    created_ms: at_ms,
                    starts_ms: if s.starts_ms > 0 { s.starts_ms } else { at_ms },
                });
            }
            Effect::AlertRepeated {
                id,
                severity,
                summary,
                at_ms,
            } => b.alert_changes.push(AlertChange::Repeated {
                id,
                severity: severity.as_str().to_owned(),
                summary,
                at_ms,
            }),
            Effect::AlertResolved { id, at_ms } => {
                b.alert_changes.push(AlertChange::Resolved { id, at_ms });
            }
            Effect::AlertFlapping {
                id,
                incident,
                changes,
                window_ms,
                at_ms,
            } => {
                b.alert_changes.push(AlertChange::Flapping {
                    id,
                    flapping: true,
                    at_ms,
                });
                if let Some(inc) = incident {
                    let window = sluice_dora::human_duration(window_ms);
                    let mut e = entry(
                        inc,
                        at_ms,
                        "flapping",
                        None,
                        format!(
                            "alert {id} is flapping ({changes} state changes within {window}): \
                             until it has been stable for {window} it notifies nobody and its \
                             resolves wait"
                        ),
                    );
                    e.data = json!({ "alert": id, "changes": changes, "window_ms": window_ms });
                    b.timeline.push(e);
                }
            }
            Effect::AlertResolveHeld { id, at_ms } => {
                b.alert_changes.push(AlertChange::ResolveHeld { id, at_ms });
            }
            Effect::AlertStable {
                id,
                incident,
                window_ms,
                at_ms,
            } => {
                b.alert_changes.push(AlertChange::Flapping {
                    id,
                    flapping: false,
                    at_ms,
                });
                if let Some(inc) = incident {
                    let window = sluice_dora::human_duration(window_ms);
                    let mut e = entry(
                        inc,
                        at_ms,
                        "stable",
                        None,
                        format!("alert {id} stopped flapping: no state change for {window}"),
                    );
                    e.data = json!({ "alert": id, "window_ms": window_ms });
                    b.timeline.push(e);
                }
            }
            Effect::AlertUnsilenced {
                id,
                incident,
                at_ms,
            } => {
                b.alert_changes.push(AlertChange::Unsilenced {
                    id,
                    incident_id: incident,
                    at_ms,
                });
                let j = joined.entry(incident).or_insert((0, at_ms));
                j.0 += 1;
                j.1 = at_ms;
            }
            Effect::IncidentOpened {
                id,
                project,
                service,
                group_key,
                title,
                severity,
                rule,
                at_ms,
            } => {
                let suspected = suspected_release(engine, &project, &service, at_ms).await?;
                let mut text = format!("incident opened: {title}");
                if let Some(s) = &suspected {
                    text.push_str(&format!(
                        " (suspected cause: version {} deployed to {} before the first alert)",
                        s["version"],
                        s["env"].as_str().unwrap_or("?")
                    ));
                }
                b.timeline.push(entry(id, at_ms, "opened", None, text));
                b.events.push(
                    incident_event(EventKind::IncidentOpened, "system", &project, id).payload(
                        json!({
                            "incident": id, "service": service, "title": title,
                            "severity": severity.as_str(), "suspected_release": suspected,
                        }),
                    ),
                );
                projects.insert(id, project.clone());
                b.new_incidents.push(NewIncidentRow {
                    id,
                    project,
                    service,
                    group_key,
                    title,
                    severity: severity.as_str().to_owned(),
                    rule,
                    opened_ms: at_ms,
                    suspected_release: suspected,
                });
            }
            Effect::AlertJoined {
                incident, at_ms, ..
            } => {
                let j = joined.entry(incident).or_insert((0, at_ms));
                j.0 += 1;
                j.1 = at_ms;
            }
            Effect::SeverityRaised {
                incident,
                from,
                to,
                at_ms,
            } => {
                b.incident_changes.push(IncidentChange::Severity {
                    id: incident,
                    severity: to.as_str().to_owned(),
                    at_ms,
                });
                b.timeline.push(entry(
                    incident,
                    at_ms,
                    "severity",
                    None,
                    format!("severity raised from {} to {}", from.as_str(), to.as_str()),
                ));
            }
            Effect::IncidentAcknowledged {
                incident,
                by,
                at_ms,
            } => {
                b.incident_changes.push(IncidentChange::Acknowledged {
                    id: incident,
                    by: by.clone(),
                    at_ms,
                });
                b.timeline.push(entry(
                    incident,
                    at_ms,
                    "acknowledged",
                    Some(&by),
                    format!("acknowledged by {by}"),
                ));
                let project = project_of(engine, &projects, incident).await?;
                b.events.push(
                    incident_event(EventKind::IncidentAcknowledged, &by, &project, incident)
                        .payload(json!({ "incident": incident })),
                );
            }
            Effect::IncidentResolved {
                incident,
                by,
                at_ms,
            } => {
                b.incident_changes.push(IncidentChange::Resolved {
                    id: incident,
                    by: by.clone(),
                    at_ms,
                });
                resolved.push(incident);
                let text = match &by {
                    Some(who) => format!("resolved by {who}"),
                    None => "resolved: all its alerts resolved".to_owned(),
                };
                b.timeline
                    .push(entry(incident, at_ms, "resolved", by.as_deref(), text));
                let project = project_of(engine, &projects, incident).await?;
                b.events.push(
                    incident_event(
                        EventKind::IncidentResolved,
                        by.as_deref().unwrap_or("system"),
                        &project,
                        incident,
                    )
                    .payload(json!({ "incident": incident, "auto": by.is_none() })),
                );
            }
            Effect::Notify {
                incident,
                kind,
                at_ms,
            } => {
                if kind != NotifyKind::Resolved && kind != NotifyKind::Acknowledged {
                    b.incident_changes.push(IncidentChange::Notified {
                        id: incident,
                        at_ms,
                    });
                }
                notes.push(Notification {
                    incident,
                    kind,
                    at_ms,
                });
            }
        }
    }
    // Alert counts go first so an incident opened in this batch has its count when the
    // notification reads it.
    let counts = joined
        .into_iter()
        .map(|(id, (n, at_ms))| IncidentChange::AlertsJoined { id, n, at_ms });
    b.incident_changes.splice(0..0, counts);
    Ok((b, notes, resolved))
}

async fn project_of(
    engine: &Engine,
    opened: &BTreeMap<i64, String>,
    incident: i64,
) -> Result<String, EngineError> {
    if let Some(p) = opened.get(&incident) {
        return Ok(p.clone());
    }
    Ok(engine.store.incident(incident).await?.project)
}
