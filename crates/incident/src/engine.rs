//! The engine's state machine: open alerts by key, open incidents by group, the deadlines
//! (group wait, group interval) at which notifications fall due, and flap detection per key.
//!
//! Flapping (see also `docs/incidents.md`): each alert key has a
//! [`FlapDetector`] once it has resolved at least once. When its state changes (trigger after
//! resolve, resolve after trigger) too often within the window, the key is flapping, and:
//! - its open alert is marked flapping ([`Effect::AlertFlapping`]); its incident was notified
//!   once (when it opened) and hears nothing more from this alert;
//! - a resolve does not resolve the alert: it stays open, quietly, with the resolve held
//!   ([`Effect::AlertResolveHeld`]), so the incident stays open too and no resolve/trigger pair
//!   of notifications goes out; a trigger after it simply clears the held resolve (the alert
//!   is the same one: no new alert, no new incident, unlike a trigger after a real resolve);
//! - a trigger for a key that has no open alert (its last alert was really resolved, or
//!   resolved by hand) opens a new alert, as PagerDuty does, but muted: no incident, like a
//!   silenced alert, until it stops flapping;
//! - it stops flapping once its state has not changed for the detector's window
//!   ([`Effect::AlertStable`]); then a held resolve applies (the alert resolves at the time its
//!   source resolved it, and its incident resolves if that was its last alert, telling whoever
//!   was notified) and a muted firing alert joins or opens an incident like any new alert.
//!
//! Detectors are kept only for keys that have resolved and changed within the window (an
//! alert that never resolved has had one change, its opening, which a detector made at its
//! first resolve records after the fact), so a storm of alerts that just fire costs none.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sluice_alerts::{Labels, Severity};
use sluice_rules::{AlertState, FlapChange, FlapConfig, FlapDetector};

/// The flap window by default: 10 minutes.
pub const DEFAULT_FLAP_WINDOW_MS: i64 = 10 * 60_000;
/// State changes within the window at which an alert flaps, by default: two complete
/// trigger/resolve cycles.
pub const DEFAULT_FLAP_CHANGES: usize = 4;

/// The most state changes [`flap_config`] accepts (a detector keeps that many times).
pub const MAX_FLAP_CHANGES: usize = 1_000;

/// The detector settings for `changes` state changes within `window_ms`: flapping starts at
/// `changes` changes within the window and stops once the alert has not changed state for a
/// whole window. `changes` is kept within 2 (an alert's opening is a change, so 1 would make
/// every alert flap) and [`MAX_FLAP_CHANGES`]; a window that is not positive gives the
/// default window.
pub fn flap_config(window_ms: i64, changes: usize) -> FlapConfig {
    let window_ms = if window_ms > 0 {
        window_ms
    } else {
        DEFAULT_FLAP_WINDOW_MS
    };
    // Leave at 0: "stable for a whole window". Both arguments are valid here, so the
    // fallback is never taken; it only avoids a panic path.
    FlapConfig::new(window_ms, changes.clamp(2, MAX_FLAP_CHANGES), 0).unwrap_or_default()
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Open the alert, or refresh it when it is already open.
    Trigger,
    /// The source acknowledges the problem: its incident is acknowledged.
    Acknowledge,
    /// The problem is over: the alert resolves.
    Resolve,
}

/// One normalised signal about one alert, from any source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSignal {
    /// The deduplication namespace: keys are unique within it (e.g. `pd:3` for the
    /// integration with id 3, `rule:shop` for the rules of project `shop`).
    pub scope: String,
    /// The deduplication key within the scope.
    pub key: String,
    /// Trigger, acknowledge or resolve.
    pub action: Action,
    /// Project the alert belongs to.
    pub project: String,
    /// Service the alert is about (`-` when unknown).
    pub service: String,
    /// Where it came from (`pagerduty`, `alertmanager`, `rule`, `sluice`).
    pub source: String,
    /// One line saying what is wrong.
    pub summary: String,
    /// How bad it is.
    pub severity: Severity,
    /// Labels, used for grouping and silences.
    pub labels: Labels,
    /// Anything else the source sent (kept, shown, never interpreted).
    pub details: serde_json::Value,
    /// When the problem started by the source's clock (Unix ms).
    pub starts_ms: i64,
    /// The alert rule that raised it, for rule signals and noise figures.
    pub rule: Option<String>,
}

impl AlertSignal {
    /// Replaces every NUL character in the signal's text (scope, key, project, service,
    /// source, summary, rule, label names and values) by U+FFFD; true when there was one.
    /// PostgreSQL cannot store NUL in text, and no sender may stop the incident engine by
    /// sending one (`details` is kept as JSON, where NUL is escaped).
    pub fn scrub_nul(&mut self) -> bool {
        fn fix(s: &mut String) -> bool {
            let found = s.contains('\0');
            if found {
                *s = s.replace('\0', "\u{FFFD}");
            }
            found
        }
        let mut found = false;
        for s in [
            &mut self.scope,
            &mut self.key,
            &mut self.project,
            &mut self.service,
            &mut self.source,
            &mut self.summary,
        ] {
            found |= fix(s);
        }
        if let Some(rule) = &mut self.rule {
            found |= fix(rule);
        }
        if self
            .labels
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            found = true;
            self.labels = std::mem::take(&mut self.labels)
                .into_iter()
                .map(|(mut k, mut v)| {
                    fix(&mut k);
                    fix(&mut v);
                    (k, v)
                })
                .collect();
        }
        found
    }
}

/// How a project's alerts group into incidents and when they are notified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grouping {
    /// Labels whose values, besides the service, put alerts in the same incident.
    pub group_by: Vec<String>,
    /// Wait after an incident opens before the first notification, so that alerts
    /// arriving together are sent together.
    pub group_wait_ms: i64,
    /// Least time between two update notifications of one incident.
    pub group_interval_ms: i64,
    /// An alert joins its group's open incident only if the incident's last alert came at
    /// most this long ago; otherwise it opens a new incident.
    pub group_window_ms: i64,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            group_by: Vec::new(),
            group_wait_ms: 10_000,
            group_interval_ms: 5 * 60_000,
            group_window_ms: 60 * 60_000,
        }
    }
}

/// What the engine needs to know from its surroundings.
pub trait Env {
    /// The grouping settings of a project.
    fn grouping(&self, project: &str) -> &Grouping;
    /// The id of an active silence that mutes this alert at `now_ms`, if any.
    fn silenced(&self, signal: &AlertSignal, now_ms: i64) -> Option<i64>;
    /// The flap detection settings of a project (default: [`DEFAULT_FLAP_CHANGES`] changes
    /// within [`DEFAULT_FLAP_WINDOW_MS`]).
    fn flapping(&self, _project: &str) -> FlapConfig {
        flap_config(DEFAULT_FLAP_WINDOW_MS, DEFAULT_FLAP_CHANGES)
    }
}

/// Why a notification is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// The first notification of a new incident (after the group wait).
    Triggered,
    /// An alert of higher severity joined: page again.
    SeverityRaised,
    /// Alerts joined since the last notification (channels only, people are not paged).
    Updated,
    /// Someone acknowledged it.
    Acknowledged,
    /// It is over.
    Resolved,
}

impl NotifyKind {
    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Triggered => "triggered",
            NotifyKind::SeverityRaised => "severity_raised",
            NotifyKind::Updated => "updated",
            NotifyKind::Acknowledged => "acknowledged",
            NotifyKind::Resolved => "resolved",
        }
    }
}

/// A change the server must persist or act on, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A new alert. `incident` is None when a silence mutes it.
    AlertOpened {
        /// The new alert's id.
        id: i64,
        /// The incident it belongs to.
        incident: Option<i64>,
        /// The silence muting it.
        silenced_by: Option<i64>,
        /// When.
        at_ms: i64,
        /// What came in.
        signal: Box<AlertSignal>,
    },
    /// A trigger for an alert that is already open.
    AlertRepeated {
        /// The alert.
        id: i64,
        /// Its (possibly new) severity.
        severity: Severity,
        /// Its (possibly new) summary.
        summary: String,
        /// When.
        at_ms: i64,
    },
    /// An alert resolved.
    AlertResolved {
        /// The alert.
        id: i64,
        /// When.
        at_ms: i64,
    },
    /// A muted alert (silenced, or opened while its key was flapping) is muted no more and
    /// joined an incident.
    AlertUnsilenced {
        /// The alert.
        id: i64,
        /// The incident it joined.
        incident: i64,
        /// When.
        at_ms: i64,
    },
    /// A new incident.
    IncidentOpened {
        /// Its id.
        id: i64,
        /// Its project.
        project: String,
        /// Its service.
        service: String,
        /// The group it is for.
        group_key: String,
        /// Its title (the first alert's summary).
        title: String,
        /// Its severity.
        severity: Severity,
        /// The rule of its first alert.
        rule: Option<String>,
        /// When.
        at_ms: i64,
    },
    /// An alert joined an incident (also right after the incident opened for it).
    AlertJoined {
        /// The incident.
        incident: i64,
        /// The alert.
        alert: i64,
        /// When.
        at_ms: i64,
    },
    /// An incident's severity went up.
    SeverityRaised {
        /// The incident.
        incident: i64,
        /// Before.
        from: Severity,
        /// After.
        to: Severity,
        /// When.
        at_ms: i64,
    },
    /// An incident was acknowledged.
    IncidentAcknowledged {
        /// The incident.
        incident: i64,
        /// Who (a user name, or the integration for a source's acknowledge).
        by: String,
        /// When.
        at_ms: i64,
    },
    /// An incident resolved.
    IncidentResolved {
        /// The incident.
        incident: i64,
        /// Who resolved it by hand; None when its last alert resolved.
        by: Option<String>,
        /// When.
        at_ms: i64,
    },
    /// An alert is flapping: it changed state `changes` times within `window_ms`, or it
    /// opened while its key was flapping. Its triggers and resolves notify nobody until it
    /// is stable again.
    AlertFlapping {
        /// The alert.
        id: i64,
        /// Its incident (None: muted).
        incident: Option<i64>,
        /// State changes of its key within the window.
        changes: usize,
        /// The detector's window.
        window_ms: i64,
        /// When.
        at_ms: i64,
    },
    /// The source resolved a flapping alert: the alert stays open, quietly, and resolves
    /// (at `at_ms`) only if it is still resolved when it stops flapping. A trigger clears it
    /// ([`Effect::AlertRepeated`]).
    AlertResolveHeld {
        /// The alert.
        id: i64,
        /// When its source resolved it.
        at_ms: i64,
    },
    /// An alert stopped flapping: its state did not change for `window_ms`. An
    /// [`Effect::AlertResolved`] (its held resolve) or an [`Effect::AlertUnsilenced`] (a
    /// muted alert joining an incident) may follow.
    AlertStable {
        /// The alert.
        id: i64,
        /// Its incident (None: muted).
        incident: Option<i64>,
        /// The detector's window.
        window_ms: i64,
        /// When.
        at_ms: i64,
    },
    /// Someone must be told.
    Notify {
        /// The incident.
        incident: i64,
        /// Why.
        kind: NotifyKind,
        /// When.
        at_ms: i64,
    },
}

/// An open alert as the server restores it at start.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredAlert {
    /// Id.
    pub id: i64,
    /// Its incident (None when muted: silenced, or opened while flapping).
    pub incident: Option<i64>,
    /// Severity.
    pub severity: Severity,
    /// The signal that opened it (scope, key, labels, ... as stored), needed for a muted
    /// alert to open an incident once it is muted no more.
    pub signal: AlertSignal,
    /// Whether a silence mutes it.
    pub silenced: bool,
    /// When sluice opened it.
    pub opened_ms: i64,
    /// Whether it is flapping now.
    pub flapping: bool,
    /// Its last change (a flapping alert stops flapping a window after it). The time of
    /// its last signal is a safe stand-in: a repeated trigger is no state change, so it
    /// can only make the alert flap a little longer after a restart, never shorter.
    pub last_change_ms: i64,
    /// For a flapping alert whose source resolved it: when (the held resolve).
    pub held_resolve_ms: Option<i64>,
}

/// An open incident as the server restores it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredIncident {
    /// Id.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Group key.
    pub group_key: String,
    /// Severity.
    pub severity: Severity,
    /// Opened.
    pub opened_ms: i64,
    /// Its newest alert's time.
    pub last_alert_ms: i64,
    /// Last notification, None if never notified.
    pub notified_ms: Option<i64>,
    /// Acknowledged.
    pub acked: bool,
}

/// A read-only view of an open incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentView {
    /// Id.
    pub id: i64,
    /// Open alerts in it.
    pub open_alerts: usize,
    /// Severity.
    pub severity: Severity,
    /// Acknowledged.
    pub acked: bool,
    /// Notified at least once.
    pub notified: bool,
}

type AlertKey = (String, String);

#[derive(Debug)]
struct OpenAlert {
    id: i64,
    incident: Option<i64>,
    severity: Severity,
    /// Kept only while muted (silenced, or opened while flapping): what is needed to open an
    /// incident when it is muted no more.
    muted: Option<Box<AlertSignal>>,
    /// When it opened: its first state change, for a flap detector made later.
    opened_ms: i64,
    /// While flapping: when its source resolved it (the resolve waits for the flapping to
    /// stop).
    held_resolve_ms: Option<i64>,
}

#[derive(Debug)]
struct OpenIncident {
    project: String,
    group_key: String,
    severity: Severity,
    acked: bool,
    open_alerts: HashSet<i64>,
    last_alert_ms: i64,
    /// Time of the last notification; None until the first one.
    notified_ms: Option<i64>,
    /// The first notification is due at this time (group wait).
    first_due_ms: Option<i64>,
    /// Alerts joined since the last notification.
    pending_update: bool,
}

/// The incident engine. See the crate documentation.
#[derive(Debug, Default)]
pub struct Engine {
    alerts: HashMap<AlertKey, OpenAlert>,
    keys_by_id: HashMap<i64, AlertKey>,
    incidents: HashMap<i64, OpenIncident>,
    /// The open incident new alerts of a group join.
    groups: HashMap<String, i64>,
    /// (due time, incident) pairs; entries that are no longer due are skipped when popped.
    deadlines: BinaryHeap<Reverse<(i64, i64)>>,
    /// Flap detectors of the keys that resolved within their window or flap.
    flaps: HashMap<AlertKey, FlapDetector>,
    /// (time, key): when a flapping key may stop flapping, or an idle detector may go.
    /// Stale entries are re-checked and re-queued or dropped when popped.
    flap_checks: BinaryHeap<Reverse<(i64, AlertKey)>>,
    next_alert: i64,
    next_incident: i64,
}

impl Engine {
    /// An empty engine whose next ids are `next_alert` and `next_incident` (one above the
    /// highest stored, so ids are never reused).
    pub fn new(next_alert: i64, next_incident: i64) -> Engine {
        Engine {
            next_alert: next_alert.max(1),
            next_incident: next_incident.max(1),
            ..Engine::default()
        }
    }

    /// Number of open alerts (silenced ones included).
    pub fn open_alerts(&self) -> usize {
        self.alerts.len()
    }

    /// Number of open incidents.
    pub fn open_incidents(&self) -> usize {
        self.incidents.len()
    }

    /// A view of an open incident.
    pub fn incident(&self, id: i64) -> Option<IncidentView> {
        self.incidents.get(&id).map(|i| IncidentView {
            id,
            open_alerts: i.open_alerts.len(),
            severity: i.severity,
            acked: i.acked,
            notified: i.notified_ms.is_some(),
        })
    }

    /// Re-adds an open incident read from storage. Call before [`Engine::restore_alert`]
    /// for its alerts. `grouping` is its project's, for its pending notification.
    pub fn restore_incident(&mut self, r: RestoredIncident, grouping: &Grouping) {
        let first_due_ms = if r.notified_ms.is_none() {
            Some(r.opened_ms + grouping.group_wait_ms)
        } else {
            None
        };
        if let Some(due) = first_due_ms {
            self.deadlines.push(Reverse((due, r.id)));
        }
        self.next_incident = self.next_incident.max(r.id + 1);
        // The newest incident of a group is the one new alerts join.
        let newer = self
            .groups
            .get(&r.group_key)
            .is_some_and(|&other| other > r.id);
        if !newer {
            self.groups.insert(r.group_key.clone(), r.id);
        }
        self.incidents.insert(
            r.id,
            OpenIncident {
                project: r.project,
                group_key: r.group_key,
                severity: r.severity,
                acked: r.acked,
                open_alerts: HashSet::new(),
                last_alert_ms: r.last_alert_ms,
                notified_ms: r.notified_ms,
                first_due_ms,
                pending_update: false,
            },
        );
    }

    /// Re-adds an open alert read from storage. A flapping alert gets a detector that flaps
    /// until a window after its last change (the change history itself is not stored).
    pub fn restore_alert(&mut self, r: RestoredAlert, env: &dyn Env) {
        let key = (r.signal.scope.clone(), r.signal.key.clone());
        self.next_alert = self.next_alert.max(r.id + 1);
        if let Some(inc) = r.incident.and_then(|i| self.incidents.get_mut(&i)) {
            inc.open_alerts.insert(r.id);
        }
        let mut held_resolve_ms = None;
        if r.flapping {
            let config = env.flapping(&r.signal.project);
            let resolved = r.held_resolve_ms.is_some();
            self.flaps.insert(
                key.clone(),
                flapping_since(config, r.last_change_ms, resolved),
            );
            self.review_later(&key, r.last_change_ms);
            held_resolve_ms = r.held_resolve_ms;
        }
        self.keys_by_id.insert(r.id, key.clone());
        self.alerts.insert(
            key,
            OpenAlert {
                id: r.id,
                incident: r.incident,
                severity: r.severity,
                muted: r.incident.is_none().then(|| Box::new(r.signal)),
                opened_ms: r.opened_ms,
                held_resolve_ms,
            },
        );
    }

    /// Whether the alert `key` of `scope` is flapping now.
    pub fn is_flapping(&self, scope: &str, key: &str) -> bool {
        self.flaps
            .get(&(scope.to_owned(), key.to_owned()))
            .is_some_and(FlapDetector::is_flapping)
    }

    /// Applies one signal received at `now_ms`.
    pub fn apply(&mut self, signal: AlertSignal, now_ms: i64, env: &dyn Env) -> Vec<Effect> {
        let mut out = Vec::new();
        let key = (signal.scope.clone(), signal.key.clone());
        match signal.action {
            Action::Trigger => {
                if self.alerts.contains_key(&key) {
                    self.repeat(&key, signal, now_ms, env, &mut out);
                } else {
                    // A trigger after a resolve: a state change of the key, and a new alert.
                    let change = self
                        .flaps
                        .get_mut(&key)
                        .map_or(FlapChange::None, |d| d.record(AlertState::Firing, now_ms));
                    if change == FlapChange::Stopped {
                        self.stop_flapping(&key, now_ms, env, &mut out);
                    }
                    let flapping = self.flaps.get(&key).is_some_and(FlapDetector::is_flapping);
                    let id = self.open_alert(key.clone(), signal, now_ms, env, flapping, &mut out);
                    if flapping {
                        self.mark_flapping(
                            &key,
                            id,
                            change == FlapChange::Started,
                            now_ms,
                            &mut out,
                        );
                    }
                }
            }
            Action::Acknowledge => {
                // An acknowledge for an unknown or muted alert is dropped, as PagerDuty
                // drops one for an unknown dedup key.
                if let Some(inc) = self.alerts.get(&key).and_then(|a| a.incident) {
                    let by = format!("{} ({})", signal.source, signal.scope);
                    self.acknowledge_inner(inc, &by, now_ms, &mut out);
                }
            }
            Action::Resolve => self.resolve_signal(&key, &signal.project, now_ms, env, &mut out),
        }
        out
    }

    /// Acknowledges an open incident by hand. Empty when it is not open or already
    /// acknowledged.
    pub fn acknowledge(&mut self, incident: i64, by: &str, now_ms: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        self.acknowledge_inner(incident, by, now_ms, &mut out);
        out
    }

    /// Resolves an open incident by hand, with all its open alerts (flapping ones too: a
    /// person's word ends them; their keys go on flapping, so a new trigger while they flap
    /// opens a muted alert). Empty when it is not open.
    pub fn resolve(&mut self, incident: i64, by: &str, now_ms: i64) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(inc) = self.incidents.get(&incident) else {
            return out;
        };
        let mut ids: Vec<i64> = inc.open_alerts.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(key) = self.keys_by_id.remove(&id) {
                self.alerts.remove(&key);
                out.push(Effect::AlertResolved { id, at_ms: now_ms });
                self.review_later(&key, now_ms);
            }
        }
        self.close_incident(incident, Some(by.to_owned()), now_ms, &mut out);
        out
    }

    /// Opens incidents for muted alerts whose silence has ended (flapping ones wait until
    /// they stop flapping). Call when silences change or expire.
    pub fn recheck_silenced(&mut self, now_ms: i64, env: &dyn Env) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut freed: Vec<(AlertKey, i64)> = self
            .alerts
            .iter()
            .filter(|(k, _)| !self.flaps.get(*k).is_some_and(FlapDetector::is_flapping))
            .filter_map(|(k, a)| {
                let s = a.muted.as_ref()?;
                env.silenced(s, now_ms).is_none().then(|| (k.clone(), a.id))
            })
            .collect();
        freed.sort_by_key(|(_, id)| *id);
        for (key, _) in freed {
            self.unmute(&key, now_ms, env, &mut out);
        }
        out
    }

    /// The earliest time at which [`Engine::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let incidents = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let flaps = self.flap_checks.peek().map(|Reverse((at, _))| *at);
        match (incidents, flaps) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Emits what is due at or before `now_ms`: alerts that stopped flapping (with their
    /// held resolves), then notifications.
    pub fn tick(&mut self, now_ms: i64, env: &dyn Env) -> Vec<Effect> {
        let mut out = Vec::new();
        // Taken out first: what they queue again is looked at in a later tick, whatever
        // times the clock gives.
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.flap_checks.peek()
            && *at <= now_ms
        {
            if let Some(Reverse((_, key))) = self.flap_checks.pop() {
                due.push(key);
            }
        }
        for key in due {
            let Some(d) = self.flaps.get_mut(&key) else {
                continue;
            };
            if d.tick(now_ms) == FlapChange::Stopped {
                self.stop_flapping(&key, now_ms, env, &mut out);
            } else {
                self.review_later(&key, now_ms);
            }
        }
        while let Some(&Reverse((due, id))) = self.deadlines.peek() {
            if due > now_ms {
                break;
            }
            self.deadlines.pop();
            let Some(inc) = self.incidents.get_mut(&id) else {
                continue;
            };
            if inc.first_due_ms.is_some_and(|d| d <= now_ms) {
                inc.first_due_ms = None;
                inc.pending_update = false;
                inc.notified_ms = Some(now_ms);
                out.push(Effect::Notify {
                    incident: id,
                    kind: NotifyKind::Triggered,
                    at_ms: now_ms,
                });
            } else if inc.pending_update && inc.first_due_ms.is_none() {
                let interval = env.grouping(&inc.project).group_interval_ms;
                let next_ok = inc.notified_ms.map_or(now_ms, |n| n + interval);
                if next_ok <= now_ms {
                    inc.pending_update = false;
                    inc.notified_ms = Some(now_ms);
                    out.push(Effect::Notify {
                        incident: id,
                        kind: NotifyKind::Updated,
                        at_ms: now_ms,
                    });
                } else {
                    self.deadlines.push(Reverse((next_ok, id)));
                }
            }
        }
        out
    }

    /// Opens a new alert and returns its id. It is muted (no incident) while a silence
    /// matches it or while its key flaps.
    fn open_alert(
        &mut self,
        key: AlertKey,
        signal: AlertSignal,
        now_ms: i64,
        env: &dyn Env,
        flapping: bool,
        out: &mut Vec<Effect>,
    ) -> i64 {
        let id = self.next_alert;
        self.next_alert += 1;
        self.keys_by_id.insert(id, key.clone());
        let silence = env.silenced(&signal, now_ms);
        if silence.is_some() || flapping {
            self.alerts.insert(
                key,
                OpenAlert {
                    id,
                    incident: None,
                    severity: signal.severity,
                    muted: Some(Box::new(signal.clone())),
                    opened_ms: now_ms,
                    held_resolve_ms: None,
                },
            );
            out.push(Effect::AlertOpened {
                id,
                incident: None,
                silenced_by: silence,
                at_ms: now_ms,
                signal: Box::new(signal),
            });
            return id;
        }
        // The alert row goes first so the incident's effects can refer to it.
        let at = out.len();
        let incident = self.join_or_open(id, &signal, now_ms, env, out);
        self.alerts.insert(
            key,
            OpenAlert {
                id,
                incident: Some(incident),
                severity: signal.severity,
                muted: None,
                opened_ms: now_ms,
                held_resolve_ms: None,
            },
        );
        out.insert(
            at,
            Effect::AlertOpened {
                id,
                incident: Some(incident),
                silenced_by: None,
                at_ms: now_ms,
                signal: Box::new(signal),
            },
        );
        id
    }

    /// A trigger for the open alert `key`: it repeats; after a held resolve (the alert
    /// flaps) the trigger is a state change that clears it.
    fn repeat(
        &mut self,
        key: &AlertKey,
        signal: AlertSignal,
        now_ms: i64,
        env: &dyn Env,
        out: &mut Vec<Effect>,
    ) {
        let Some(open) = self.alerts.get_mut(key) else {
            return;
        };
        let id = open.id;
        let raised = signal.severity > open.severity;
        open.severity = open.severity.max(signal.severity);
        open.held_resolve_ms = None;
        let severity = open.severity;
        let incident = open.incident;
        // A muted alert joins an incident later with what it says now.
        if let Some(m) = open.muted.as_mut() {
            m.severity = severity;
            m.summary.clone_from(&signal.summary);
        }
        out.push(Effect::AlertRepeated {
            id,
            severity,
            summary: signal.summary,
            at_ms: now_ms,
        });
        // Firing again is no change unless a resolve was held; either way the detector
        // forgets changes that left its window, which may end the flapping.
        let change = self
            .flaps
            .get_mut(key)
            .map_or(FlapChange::None, |d| d.record(AlertState::Firing, now_ms));
        match change {
            FlapChange::Started => self.mark_flapping(key, id, true, now_ms, out),
            FlapChange::Stopped => self.stop_flapping(key, now_ms, env, out),
            FlapChange::None => {}
        }
        if raised && let Some(inc) = incident {
            self.raise(inc, severity, now_ms, out);
        }
    }

    /// A resolve for the alert `key`: a state change. While the key flaps the resolve is
    /// held and the alert stays open; otherwise the alert resolves (and its incident with its
    /// last alert).
    fn resolve_signal(
        &mut self,
        key: &AlertKey,
        project: &str,
        now_ms: i64,
        env: &dyn Env,
        out: &mut Vec<Effect>,
    ) {
        let Some(opened_ms) = self.alerts.get(key).map(|a| a.opened_ms) else {
            // A resolve for an unknown key is dropped, as PagerDuty drops it.
            return;
        };
        let change = match self.flaps.get_mut(key) {
            Some(d) => d.record(AlertState::Resolved, now_ms),
            None => {
                // The key's first resolve: its opening was its first change.
                let mut d = FlapDetector::new(env.flapping(project));
                d.record(AlertState::Firing, opened_ms);
                let change = d.record(AlertState::Resolved, now_ms);
                self.flaps.insert(key.clone(), d);
                change
            }
        };
        if change == FlapChange::Stopped {
            // Applies a resolve held before, if any: the alert may be gone now.
            self.stop_flapping(key, now_ms, env, out);
        }
        let Some(open) = self.alerts.get_mut(key) else {
            return;
        };
        let id = open.id;
        if self.flaps.get(key).is_some_and(FlapDetector::is_flapping) {
            // Held: the first resolve counts; repeated resolves (Alertmanager resends them)
            // change nothing.
            if open.held_resolve_ms.is_none() {
                open.held_resolve_ms = Some(now_ms);
                if change == FlapChange::Started {
                    self.mark_flapping(key, id, true, now_ms, out);
                }
                out.push(Effect::AlertResolveHeld { id, at_ms: now_ms });
            }
            return;
        }
        self.resolve_alert(key, now_ms, now_ms, out);
        self.review_later(key, now_ms);
    }

    /// Says that the open alert `id` of `key` flaps; `started`: the key has just started to
    /// (its detector is then queued for its end).
    fn mark_flapping(
        &mut self,
        key: &AlertKey,
        id: i64,
        started: bool,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(d) = self.flaps.get(key) else {
            return;
        };
        let (changes, window_ms) = (d.changes_in_window(now_ms), d.config().window_ms());
        let incident = self.alerts.get(key).and_then(|a| a.incident);
        out.push(Effect::AlertFlapping {
            id,
            incident,
            changes,
            window_ms,
            at_ms: now_ms,
        });
        if started {
            self.review_later(key, now_ms);
        }
    }

    /// The key stopped flapping: its open alert (if any) is stable; a held resolve applies,
    /// a muted alert joins an incident unless a silence still mutes it.
    fn stop_flapping(&mut self, key: &AlertKey, now_ms: i64, env: &dyn Env, out: &mut Vec<Effect>) {
        let window_ms = self.flaps.get(key).map_or(0, |d| d.config().window_ms());
        if let Some(open) = self.alerts.get_mut(key) {
            let (id, incident) = (open.id, open.incident);
            let held = open.held_resolve_ms.take();
            out.push(Effect::AlertStable {
                id,
                incident,
                window_ms,
                at_ms: now_ms,
            });
            match held {
                // The alert resolved when its source said so; its incident resolves now.
                Some(at) => self.resolve_alert(key, at, now_ms, out),
                None => self.unmute(key, now_ms, env, out),
            }
        }
        self.review_later(key, now_ms);
    }

    /// Lets the muted alert `key` join or open an incident, unless a silence mutes it.
    fn unmute(&mut self, key: &AlertKey, now_ms: i64, env: &dyn Env, out: &mut Vec<Effect>) {
        let Some(a) = self.alerts.get(key) else {
            return;
        };
        let id = a.id;
        if a.muted
            .as_ref()
            .is_none_or(|s| env.silenced(s, now_ms).is_some())
        {
            return;
        }
        let Some(signal) = self.alerts.get_mut(key).and_then(|a| a.muted.take()) else {
            return;
        };
        let incident = self.join_or_open(id, &signal, now_ms, env, out);
        if let Some(a) = self.alerts.get_mut(key) {
            a.incident = Some(incident);
        }
        out.push(Effect::AlertUnsilenced {
            id,
            incident,
            at_ms: now_ms,
        });
    }

    /// Queues the next look at the detector of `key`: when a flapping key may stop, or a
    /// window from now for one that changed recently; drops a detector that holds nothing
    /// (not flapping, no change within its window), which bounds them to the keys that
    /// changed within their window.
    fn review_later(&mut self, key: &AlertKey, now_ms: i64) {
        let Some(d) = self.flaps.get(key) else {
            return;
        };
        let at = if d.is_flapping() {
            Some(
                d.next_deadline()
                    .unwrap_or_else(|| now_ms.saturating_add(d.config().window_ms())),
            )
        } else if d.is_idle(now_ms) {
            None
        } else {
            Some(now_ms.saturating_add(d.config().window_ms()))
        };
        match at {
            Some(at) => self.flap_checks.push(Reverse((at, key.clone()))),
            None => {
                self.flaps.remove(key);
            }
        }
    }

    /// Puts alert `id` into its group's open incident, or opens one; returns the incident.
    fn join_or_open(
        &mut self,
        id: i64,
        signal: &AlertSignal,
        now_ms: i64,
        env: &dyn Env,
        out: &mut Vec<Effect>,
    ) -> i64 {
        let grouping = env.grouping(&signal.project);
        let group_key = group_key(signal, &grouping.group_by);
        let joinable = self.groups.get(&group_key).copied().filter(|inc| {
            self.incidents
                .get(inc)
                .is_some_and(|i| now_ms - i.last_alert_ms <= grouping.group_window_ms)
        });
        if let Some(inc_id) = joinable {
            let mut raise_to = None;
            if let Some(inc) = self.incidents.get_mut(&inc_id) {
                inc.open_alerts.insert(id);
                inc.last_alert_ms = now_ms;
                if signal.severity > inc.severity {
                    raise_to = Some(signal.severity);
                } else if inc.notified_ms.is_some() && !inc.pending_update {
                    inc.pending_update = true;
                    let due = inc
                        .notified_ms
                        .map_or(now_ms, |n| (n + grouping.group_interval_ms).max(now_ms));
                    self.deadlines.push(Reverse((due, inc_id)));
                }
            }
            out.push(Effect::AlertJoined {
                incident: inc_id,
                alert: id,
                at_ms: now_ms,
            });
            if let Some(to) = raise_to {
                self.raise(inc_id, to, now_ms, out);
            }
            return inc_id;
        }
        let inc_id = self.next_incident;
        self.next_incident += 1;
        let due = now_ms + grouping.group_wait_ms;
        self.deadlines.push(Reverse((due, inc_id)));
        self.groups.insert(group_key.clone(), inc_id);
        self.incidents.insert(
            inc_id,
            OpenIncident {
                project: signal.project.clone(),
                group_key: group_key.clone(),
                severity: signal.severity,
                acked: false,
                open_alerts: HashSet::from([id]),
                last_alert_ms: now_ms,
                notified_ms: None,
                first_due_ms: Some(due),
                pending_update: false,
            },
        );
        out.push(Effect::IncidentOpened {
            id: inc_id,
            project: signal.project.clone(),
            service: signal.service.clone(),
            group_key,
            title: signal.summary.clone(),
            severity: signal.severity,
            rule: signal.rule.clone(),
            at_ms: now_ms,
        });
        out.push(Effect::AlertJoined {
            incident: inc_id,
            alert: id,
            at_ms: now_ms,
        });
        inc_id
    }

    fn raise(&mut self, incident: i64, to: Severity, now_ms: i64, out: &mut Vec<Effect>) {
        let Some(inc) = self.incidents.get_mut(&incident) else {
            return;
        };
        if to <= inc.severity {
            return;
        }
        let from = inc.severity;
        inc.severity = to;
        out.push(Effect::SeverityRaised {
            incident,
            from,
            to,
            at_ms: now_ms,
        });
        // Before the first notification the raise rides along with it.
        if inc.notified_ms.is_some() {
            inc.notified_ms = Some(now_ms);
            inc.pending_update = false;
            out.push(Effect::Notify {
                incident,
                kind: NotifyKind::SeverityRaised,
                at_ms: now_ms,
            });
        }
    }

    fn acknowledge_inner(&mut self, incident: i64, by: &str, now_ms: i64, out: &mut Vec<Effect>) {
        let Some(inc) = self.incidents.get_mut(&incident) else {
            return;
        };
        if inc.acked {
            return;
        }
        inc.acked = true;
        out.push(Effect::IncidentAcknowledged {
            incident,
            by: by.to_owned(),
            at_ms: now_ms,
        });
        if inc.notified_ms.is_some() {
            out.push(Effect::Notify {
                incident,
                kind: NotifyKind::Acknowledged,
                at_ms: now_ms,
            });
        }
    }

    /// Resolves the open alert `key` as of `at_ms` and, if it was its incident's last
    /// alert, the incident as of `now_ms`.
    fn resolve_alert(&mut self, key: &AlertKey, at_ms: i64, now_ms: i64, out: &mut Vec<Effect>) {
        let Some(alert) = self.alerts.remove(key) else {
            return;
        };
        self.keys_by_id.remove(&alert.id);
        out.push(Effect::AlertResolved {
            id: alert.id,
            at_ms,
        });
        let Some(incident) = alert.incident else {
            return;
        };
        let now_empty = self.incidents.get_mut(&incident).is_some_and(|inc| {
            inc.open_alerts.remove(&alert.id);
            inc.open_alerts.is_empty()
        });
        if now_empty {
            self.close_incident(incident, None, now_ms, out);
        }
    }

    fn close_incident(
        &mut self,
        incident: i64,
        by: Option<String>,
        now_ms: i64,
        out: &mut Vec<Effect>,
    ) {
        let Some(inc) = self.incidents.remove(&incident) else {
            return;
        };
        if self.groups.get(&inc.group_key) == Some(&incident) {
            self.groups.remove(&inc.group_key);
        }
        out.push(Effect::IncidentResolved {
            incident,
            by,
            at_ms: now_ms,
        });
        // Whoever was told about it hears that it is over, whatever silences say now.
        if inc.notified_ms.is_some() {
            out.push(Effect::Notify {
                incident,
                kind: NotifyKind::Resolved,
                at_ms: now_ms,
            });
        }
    }
}

/// A detector flapping since `last_ms`, its last state resolved or firing: its `enter`
/// changes alternating up to `last_ms`, a millisecond apart, so it stops a window after
/// `last_ms` unless the alert changes again.
fn flapping_since(config: FlapConfig, last_ms: i64, resolved: bool) -> FlapDetector {
    let mut d = FlapDetector::new(config);
    let n = config.enter();
    for i in 0..n {
        let back = n - 1 - i;
        let state = if back.is_multiple_of(2) == resolved {
            AlertState::Resolved
        } else {
            AlertState::Firing
        };
        d.record(
            state,
            last_ms.saturating_sub(i64::try_from(back).unwrap_or(0)),
        );
    }
    d
}

/// The group an alert belongs to: its project, its service and the values of the
/// `group_by` labels (a missing label counts as empty).
pub(crate) fn group_key(signal: &AlertSignal, group_by: &[String]) -> String {
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for name in group_by {
        let v = match name.as_str() {
            "service" => signal.service.as_str(),
            "project" => signal.project.as_str(),
            n => signal.labels.get(n).map_or("", String::as_str),
        };
        values.insert(name.as_str(), v);
    }
    let mut key = format!("{}/{}", signal.project, signal.service);
    for (k, v) in values {
        if k == "service" || k == "project" {
            continue;
        }
        key.push_str(&format!("/{k}={v:?}"));
    }
    key
}

#[cfg(test)]
mod tests;
