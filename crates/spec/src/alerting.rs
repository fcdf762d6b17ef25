//! The validated model of the `alerts` and `oncall` sections: how a project's alerts group
//! into incidents, who hears about them through which channels, the alert rules over its
//! services' metrics, and its on-call schedules and escalation policies.

use std::collections::BTreeMap;
use std::time::Duration;

pub use sluice_oncall::{Policy as EscalationPolicy, Schedule};

/// The `alerts` section. Every field has a default, so a project without the section
/// still gets incidents grouped by service.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerts {
    /// Labels whose values, besides the service, put alerts into the same incident.
    pub group_by: Vec<String>,
    /// Wait after an incident opens before the first notification.
    pub group_wait: Duration,
    /// Least time between two update notifications of one incident.
    pub group_interval: Duration,
    /// Alerts join an open incident of their group only within this time of its last alert.
    pub group_window: Duration,
    /// The escalation policy (of `oncall.escalation`) that pages people for new incidents.
    pub escalation: Option<String>,
    /// Where every incident notification goes, in file order.
    pub channels: Vec<Channel>,
    /// Where the postmortem record of a resolved incident is posted.
    pub ticket: Option<Webhook>,
    /// Alert rules over the services' metrics, in file order.
    pub rules: Vec<AlertRule>,
    /// PagerDuty-compatible events accepted per routing key and minute; more get 429.
    pub rate_limit: u32,
    /// When an alert counts as flapping.
    pub flapping: Flapping,
}

/// Flap detection (`alerts.flapping`): an alert that changes state (fires, resolves) at
/// least `changes` times within `window` is flapping until it has not changed for `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    /// The window changes are counted in, and how long a flapping alert must be stable.
    pub window: Duration,
    /// State changes within the window at which an alert flaps (at least 2).
    pub changes: u32,
}

impl Default for Flapping {
    fn default() -> Self {
        Flapping {
            window: Duration::from_secs(10 * 60),
            changes: 4,
        }
    }
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            group_by: Vec::new(),
            group_wait: Duration::from_secs(10),
            group_interval: Duration::from_secs(5 * 60),
            group_window: Duration::from_secs(60 * 60),
            escalation: None,
            channels: Vec::new(),
            ticket: None,
            rules: Vec::new(),
            rate_limit: 600,
            flapping: Flapping::default(),
        }
    }
}

/// A notification channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Name, unique in the section.
    pub name: String,
    /// What kind and where.
    pub kind: ChannelKind,
}

/// The kinds of channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// An HTTP POST of a JSON body.
    Webhook(Webhook),
    /// A Slack-compatible incoming webhook; the URL is read from the secret store.
    Slack {
        /// The secret holding the incoming-webhook URL.
        url_secret: String,
    },
    /// Email to these addresses, through the server's SMTP settings.
    Email {
        /// Recipients.
        to: Vec<String>,
    },
}

/// A webhook target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// The body's format.
    pub format: WebhookFormat,
    /// The secret (in the secret store) the body is signed with (HMAC-SHA256).
    pub secret: Option<String>,
}

/// The body a webhook channel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// sluice's own JSON (documented in docs/incidents.md).
    Sluice,
    /// Alertmanager's webhook format (version 4), for receivers written for Alertmanager.
    Alertmanager,
}

/// An alert rule over a service's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Name, unique in the section; the alert's `alertname` label.
    pub name: String,
    /// The service whose metrics it watches.
    pub service: String,
    /// The environment it watches; None: every environment the service is deployed to.
    pub env: Option<String>,
    /// The condition, e.g. `error_rate > 0.05` or `histogram_quantile(0.99, latency) > 0.5`.
    pub expr: String,
    /// The window the metric is computed over.
    pub window: Duration,
    /// How long the condition must hold before the alert fires.
    pub hold: Duration,
    /// Severity of the alert: critical, error, warning or info.
    pub severity: String,
    /// Extra labels of the alert.
    pub labels: BTreeMap<String, String>,
    /// Summary line; None: the rule's name and expression.
    pub summary: Option<String>,
    /// Path of the service's Prometheus endpoint (e.g. `/metrics`), scraped on every ready
    /// instance when the expression reads the service's own metrics.
    pub metrics_path: String,
}

/// The endpoint scraped for a rule's metrics unless it says otherwise.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

/// The `oncall` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OnCall {
    /// Schedules, in file order.
    pub schedules: Vec<Schedule>,
    /// Escalation policies, in file order.
    pub escalation: Vec<EscalationPolicy>,
}
