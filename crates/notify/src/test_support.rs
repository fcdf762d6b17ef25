//! Fixtures shared by the unit tests.

use std::collections::BTreeMap;

use crate::model::{AlertLine, Notification, NotificationEvent};
use crate::postmortem::{IncidentRecord, SuspectedCause, TimelineEntry};

/// 2023-11-14 22:13:20 UTC.
pub(crate) const T0: i64 = 1_700_000_000_000;

pub(crate) fn alert(summary: &str, starts_at_ms: i64) -> AlertLine {
    AlertLine {
        summary: summary.to_string(),
        severity: "critical".to_string(),
        labels: BTreeMap::from([
            ("alertname".to_string(), "HighErrorRate".to_string()),
            ("pod".to_string(), "api-7f9c".to_string()),
        ]),
        starts_at_ms,
    }
}

pub(crate) fn notification() -> Notification {
    Notification {
        incident_id: 42,
        incident_url: "https://sluice.example.com/incidents/42".to_string(),
        event: NotificationEvent::Triggered,
        title: "API error rate above 5%".to_string(),
        severity: "critical".to_string(),
        project: "shop".to_string(),
        service: "api".to_string(),
        summary: "5xx ratio 7.2% over 5 minutes".to_string(),
        alert_count: 1,
        alerts: vec![alert("error rate 7.2% on api", T0 - 60_000)],
        suspected_cause: Some("release v1.4.2 deployed 3 min before".to_string()),
        ack_url: Some("https://sluice.example.com/i/42/ack?exp=1700003600&sig=abc123".to_string()),
        resolve_url: Some(
            "https://sluice.example.com/i/42/resolve?exp=1700003600&sig=def456".to_string(),
        ),
        acknowledged_by: None,
        at_ms: T0,
    }
}

pub(crate) fn record() -> IncidentRecord {
    let entry = |dt: i64, kind: &str, actor: Option<&str>, text: &str| TimelineEntry {
        at_ms: T0 + dt,
        kind: kind.to_string(),
        actor: actor.map(str::to_string),
        text: text.to_string(),
    };
    IncidentRecord {
        id: 42,
        title: "API error rate above 5%".to_string(),
        project: "shop".to_string(),
        service: "api".to_string(),
        severity: "critical".to_string(),
        status: "resolved".to_string(),
        opened_at_ms: T0,
        acknowledged_at_ms: Some(T0 + 252_000),
        acknowledged_by: Some("alice".to_string()),
        resolved_at_ms: Some(T0 + 3_780_000),
        resolved_by: Some("bob".to_string()),
        suspected_cause: Some(SuspectedCause {
            release: "api".to_string(),
            version: "v1.4.2".to_string(),
            deployed_at_ms: T0 - 180_000,
            deployment_id: 17,
        }),
        alerts: vec![
            alert("error rate 7.2% on api", T0 - 60_000),
            alert("p99 latency | 2.1s", T0 - 30_000),
        ],
        // Deliberately out of order: the draft sorts by time.
        timeline: vec![
            entry(
                252_000,
                "acknowledged",
                Some("alice"),
                "acknowledged via Slack",
            ),
            entry(0, "opened", None, "incident opened from 1 alert"),
            entry(1_000, "notified", None, "slack #oncall: delivered (200)"),
            entry(3_780_000, "resolved", Some("bob"), "rolled back to v1.4.1"),
        ],
    }
}
