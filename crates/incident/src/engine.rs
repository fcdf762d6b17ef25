//! The engine's state machine: open alerts by key, open incidents by group, and the
//! deadlines (group wait, group interval) at which notifications fall due.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sluice_alerts::{Labels, Severity};

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
    /// A silenced alert is no longer silenced and joined an incident.
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
    /// Its incident (None when silenced).
    pub incident: Option<i64>,
    /// Severity.
    pub severity: Severity,
    /// The signal that opened it (scope, key, labels, ... as stored), needed for a
    /// silenced alert to open an incident once its silence ends.
    pub signal: AlertSignal,
    /// Whether a silence mutes it.
    pub silenced: bool,
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
    /// Kept only while silenced: what is needed to open an incident when the silence ends.
    silenced: Option<Box<AlertSignal>>,
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

    /// Re-adds an open alert read from storage.
    pub fn restore_alert(&mut self, r: RestoredAlert) {
        let key = (r.signal.scope.clone(), r.signal.key.clone());
        self.next_alert = self.next_alert.max(r.id + 1);
        if let Some(inc) = r.incident.and_then(|i| self.incidents.get_mut(&i)) {
            inc.open_alerts.insert(r.id);
        }
        self.keys_by_id.insert(r.id, key.clone());
        self.alerts.insert(
            key,
            OpenAlert {
                id: r.id,
                incident: r.incident,
                severity: r.severity,
                silenced: r.silenced.then(|| Box::new(r.signal)),
            },
        );
    }

    /// Applies one signal received at `now_ms`.
    pub fn apply(&mut self, signal: AlertSignal, now_ms: i64, env: &dyn Env) -> Vec<Effect> {
        let mut out = Vec::new();
        let key = (signal.scope.clone(), signal.key.clone());
        match signal.action {
            Action::Trigger => {
                if let Some(open) = self.alerts.get_mut(&key) {
                    let id = open.id;
                    let raised = signal.severity > open.severity;
                    open.severity = open.severity.max(signal.severity);
                    let severity = open.severity;
                    let incident = open.incident;
                    out.push(Effect::AlertRepeated {
                        id,
                        severity,
                        summary: signal.summary,
                        at_ms: now_ms,
                    });
                    if raised && let Some(inc) = incident {
                        self.raise(inc, severity, now_ms, &mut out);
                    }
                } else {
                    self.open_alert(key, signal, now_ms, env, &mut out);
                }
            }
            Action::Acknowledge => {
                // An acknowledge for an unknown or silenced alert is dropped, as PagerDuty
                // drops one for an unknown dedup key.
                if let Some(inc) = self.alerts.get(&key).and_then(|a| a.incident) {
                    let by = format!("{} ({})", signal.source, signal.scope);
                    self.acknowledge_inner(inc, &by, now_ms, &mut out);
                }
            }
            Action::Resolve => {
                if self.alerts.contains_key(&key) {
                    self.resolve_alert(&key, now_ms, &mut out);
                }
            }
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

    /// Resolves an open incident by hand, with all its open alerts. Empty when it is not
    /// open.
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
            }
        }
        self.close_incident(incident, Some(by.to_owned()), now_ms, &mut out);
        out
    }

    /// Opens incidents for silenced alerts whose silence has ended. Call when silences
    /// change or expire.
    pub fn recheck_silenced(&mut self, now_ms: i64, env: &dyn Env) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut freed: Vec<(AlertKey, i64)> = self
            .alerts
            .iter()
            .filter_map(|(k, a)| {
                let s = a.silenced.as_ref()?;
                env.silenced(s, now_ms).is_none().then(|| (k.clone(), a.id))
            })
            .collect();
        freed.sort_by_key(|(_, id)| *id);
        for (key, id) in freed {
            let Some(signal) = self.alerts.get_mut(&key).and_then(|a| a.silenced.take()) else {
                continue;
            };
            let incident = self.join_or_open(id, &signal, now_ms, env, &mut out);
            if let Some(a) = self.alerts.get_mut(&key) {
                a.incident = Some(incident);
            }
            out.push(Effect::AlertUnsilenced {
                id,
                incident,
                at_ms: now_ms,
            });
        }
        out
    }

    /// The earliest time at which [`Engine::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Emits the notifications due at or before `now_ms`.
    pub fn tick(&mut self, now_ms: i64, env: &dyn Env) -> Vec<Effect> {
        let mut out = Vec::new();
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

    fn open_alert(
        &mut self,
        key: AlertKey,
        signal: AlertSignal,
        now_ms: i64,
        env: &dyn Env,
        out: &mut Vec<Effect>,
    ) {
        let id = self.next_alert;
        self.next_alert += 1;
        self.keys_by_id.insert(id, key.clone());
        if let Some(silence) = env.silenced(&signal, now_ms) {
            self.alerts.insert(
                key,
                OpenAlert {
                    id,
                    incident: None,
                    severity: signal.severity,
                    silenced: Some(Box::new(signal.clone())),
                },
            );
            out.push(Effect::AlertOpened {
                id,
                incident: None,
                silenced_by: Some(silence),
                at_ms: now_ms,
                signal: Box::new(signal),
            });
            return;
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
                silenced: None,
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

    fn resolve_alert(&mut self, key: &AlertKey, now_ms: i64, out: &mut Vec<Effect>) {
        let Some(alert) = self.alerts.remove(key) else {
            return;
        };
        self.keys_by_id.remove(&alert.id);
        out.push(Effect::AlertResolved {
            id: alert.id,
            at_ms: now_ms,
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
