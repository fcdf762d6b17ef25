//! Delivers incident notifications to the project's channels, each with signed
//! acknowledge/resolve links, retrying with backoff; every attempt and its result is an
//! entry on the incident's timeline.
//!
//! Notifications of one incident are delivered in the order they were decided (a per
//! incident lock), so a receiver never sees "resolved" before "triggered"; different
//! incidents are delivered in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sluice_incident::NotifyKind;
use sluice_notify::{Backoff, NotificationEvent};
use sluice_spec::{ChannelKind, WebhookFormat};
use sluice_store::{AlertFilter, AlertRow, IncidentRow, NewTimelineEntry};

use crate::engine::{Engine, EngineError, now_ms};

/// How long signed action links stay valid.
const LINK_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;
/// Purpose strings of the signed links.
pub const ACK_PURPOSE: &str = "incident-ack";
/// Purpose of resolve links.
pub const RESOLVE_PURPOSE: &str = "incident-resolve";
/// Alerts listed in one notification at most.
const MAX_ALERTS: i64 = 1000;

/// A notification the engine decided on.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    /// The incident.
    pub incident: i64,
    /// Why.
    pub kind: NotifyKind,
    /// When it was decided.
    pub at_ms: i64,
}

/// Per-incident locks that keep one incident's notifications in order.
#[derive(Default)]
pub struct Order {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl Order {
    fn lock_for(&self, incident: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Drop locks nobody holds so the map stays small.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(incident).or_default().clone()
    }
}

/// Starts delivering `n` in the background.
pub fn dispatch(engine: Arc<Engine>, n: Notification) {
    // Take the lock's place in line now, so deliveries keep the decision order.
    let lock = engine.incidents.order.lock_for(n.incident);
    tokio::spawn(async move {
        let _turn = lock.lock().await;
        if let Err(e) = deliver(&engine, n).await {
            tracing::warn!(incident = n.incident, error = %e, "notification failed");
        }
    });
}

fn event_of(kind: NotifyKind) -> NotificationEvent {
    match kind {
        NotifyKind::Triggered => NotificationEvent::Triggered,
        NotifyKind::SeverityRaised => NotificationEvent::Escalated,
        NotifyKind::Updated => NotificationEvent::Reminder,
        NotifyKind::Acknowledged => NotificationEvent::Acknowledged,
        NotifyKind::Resolved => NotificationEvent::Resolved,
    }
}

/// Signed acknowledge and resolve links of an incident; a link made for a paged user
/// records that user as the one who acted.
pub fn action_links(engine: &Engine, incident: i64, user: Option<&str>) -> (String, String) {
    let base = engine.base_url();
    let expires = now_ms() + LINK_VALIDITY_MS;
    let id = match user {
        Some(u) => format!("{incident}:{u}"),
        None => incident.to_string(),
    };
    let ack = sluice_auth::signed::sign(&engine.access.key, ACK_PURPOSE, &id, expires);
    let resolve = sluice_auth::signed::sign(&engine.access.key, RESOLVE_PURPOSE, &id, expires);
    (
        format!("{base}/incidents/{incident}/ack?sig={ack}"),
        format!("{base}/incidents/{incident}/resolve?sig={resolve}"),
    )
}

/// The notification model of an incident for the channels.
pub fn message(
    engine: &Engine,
    inc: &IncidentRow,
    alerts: &[AlertRow],
    event: NotificationEvent,
    at_ms: i64,
) -> sluice_notify::Notification {
    let (ack_url, resolve_url) = action_links(engine, inc.id, None);
    let open = inc.status != "resolved";
    sluice_notify::Notification {
        incident_id: inc.id,
        incident_url: format!("{}/incidents/{}", engine.base_url(), inc.id),
        event,
        title: inc.title.clone(),
        severity: inc.severity.clone(),
        project: inc.project.clone(),
        service: inc.service.clone(),
        summary: inc.title.clone(),
        alert_count: usize::try_from(inc.alert_count).unwrap_or(alerts.len()),
        alerts: alerts
            .iter()
            .map(|a| sluice_notify::AlertLine {
                summary: a.summary.clone(),
                severity: a.severity.clone(),
                labels: a.labels.clone(),
                starts_at_ms: a.starts_ms,
            })
            .collect(),
        suspected_cause: inc.suspected_release.as_ref().map(|s| {
            format!(
                "version {} deployed to {} ({})",
                s["version"],
                s["env"].as_str().unwrap_or("?"),
                s["status"].as_str().unwrap_or("?")
            )
        }),
        ack_url: (open && inc.acked_ms.is_none()).then_some(ack_url),
        resolve_url: open.then_some(resolve_url),
        acknowledged_by: inc.acked_by.clone(),
        at_ms,
    }
}

/// The Alertmanager webhook (version 4) body of an incident's notification.
fn alertmanager_body(engine: &Engine, inc: &IncidentRow, alerts: &[AlertRow]) -> serde_json::Value {
    let group = sluice_alerts::OutgoingGroup {
        receiver: format!("sluice/{}", inc.project),
        group_key: inc.group_key.clone(),
        group_labels: group_labels(inc),
        alerts: alerts
            .iter()
            .map(|a| {
                let mut labels = a.labels.clone();
                labels
                    .entry("service".into())
                    .or_insert_with(|| a.service.clone());
                sluice_alerts::OutgoingAlert {
                    status: if a.status == "resolved" {
                        sluice_alerts::AlertStatus::Resolved
                    } else {
                        sluice_alerts::AlertStatus::Firing
                    },
                    labels,
                    annotations: [("summary".to_owned(), a.summary.clone())].into(),
                    starts_at_ms: a.starts_ms,
                    ends_at_ms: a.resolved_ms,
                    generator_url: String::new(),
                }
            })
            .collect(),
        external_url: format!("{}/incidents/{}", engine.base_url(), inc.id),
        truncated_alerts: u64::try_from(inc.alert_count - alerts.len() as i64).unwrap_or(0),
    };
    sluice_alerts::render_webhook(&group)
}

/// `name="value"` pairs of the group key, back as labels.
fn group_labels(inc: &IncidentRow) -> sluice_alerts::Labels {
    let mut out = sluice_alerts::Labels::new();
    out.insert("service".into(), inc.service.clone());
    for part in inc.group_key.split('/').skip(2) {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(k.to_owned(), v.trim_matches('"').to_owned());
        }
    }
    out
}

async fn deliver(engine: &Arc<Engine>, n: Notification) -> Result<(), EngineError> {
    let inc = engine.store.incident(n.incident).await?;
    let Some(config) = engine.production_config(&inc.project).await else {
        return Ok(());
    };
    let alerts = engine
        .store
        .alerts(&AlertFilter {
            incident: Some(inc.id),
            limit: MAX_ALERTS,
            ..AlertFilter::default()
        })
        .await?;
    let event = event_of(n.kind);
    let msg = message(engine, &inc, &alerts, event, n.at_ms);
    let mut sends = Vec::new();
    for channel in &config.alerts.channels {
        // Update notifications are for channels that list alerts; people get pages.
        let target = match &channel.kind {
            ChannelKind::Webhook(w) => {
                let secret = match &w.secret {
                    Some(name) => match engine.channel_secret(&inc.project, name).await {
                        Ok(v) => Some(v),
                        Err(e) => {
                            record(
                                engine,
                                inc.id,
                                "delivery",
                                &channel.name,
                                format!("not sent: {e}"),
                                json!({}),
                            )
                            .await;
                            continue;
                        }
                    },
                    None => None,
                };
                match w.format {
                    WebhookFormat::Sluice => Target::Notify(sluice_notify::Channel::Webhook {
                        url: w.url.clone(),
                        secret,
                    }),
                    WebhookFormat::Alertmanager => Target::Alertmanager {
                        url: w.url.clone(),
                        body: alertmanager_body(engine, &inc, &alerts),
                    },
                }
            }
            ChannelKind::Slack { url_secret } => {
                match engine.channel_secret(&inc.project, url_secret).await {
                    Ok(url) => Target::Notify(sluice_notify::Channel::Slack { url }),
                    Err(e) => {
                        record(
                            engine,
                            inc.id,
                            "delivery",
                            &channel.name,
                            format!("not sent: {e}"),
                            json!({}),
                        )
                        .await;
                        continue;
                    }
                }
            }
            ChannelKind::Email { to } => match &engine.config.smtp {
                Some(smtp) => Target::Notify(sluice_notify::Channel::Email {
                    smtp: smtp.clone(),
                    to: to.clone(),
                }),
                None => {
                    record(
                        engine,
                        inc.id,
                        "delivery",
                        &channel.name,
                        "not sent: the server has no SMTP settings (`smtp` in the server configuration)".into(),
                        json!({}),
                    )
                    .await;
                    continue;
                }
            },
        };
        if n.kind == NotifyKind::Updated && matches!(channel.kind, ChannelKind::Email { .. }) {
            continue;
        }
        let engine = engine.clone();
        let msg = msg.clone();
        let name = channel.name.clone();
        sends.push(tokio::spawn(async move {
            send_with_retries(&engine, inc.id, &name, &target, &msg).await;
        }));
    }
    for s in sends {
        let _ = s.await;
    }
    Ok(())
}

/// Where one channel's notification goes.
enum Target {
    Notify(sluice_notify::Channel),
    Alertmanager {
        url: String,
        body: serde_json::Value,
    },
}

async fn send_with_retries(
    engine: &Engine,
    incident: i64,
    channel: &str,
    target: &Target,
    msg: &sluice_notify::Notification,
) {
    let backoff = retry_backoff();
    let mut attempt: u32 = 1;
    loop {
        let result = match target {
            Target::Notify(c) => sluice_notify::send(c, msg, &engine.incidents.http, now_ms())
                .await
                .map(|d| d.detail)
                .map_err(|e| (e.retryable, e.message)),
            Target::Alertmanager { url, body } => {
                post_json(&engine.incidents.http, url, body).await
            }
        };
        let event = msg.event.as_str();
        match result {
            Ok(detail) => {
                record(
                    engine,
                    incident,
                    "delivery",
                    channel,
                    format!(
                        "{event} notification delivered to {channel} (attempt {attempt}): {detail}"
                    ),
                    json!({"channel": channel, "attempt": attempt, "ok": true, "event": event}),
                )
                .await;
                return;
            }
            Err((retryable, why)) => {
                let delay = if retryable {
                    backoff.delay_after(attempt, jitter())
                } else {
                    None
                };
                let next = match delay {
                    Some(ms) => format!("; retrying in {}s", ms.div_ceil(1000)),
                    None => "; giving up".to_owned(),
                };
                record(
                    engine,
                    incident,
                    "delivery",
                    channel,
                    format!(
                        "{event} notification to {channel} failed (attempt {attempt}): {why}{next}"
                    ),
                    json!({"channel": channel, "attempt": attempt, "ok": false, "event": event}),
                )
                .await;
                let Some(ms) = delay else {
                    return;
                };
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                attempt += 1;
            }
        }
    }
}

/// Pages one user of an escalation level: an email with links that act in their name.
/// Every attempt is on the timeline.
pub async fn page_user(
    engine: &Arc<Engine>,
    incident: i64,
    user: &str,
    policy: &str,
    level: usize,
    round: u32,
) {
    let lock = engine.incidents.order.lock_for(incident);
    let _turn = lock.lock().await;
    let detail = json!({"user": user, "level": level, "round": round});
    let email = engine.store.user_email(user).await.ok().flatten();
    let (Some(smtp), Some(to)) = (&engine.config.smtp, email) else {
        let why = if engine.config.smtp.is_none() {
            "the server has no SMTP settings"
        } else {
            "the user has no email address (`sluice users email USER ADDRESS`)"
        };
        record(
            engine,
            incident,
            "page",
            policy,
            format!("could not page {user} (level {level} of policy {policy}): {why}"),
            detail,
        )
        .await;
        return;
    };
    let Ok(inc) = engine.store.incident(incident).await else {
        return;
    };
    let alerts = engine
        .store
        .alerts(&AlertFilter {
            incident: Some(incident),
            limit: 20,
            ..AlertFilter::default()
        })
        .await
        .unwrap_or_default();
    let mut msg = message(
        engine,
        &inc,
        &alerts,
        NotificationEvent::Triggered,
        now_ms(),
    );
    let (ack, resolve) = action_links(engine, incident, Some(user));
    msg.ack_url = Some(ack);
    msg.resolve_url = Some(resolve);
    let channel = sluice_notify::Channel::Email {
        smtp: smtp.clone(),
        to: vec![to.clone()],
    };
    let backoff = retry_backoff();
    let mut attempt = 1;
    loop {
        match sluice_notify::send(&channel, &msg, &engine.incidents.http, now_ms()).await {
            Ok(_) => {
                record(engine, incident, "page", policy, format!("paged {user} by email ({to}), level {level} of policy {policy} (attempt {attempt})"), detail).await;
                return;
            }
            Err(e) => {
                let delay = if e.retryable {
                    backoff.delay_after(attempt, jitter())
                } else {
                    None
                };
                record(
                    engine,
                    incident,
                    "page",
                    policy,
                    format!("paging {user} failed (attempt {attempt}): {}", e.message),
                    detail.clone(),
                )
                .await;
                let Some(ms) = delay else {
                    return;
                };
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                attempt += 1;
            }
        }
    }
}

/// Posts the record of a resolved incident (Markdown postmortem draft and JSON timeline) to
/// the project's ticket webhook, after the incident's notifications, with retries; each
/// attempt is on the timeline.
pub fn post_ticket(engine: Arc<Engine>, incident: i64) {
    let lock = engine.incidents.order.lock_for(incident);
    tokio::spawn(async move {
        let _turn = lock.lock().await;
        if let Err(e) = ticket(&engine, incident).await {
            tracing::warn!(incident, error = %e, "ticket not posted");
        }
    });
}

async fn ticket(engine: &Engine, incident: i64) -> Result<(), EngineError> {
    let inc = engine.store.incident(incident).await?;
    let Some(config) = engine.production_config(&inc.project).await else {
        return Ok(());
    };
    let Some(t) = &config.alerts.ticket else {
        return Ok(());
    };
    let secret = match &t.secret {
        Some(name) => match engine.channel_secret(&inc.project, name).await {
            Ok(v) => Some(v),
            Err(e) => {
                record(
                    engine,
                    incident,
                    "ticket",
                    "ticket",
                    format!("postmortem not posted: {e}"),
                    json!({}),
                )
                .await;
                return Ok(());
            }
        },
        None => None,
    };
    let record_now = super::record::read(engine, incident).await?.postmortem();
    let backoff = retry_backoff();
    let mut attempt = 1;
    loop {
        let result = sluice_notify::send_ticket(
            &t.url,
            secret.as_deref(),
            &record_now,
            &engine.incidents.http,
            now_ms(),
        )
        .await;
        match result {
            Ok(d) => {
                record(
                    engine,
                    incident,
                    "ticket",
                    "ticket",
                    format!(
                        "postmortem posted to the ticket webhook (attempt {attempt}): {}",
                        d.detail
                    ),
                    json!({"attempt": attempt, "ok": true}),
                )
                .await;
                return Ok(());
            }
            Err(e) => {
                let delay = if e.retryable {
                    backoff.delay_after(attempt, jitter())
                } else {
                    None
                };
                record(
                    engine,
                    incident,
                    "ticket",
                    "ticket",
                    format!(
                        "posting the postmortem failed (attempt {attempt}): {}",
                        e.message
                    ),
                    json!({"attempt": attempt, "ok": false}),
                )
                .await;
                let Some(ms) = delay else {
                    return Ok(());
                };
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                attempt += 1;
            }
        }
    }
}

/// Retries of deliveries: quicker than the notify crate's default, since a page should not
/// wait 30 s for its first retry.
fn retry_backoff() -> Backoff {
    Backoff {
        initial_ms: 2_000,
        factor: 2.0,
        max_ms: 5 * 60_000,
        max_attempts: 8,
    }
}

/// A random number in [0, 1] for retry jitter.
fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<String, (bool, String)> {
    match http.post(url).json(body).send().await {
        Ok(r) if r.status().is_success() => Ok(format!("HTTP {}", r.status().as_u16())),
        Ok(r) => {
            let s = r.status();
            Err((
                s.as_u16() == 429 || s.is_server_error(),
                format!("HTTP {}", s.as_u16()),
            ))
        }
        Err(e) => Err((true, e.to_string())),
    }
}

/// Adds a timeline entry; a failure is logged (the delivery itself already happened).
pub async fn record(
    engine: &Engine,
    incident: i64,
    kind: &str,
    actor: &str,
    text: String,
    data: serde_json::Value,
) {
    let entry = NewTimelineEntry {
        incident_id: incident,
        at_ms: now_ms(),
        kind: kind.to_owned(),
        actor: Some(actor.to_owned()),
        text,
        data,
    };
    if let Err(e) = engine.store.add_timeline(vec![entry]).await {
        tracing::warn!(incident, error = %e, "cannot record timeline entry");
    }
    engine.hub.bump();
}
