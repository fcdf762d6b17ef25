//! The notification the server hands to this crate: one event of one incident, with
//! everything a channel needs to render it already resolved (links are signed, the
//! suspected cause is a sentence). Pure data, no behaviour beyond naming.
//!
//! These field names are also the wire format of the generic webhook (see
//! [`crate::render_webhook`]), so renaming one is a breaking change for receivers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What happened to the incident that this notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    /// The incident was opened.
    Triggered,
    /// Nobody acknowledged it in time and it moved to the next escalation step.
    Escalated,
    /// Someone acknowledged it.
    Acknowledged,
    /// It was resolved (by a person or because all its alerts resolved).
    Resolved,
    /// It is still open and unacknowledged; a periodic nudge.
    Reminder,
}

impl NotificationEvent {
    /// All events, in lifecycle order.
    pub const ALL: [NotificationEvent; 5] = [
        NotificationEvent::Triggered,
        NotificationEvent::Escalated,
        NotificationEvent::Acknowledged,
        NotificationEvent::Resolved,
        NotificationEvent::Reminder,
    ];

    /// The wire name: `triggered`, `escalated`, `acknowledged`, `resolved` or `reminder`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Triggered => "triggered",
            NotificationEvent::Escalated => "escalated",
            NotificationEvent::Acknowledged => "acknowledged",
            NotificationEvent::Resolved => "resolved",
            NotificationEvent::Reminder => "reminder",
        }
    }

    /// The capitalised name people read: `Triggered`, `Escalated`, ...
    pub fn label(self) -> &'static str {
        match self {
            NotificationEvent::Triggered => "Triggered",
            NotificationEvent::Escalated => "Escalated",
            NotificationEvent::Acknowledged => "Acknowledged",
            NotificationEvent::Resolved => "Resolved",
            NotificationEvent::Reminder => "Reminder",
        }
    }
}

impl fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert grouped into the incident, as shown in a notification or postmortem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLine {
    /// One-line description of the alert.
    pub summary: String,
    /// Severity name (`critical`, `error`, `warning`, `info`; others are shown as given).
    pub severity: String,
    /// The alert's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the alert started firing, in Unix milliseconds.
    pub starts_at_ms: i64,
}

/// One notification about one incident event, fully prepared by the server.
///
/// Webhook receivers get exactly these fields (plus `version`) as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The incident's id.
    pub incident_id: i64,
    /// Link to the incident page in sluice.
    pub incident_url: String,
    /// What happened.
    pub event: NotificationEvent,
    /// Incident title.
    pub title: String,
    /// Incident severity (`critical`, `error`, `warning`, `info`; others are shown as given).
    pub severity: String,
    /// Project the incident belongs to.
    pub project: String,
    /// Service within the project.
    pub service: String,
    /// Free-text summary of the incident.
    pub summary: String,
    /// Number of alerts in the incident (may exceed `alerts.len()` when the server
    /// sends only the first few).
    pub alert_count: usize,
    /// The alerts to show.
    #[serde(default)]
    pub alerts: Vec<AlertLine>,
    /// A sentence about a likely cause, e.g. "release v1.4.2 deployed 3 min before".
    #[serde(default)]
    pub suspected_cause: Option<String>,
    /// Signed link that acknowledges the incident when opened.
    #[serde(default)]
    pub ack_url: Option<String>,
    /// Signed link that resolves the incident when opened.
    #[serde(default)]
    pub resolve_url: Option<String>,
    /// Who acknowledged it (for `acknowledged` and later events).
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// When the event happened, in Unix milliseconds.
    pub at_ms: i64,
}

impl Notification {
    /// A key that is the same for every attempt to deliver this notification and differs
    /// between notifications, e.g. `incident-42-triggered-1700000000000`. Receivers use it
    /// to drop duplicates caused by retries.
    pub fn delivery_key(&self) -> String {
        format!(
            "incident-{}-{}-{}",
            self.incident_id,
            self.event.as_str(),
            self.at_ms
        )
    }
}
