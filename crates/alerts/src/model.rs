//! The normalised alert model every wire format is converted into.
//!
//! A [`Signal`] is what the server stores: one observation about one alert, keyed by a
//! dedup key (PagerDuty) or a label fingerprint (Alertmanager). The wire-specific types in
//! [`crate::pagerduty`] and [`crate::alertmanager`] convert into it with `into_signal`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A set of label (or annotation) name/value pairs, ordered by name.
pub type Labels = BTreeMap<String, String>;

/// How bad an alert is, ordered `Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational; nobody needs to act.
    Info,
    /// Something may need attention soon.
    Warning,
    /// Something is broken.
    Error,
    /// Something important is broken now; page someone.
    Critical,
}

impl Severity {
    /// All severities from least to most severe.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// The PagerDuty name of the severity (`critical`, `error`, `warning` or `info`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Maps a Prometheus `severity` label value leniently and case-insensitively.
    ///
    /// `critical`/`page`/`p1`/`fatal` are critical, `error`/`high`/`major`/`p2` are errors,
    /// `warning`/`warn`/`minor`/`medium`/`p3` are warnings, `info`/`low`/`none`/`p4`/`p5`
    /// are informational, and anything else (including an empty value) is a warning.
    pub fn from_label(value: &str) -> Severity {
        match value.trim().to_ascii_lowercase().as_str() {
            "critical" | "page" | "p1" | "fatal" => Severity::Critical,
            "error" | "high" | "major" | "p2" => Severity::Error,
            "warning" | "warn" | "minor" | "medium" | "p3" => Severity::Warning,
            "info" | "low" | "none" | "p4" | "p5" => Severity::Info,
            _ => Severity::Warning,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string is not one of the four PagerDuty severity names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}: use one of critical, error, warning or info")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Parses the exact, lower-case PagerDuty names; use [`Severity::from_label`] for
    /// free-form label values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "critical" => Ok(Severity::Critical),
            "error" => Ok(Severity::Error),
            "warning" => Ok(Severity::Warning),
            "info" => Ok(Severity::Info),
            other => Err(UnknownSeverity(other.to_owned())),
        }
    }
}

/// What a signal asks the incident engine to do with the alert it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalAction {
    /// Open the alert, or refresh it if it is already open.
    Trigger,
    /// Someone is working on it; stop notifying.
    Acknowledge,
    /// The problem is gone; close the alert.
    Resolve,
}

impl SignalAction {
    /// The wire name (`trigger`, `acknowledge` or `resolve`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignalAction::Trigger => "trigger",
            SignalAction::Acknowledge => "acknowledge",
            SignalAction::Resolve => "resolve",
        }
    }
}

impl fmt::Display for SignalAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A link attached to an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The URL.
    pub href: String,
    /// Optional text to show instead of the URL.
    pub text: Option<String>,
}

/// An image attached to an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Where the image is served from.
    pub src: String,
    /// Optional URL the image links to.
    pub href: Option<String>,
    /// Optional alternative text.
    pub alt: Option<String>,
}

/// The origin recorded in [`Signal::source`] for PagerDuty Events API v2 alert events.
pub const SOURCE_PAGERDUTY: &str = "pagerduty-events-v2";
/// The origin recorded in [`Signal::source`] for alerts posted to `/api/v2/alerts`.
pub const SOURCE_ALERTMANAGER_API: &str = "alertmanager-api";
/// The origin recorded in [`Signal::source`] for Alertmanager webhook notifications.
pub const SOURCE_ALERTMANAGER_WEBHOOK: &str = "alertmanager-webhook";

/// One normalised observation about one alert, whatever format it arrived in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The dedup key (PagerDuty) or the label fingerprint (Alertmanager).
    pub key: String,
    /// What to do with the alert.
    pub action: SignalAction,
    /// Identifying labels.
    pub labels: Labels,
    /// Non-identifying extra information.
    pub annotations: Labels,
    /// One-line human summary.
    pub summary: String,
    /// How bad it is.
    pub severity: Severity,
    /// When the problem started, in milliseconds since the Unix epoch, if the sender said.
    pub starts_at_ms: Option<i64>,
    /// When the problem ended or will be considered ended, if known.
    pub ends_at_ms: Option<i64>,
    /// Links to attach.
    pub links: Vec<Link>,
    /// Images to attach.
    pub images: Vec<Image>,
    /// Free-form details (PagerDuty `custom_details`), `null` when absent.
    pub details: serde_json::Value,
    /// Link back to the system that generated the alert.
    pub generator_url: Option<String>,
    /// Which wire format the signal came from (one of the `SOURCE_*` constants).
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_is_info_warning_error_critical() {
        let mut shuffled = [
            Severity::Critical,
            Severity::Info,
            Severity::Error,
            Severity::Warning,
        ];
        shuffled.sort();
        assert_eq!(shuffled, Severity::ALL);
        assert!(Severity::Info < Severity::Warning);
        assert!(Severity::Error < Severity::Critical);
    }

    #[test]
    fn severity_names_round_trip() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert!("Critical".parse::<Severity>().is_err());
        assert!("".parse::<Severity>().is_err());
    }

    #[test]
    fn from_label_is_lenient() {
        let cases = [
            ("critical", Severity::Critical),
            ("PAGE", Severity::Critical),
            ("P1", Severity::Critical),
            ("fatal", Severity::Critical),
            ("error", Severity::Error),
            ("High", Severity::Error),
            ("major", Severity::Error),
            ("p2", Severity::Error),
            ("warning", Severity::Warning),
            ("warn", Severity::Warning),
            ("minor", Severity::Warning),
            ("medium", Severity::Warning),
            ("p3", Severity::Warning),
            ("info", Severity::Info),
            ("low", Severity::Info),
            ("none", Severity::Info),
            ("p4", Severity::Info),
            ("P5", Severity::Info),
            (" critical ", Severity::Critical),
            ("", Severity::Warning),
            ("disaster", Severity::Warning),
        ];
        for (input, want) in cases {
            assert_eq!(Severity::from_label(input), want, "input {input:?}");
        }
    }

    #[test]
    fn serde_uses_lower_case_names() {
        let json = serde_json::to_string(&Severity::Critical).expect("serialise severity");
        assert_eq!(json, "\"critical\"");
        let action: SignalAction =
            serde_json::from_str("\"acknowledge\"").expect("deserialise action");
        assert_eq!(action, SignalAction::Acknowledge);
    }
}
