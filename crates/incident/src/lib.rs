//! The incident engine of sluice: it turns a stream of alert signals into alerts and
//! incidents, and decides when someone must be told.
//!
//! Alerts and incidents are separate objects, as in PagerDuty:
//! - an **alert** is one problem reported by one source, deduplicated by its key (a
//!   PagerDuty `dedup_key`, an Alertmanager fingerprint, a rule name) within its scope: a
//!   repeated trigger updates the open alert, a trigger after a resolve opens a new one;
//! - an **incident** groups the alerts of one service (and of the configured labels) that
//!   arrive within a window; it is notified after a short group wait, again only when its
//!   severity rises, and resolves when its last alert resolves or by hand;
//! - an alert that changes state too often is **flapping**: its incident was notified once
//!   and hears nothing more from it, its resolves are held (it stays open, quietly) and a
//!   new alert of its key opens muted, until it has been stable for the flap window (see
//!   `engine.rs` for the rules and why).
//!
//! The engine is pure: it holds only open alerts and open incidents in memory, takes the time
//! as an argument, and answers with [`Effect`]s that the server persists (alerts, incidents,
//! timeline) and acts on (notifications, escalation). It assigns alert and incident ids
//! itself so a batch of effects can be written without reading anything back; on start the
//! server restores it from the open rows ([`Engine::restore_alert`],
//! [`Engine::restore_incident`]). Deliberately not here: storage, HTTP, wire formats
//! (`sluice-alerts`), who is paged (`sluice-oncall`), and how messages look
//! (`sluice-notify`).

mod engine;

pub use engine::{
    Action, AlertSignal, DEFAULT_FLAP_CHANGES, DEFAULT_FLAP_WINDOW_MS, Effect, Engine, Env,
    Grouping, IncidentView, NotifyKind, RestoredAlert, RestoredIncident, flap_config,
};
pub use sluice_alerts::{Labels, Severity};
pub use sluice_rules::FlapConfig;
