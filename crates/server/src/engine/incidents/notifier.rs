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

/// Deliveries being prepared or making their first attempt at once, at most: each holds
/// its incident's alerts and rendered bodies, so an alert storm that opens hundreds of
/// incidents must not build all their notifications at the same moment.
const DELIVERY_SLOTS: usize = 8;

/// A delivery slot, shared by one notification's channel sends and given back before any of
/// them waits to retry.
type Slot = Option<Arc<tokio::sync::OwnedSemaphorePermit>>;

/// Per-incident locks that keep one incident's notifications in order, and the delivery
/// slots.
pub struct Order {
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            locks: Mutex::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(DELIVERY_SLOTS)),
        }
    }
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
fn alertmanager_body(
    engine: &Engine,
    inc: &IncidentRow,
    alerts: &[AlertRow],
    group_by: &[String],
) -> serde_json::Value {
    let group = sluice_alerts::OutgoingGroup {
        receiver: format!("sluice/{}", inc.project),
        group_key: inc.group_key.clone(),
        group_labels: group_labels(inc, alerts, group_by),
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

/// The labels the incident's alerts were grouped by: the service and the `group_by`
/// labels, which all its alerts share.
fn group_labels(
    inc: &IncidentRow,
    alerts: &[AlertRow],
    group_by: &[String],
) -> sluice_alerts::Labels {
    let mut out = sluice_alerts::Labels::new();
    out.insert("service".into(), inc.service.clone());
    if let Some(a) = alerts.first() {
        for name in group_by.iter().filter(|n| n.as_str() != "service") {
            out.insert(
                name.clone(),
                a.labels.get(name).cloned().unwrap_or_default(),
            );
        }
    }
    out
}

async fn deliver(engine: &Arc<Engine>, n: Notification) -> Result<(), EngineError> {
    let slot: Slot = engine
        .incidents
        .order
        .slots
        .clone()
        .acquire_owned()
        .await
        .ok()
        .map(Arc::new);
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
                    Some(name) => match secret(engine, &inc, &config, name, &channel.name).await {
                        Some(v) => Some(v),
                        None => continue,
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
                        body: alertmanager_body(engine, &inc, &alerts, &config.alerts.group_by),
                    },
                }
            }
            ChannelKind::Slack { url_secret } => {
                match secret(engine, &inc, &config, url_secret, &channel.name).await {
                    Some(url) => Target::Notify(sluice_notify::Channel::Slack { url }),
                    None => continue,
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
        let slot = slot.clone();
        sends.push(tokio::spawn(async move {
            send_to_channel(&engine, inc.id, &name, &target, &msg, slot).await;
        }));
    }
    drop(slot);
    for s in sends {
        let _ = s.await;
    }
    Ok(())
}

/// A secret a channel names, read for the project's production environment; when it cannot
/// be read, the timeline says why nothing was sent to `channel`.
async fn secret(
    engine: &Engine,
    inc: &IncidentRow,
    config: &sluice_spec::Config,
    name: &str,
    channel: &str,
) -> Option<String> {
    let env = config.environments.last().map_or("", |e| e.name.as_str());
    match engine.channel_secret(&inc.project, env, name).await {
        Ok(v) => Some(v),
        Err(e) => {
            record(
                engine,
                inc.id,
                "delivery",
                channel,
                format!("not sent: {e}"),
                json!({}),
            )
            .await;
            None
        }
    }
}

/// Where one channel's notification goes.
enum Target {
    Notify(sluice_notify::Channel),
    Alertmanager {
        url: String,
        body: serde_json::Value,
    },
}

async fn send_to_channel(
    engine: &Engine,
    incident: i64,
    channel: &str,
    target: &Target,
    msg: &sluice_notify::Notification,
    slot: Slot,
) {
    let event = msg.event.as_str();
    let data = json!({"channel": channel, "event": event});
    let done = format!("{event} notification delivered to {channel}");
    let what = format!("{event} notification to {channel}");
    with_retries(
        engine,
        incident,
        ("delivery", channel),
        (&done, &what),
        data,
        slot,
        || async {
            match target {
                Target::Notify(c) => sluice_notify::send(c, msg, &engine.incidents.http, now_ms())
                    .await
                    .map(|d| d.detail)
                    .map_err(|e| (e.retryable, e.message)),
                Target::Alertmanager { url, body } => {
                    post_json(&engine.incidents.http, url, body).await
                }
            }
        },
    )
    .await;
}

/// Makes one delivery until it succeeds, fails for good or runs out of retries (with
/// backoff and jitter). Every attempt is a timeline entry of `kind` by `actor`: `done` on
/// success, "`what` failed" otherwise; `data` gets the attempt number and whether it worked.
/// The delivery slot, if any, is given back before the first wait.
async fn with_retries<F, Fut>(
    engine: &Engine,
    incident: i64,
    (kind, actor): (&str, &str),
    (done, what): (&str, &str),
    data: serde_json::Value,
    mut slot: Slot,
    mut attempt_once: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, (bool, String)>>,
{
    let backoff = retry_backoff();
    let mut attempt: u32 = 1;
    loop {
        let result = attempt_once().await;
        let mut data = data.clone();
        data["attempt"] = json!(attempt);
        data["ok"] = json!(result.is_ok());
        let (text, delay) = match result {
            Ok(detail) => (format!("{done} (attempt {attempt}): {detail}"), None),
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
                (
                    format!("{what} failed (attempt {attempt}): {why}{next}"),
                    delay,
                )
            }
        };
        record(engine, incident, kind, actor, text, data).await;
        let Some(ms) = delay else {
            return;
        };
        slot.take();
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        attempt += 1;
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
            "the user has no email address (set it with `PATCH /api/v1/users/USER`)"
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
    let done = format!("paged {user} by email ({to}), level {level} of policy {policy}");
    let what = format!("paging {user}");
    with_retries(
        engine,
        incident,
        ("page", policy),
        (&done, &what),
        detail,
        None,
        || async {
            sluice_notify::send(&channel, &msg, &engine.incidents.http, now_ms())
                .await
                .map(|d| d.detail)
                .map_err(|e| (e.retryable, e.message))
        },
    )
    .await;
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
        Some(name) => match secret(engine, &inc, &config, name, "ticket").await {
            Some(v) => Some(v),
            None => return Ok(()),
        },
        None => None,
    };
    let postmortem = super::record::read(engine, incident).await?.postmortem();
    with_retries(
        engine,
        incident,
        ("ticket", "ticket"),
        (
            "postmortem posted to the ticket webhook",
            "posting the postmortem",
        ),
        json!({}),
        None,
        || async {
            sluice_notify::send_ticket(
                &t.url,
                secret.as_deref(),
                &postmortem,
                &engine.incidents.http,
                now_ms(),
            )
            .await
            .map(|d| d.detail)
            .map_err(|e| (e.retryable, e.message))
        },
    )
    .await;
    Ok(())
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
