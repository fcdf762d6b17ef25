//! Alerts, incidents and everything around them: integrations (where signals come in),
//! alerts and incidents as the incident engine decides them, incident timelines and
//! silences, and how far the engine has applied the alert journal (the journal itself is a
//! file of its own, `sluice-journal`, written by the ingest path).
//!
//! Architecture invariant: alert and incident rows are written only through
//! [`Store::apply_alert_batch`], by the single engine task, which assigns their ids itself,
//! in the same transaction as the journal position they reflect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_core::NewEvent;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::rows::{Arg, SqlBuilder, to_json};
use crate::{Result, Store, StoreError, conflict_on_unique, insert_events, limit_or};

/// Rows per multi-row INSERT of alerts (17 arguments each; the statement uses anonymous
/// placeholders on SQLite, see [`SqlBuilder::anonymous_on`]).
const ALERT_ROWS_PER_INSERT: usize = 64;
/// The setting holding the last journal entry the engine applied.
pub const SETTING_ALERTS_APPLIED: &str = "alerts.applied_seq";

const INTEGRATION_COLS: &str = "id, name, project, service, key_hint, created_by, created_ms";
const ALERT_COLS: &str = "id, scope, dedup_key, project, service, source, rule, status, \
     severity, summary, labels, details, incident_id, silenced, flapping, repeats, created_ms, \
     starts_ms, updated_ms, resolved_ms";
const INCIDENT_COLS: &str = "id, project, service, group_key, title, severity, status, \
     alert_count, rule, opened_ms, notified_ms, acked_ms, acked_by, resolved_ms, resolved_by, \
     suspected_release, escalation, updated_ms";
const TIMELINE_COLS: &str = "id, incident_id, at_ms, kind, actor, text, data";
const SILENCE_COLS: &str = "id, project, matchers, starts_ms, ends_ms, recurrence, comment, \
     created_by, created_ms, expired_ms";

/// Where external signals come in. The key itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    /// Id.
    pub id: i64,
    /// Name, unique within the project.
    pub name: String,
    /// The project its alerts belong to.
    pub project: String,
    /// The service its alerts are about; None: taken from the `service` label.
    pub service: Option<String>,
    /// The key's last four characters, to tell keys apart.
    pub key_hint: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_ms: i64,
}

/// A new integration.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    /// Name, unique within the project.
    pub name: String,
    /// Project.
    pub project: String,
    /// Fixed service, if any.
    pub service: Option<String>,
    /// SHA-256 hex of the key.
    pub key_hash: String,
    /// The key's last four characters.
    pub key_hint: String,
    /// Who.
    pub created_by: String,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// Deduplication scope.
    pub scope: String,
    /// Deduplication key.
    pub dedup_key: String,
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Source (`pagerduty`, `alertmanager`, `rule`, `sluice`).
    pub source: String,
    /// The rule that raised it.
    pub rule: Option<String>,
    /// `firing` or `resolved`.
    pub status: String,
    /// Severity name.
    pub severity: String,
    /// Summary.
    pub summary: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What else the source sent.
    pub details: serde_json::Value,
    /// Its incident (None while silenced).
    pub incident_id: Option<i64>,
    /// Muted by a silence.
    pub silenced: bool,
    /// Flapping now (or, for a resolved alert, when it resolved).
    pub flapping: bool,
    /// Marked flapping at some point (what the noise figures count).
    pub flapped: bool,
    /// Repeated triggers while open.
    pub repeats: i64,
    /// When sluice opened it.
    pub created_ms: i64,
    /// When the problem started by the source.
    pub starts_ms: i64,
    /// Last change.
    pub updated_ms: i64,
    /// When it resolved. On an open (flapping) alert: when its source resolved it; the
    /// resolve is held until the alert stops flapping, and a trigger clears it.
    pub resolved_ms: Option<i64>,
}

/// The `flapping` column: never marked.
const FLAP_NEVER: i64 = 0;
/// The `flapping` column: flapping now.
const FLAP_NOW: i64 = 1;
/// The `flapping` column: flapped, stable since.
const FLAP_BEFORE: i64 = 2;

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRow {
    /// Id.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// The group its alerts share.
    pub group_key: String,
    /// Title.
    pub title: String,
    /// Severity name.
    pub severity: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// Alerts that joined it.
    pub alert_count: i64,
    /// The rule of its first alert.
    pub rule: Option<String>,
    /// Opened.
    pub opened_ms: i64,
    /// Last notification.
    pub notified_ms: Option<i64>,
    /// First acknowledged.
    pub acked_ms: Option<i64>,
    /// By whom.
    pub acked_by: Option<String>,
    /// Resolved.
    pub resolved_ms: Option<i64>,
    /// By whom (None: its alerts resolved).
    pub resolved_by: Option<String>,
    /// The release suspected of causing it.
    pub suspected_release: Option<serde_json::Value>,
    /// Escalation state (owned by the server's escalation ticker).
    pub escalation: Option<serde_json::Value>,
    /// Last change.
    pub updated_ms: i64,
}

/// One entry of an incident's timeline (its alerts are read from the alerts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineRow {
    /// Id.
    pub id: i64,
    /// Incident.
    pub incident_id: i64,
    /// When.
    pub at_ms: i64,
    /// What kind of entry (`notification`, `delivery`, `acknowledged`, `deploy`, ...).
    pub kind: String,
    /// Who did it.
    pub actor: Option<String>,
    /// What happened, in one line.
    pub text: String,
    /// Details.
    pub data: serde_json::Value,
}

/// A new timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTimelineEntry {
    /// Incident.
    pub incident_id: i64,
    /// When.
    pub at_ms: i64,
    /// Kind.
    pub kind: String,
    /// Who.
    pub actor: Option<String>,
    /// Text.
    pub text: String,
    /// Details.
    pub data: serde_json::Value,
}

/// A silence or maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceRow {
    /// Id.
    pub id: i64,
    /// Project (None: all projects).
    pub project: Option<String>,
    /// Label matchers, in matcher syntax.
    pub matchers: String,
    /// Start.
    pub starts_ms: i64,
    /// End.
    pub ends_ms: i64,
    /// Weekly recurrence (JSON), None for a one-off.
    pub recurrence: Option<serde_json::Value>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// When.
    pub created_ms: i64,
    /// Ended early by hand.
    pub expired_ms: Option<i64>,
}

/// A new silence.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    /// Project (None: all).
    pub project: Option<String>,
    /// Matchers.
    pub matchers: String,
    /// Start.
    pub starts_ms: i64,
    /// End.
    pub ends_ms: i64,
    /// Weekly recurrence.
    pub recurrence: Option<serde_json::Value>,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

/// A new alert row.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertRow {
    /// Engine-assigned id.
    pub id: i64,
    /// Scope.
    pub scope: String,
    /// Key.
    pub dedup_key: String,
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Source.
    pub source: String,
    /// Rule.
    pub rule: Option<String>,
    /// Severity.
    pub severity: String,
    /// Summary.
    pub summary: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Details.
    pub details: serde_json::Value,
    /// Incident.
    pub incident_id: Option<i64>,
    /// Silenced.
    pub silenced: bool,
    /// Opened.
    pub created_ms: i64,
    /// Started by the source.
    pub starts_ms: i64,
}

/// A change to an existing alert.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// Triggered again while open.
    Repeated {
        /// Alert.
        id: i64,
        /// Severity now.
        severity: String,
        /// Summary now.
        summary: String,
        /// When.
        at_ms: i64,
    },
    /// Resolved.
    Resolved {
        /// Alert.
        id: i64,
        /// When.
        at_ms: i64,
    },
    /// It started (`true`) or stopped flapping. An alert that stopped stays marked as having
    /// flapped ([`AlertRow::flapped`]).
    Flapping {
        /// Alert.
        id: i64,
        /// Flapping now.
        flapping: bool,
        /// When.
        at_ms: i64,
    },
    /// Its source resolved it while it flaps: the alert stays open with `resolved_ms` set
    /// until it stops flapping (then [`AlertChange::Resolved`]) or triggers again
    /// ([`AlertChange::Repeated`] clears it).
    ResolveHeld {
        /// Alert.
        id: i64,
        /// When its source resolved it.
        at_ms: i64,
    },
    /// It is muted no more (its silence ended, or it stopped flapping) and joined an
    /// incident.
    Unsilenced {
        /// Alert.
        id: i64,
        /// Incident.
        incident_id: i64,
        /// When.
        at_ms: i64,
    },
}

/// A new incident row.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncidentRow {
    /// Engine-assigned id.
    pub id: i64,
    /// Project.
    pub project: String,
    /// Service.
    pub service: String,
    /// Group key.
    pub group_key: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// Rule.
    pub rule: Option<String>,
    /// Opened.
    pub opened_ms: i64,
    /// Suspected release.
    pub suspected_release: Option<serde_json::Value>,
}

/// A change to an existing incident.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentChange {
    /// `n` more alerts joined.
    AlertsJoined {
        /// Incident.
        id: i64,
        /// How many.
        n: i64,
        /// When.
        at_ms: i64,
    },
    /// Severity changed.
    Severity {
        /// Incident.
        id: i64,
        /// Now.
        severity: String,
        /// When.
        at_ms: i64,
    },
    /// Notified.
    Notified {
        /// Incident.
        id: i64,
        /// When.
        at_ms: i64,
    },
    /// Acknowledged (kept only the first time).
    Acknowledged {
        /// Incident.
        id: i64,
        /// Who.
        by: String,
        /// When.
        at_ms: i64,
    },
    /// Resolved.
    Resolved {
        /// Incident.
        id: i64,
        /// Who (None: its alerts resolved).
        by: Option<String>,
        /// When.
        at_ms: i64,
    },
}

/// Everything one engine step changed, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertBatch {
    /// The journal entry up to which signals are applied by this batch.
    pub applied_seq: Option<i64>,
    /// New alerts.
    pub new_alerts: Vec<NewAlertRow>,
    /// Changed alerts.
    pub alert_changes: Vec<AlertChange>,
    /// New incidents (written before the alerts, which refer to them).
    pub new_incidents: Vec<NewIncidentRow>,
    /// Changed incidents.
    pub incident_changes: Vec<IncidentChange>,
    /// Timeline entries.
    pub timeline: Vec<NewTimelineEntry>,
    /// Events for the log.
    pub events: Vec<NewEvent>,
}

impl AlertBatch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.applied_seq.is_none()
            && self.new_alerts.is_empty()
            && self.alert_changes.is_empty()
            && self.new_incidents.is_empty()
            && self.incident_changes.is_empty()
            && self.timeline.is_empty()
            && self.events.is_empty()
    }
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only these projects (None: all).
    pub projects: Option<Vec<String>>,
    /// Only this service.
    pub service: Option<String>,
    /// Only open (not resolved) ones.
    pub open: bool,
    /// Opened at or after.
    pub since_ms: Option<i64>,
    /// Newest first, ids below this (paging); 0 for the newest.
    pub before_id: i64,
    /// At most this many (0: a default of 100).
    pub limit: i64,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only these projects (None: all).
    pub projects: Option<Vec<String>>,
    /// Only this incident.
    pub incident: Option<i64>,
    /// Only firing ones.
    pub firing: bool,
    /// Opened at or after.
    pub since_ms: Option<i64>,
    /// Newest first, ids below this; 0 for the newest.
    pub before_id: i64,
    /// At most this many (0: a default of 100).
    pub limit: i64,
}

fn json_text<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn opt_json(text: Option<String>, what: &str) -> Result<Option<serde_json::Value>> {
    text.map(|t| json_text(&t, what)).transpose()
}

fn integration(row: &AnyRow) -> Result<Integration> {
    Ok(Integration {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        key_hint: row.try_get("key_hint")?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
    })
}

fn alert(row: &AnyRow) -> Result<AlertRow> {
    let id: i64 = row.try_get("id")?;
    let labels: String = row.try_get("labels")?;
    let details: String = row.try_get("details")?;
    Ok(AlertRow {
        id,
        scope: row.try_get("scope")?,
        dedup_key: row.try_get("dedup_key")?,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        source: row.try_get("source")?,
        rule: row.try_get("rule")?,
        status: row.try_get("status")?,
        severity: row.try_get("severity")?,
        summary: row.try_get("summary")?,
        labels: json_text(&labels, &format!("labels of alert {id}"))?,
        details: json_text(&details, &format!("details of alert {id}"))?,
        incident_id: row.try_get("incident_id")?,
        silenced: row.try_get::<i64, _>("silenced")? != 0,
        flapping: row.try_get::<i64, _>("flapping")? == FLAP_NOW,
        flapped: row.try_get::<i64, _>("flapping")? != FLAP_NEVER,
        repeats: row.try_get("repeats")?,
        created_ms: row.try_get("created_ms")?,
        starts_ms: row.try_get("starts_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        resolved_ms: row.try_get("resolved_ms")?,
    })
}

fn incident(row: &AnyRow) -> Result<IncidentRow> {
    let id: i64 = row.try_get("id")?;
    Ok(IncidentRow {
        id,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        group_key: row.try_get("group_key")?,
        title: row.try_get("title")?,
        severity: row.try_get("severity")?,
        status: row.try_get("status")?,
        alert_count: row.try_get("alert_count")?,
        rule: row.try_get("rule")?,
        opened_ms: row.try_get("opened_ms")?,
        notified_ms: row.try_get("notified_ms")?,
        acked_ms: row.try_get("acked_ms")?,
        acked_by: row.try_get("acked_by")?,
        resolved_ms: row.try_get("resolved_ms")?,
        resolved_by: row.try_get("resolved_by")?,
        suspected_release: opt_json(
            row.try_get("suspected_release")?,
            &format!("suspected release of incident {id}"),
        )?,
        escalation: opt_json(
            row.try_get("escalation")?,
            &format!("escalation of incident {id}"),
        )?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn timeline(row: &AnyRow) -> Result<TimelineRow> {
    let id: i64 = row.try_get("id")?;
    let data: String = row.try_get("data")?;
    Ok(TimelineRow {
        id,
        incident_id: row.try_get("incident_id")?,
        at_ms: row.try_get("at_ms")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        text: row.try_get("text")?,
        data: json_text(&data, &format!("timeline entry {id}"))?,
    })
}

fn silence(row: &AnyRow) -> Result<SilenceRow> {
    let id: i64 = row.try_get("id")?;
    Ok(SilenceRow {
        id,
        project: row.try_get("project")?,
        matchers: row.try_get("matchers")?,
        starts_ms: row.try_get("starts_ms")?,
        ends_ms: row.try_get("ends_ms")?,
        recurrence: opt_json(
            row.try_get("recurrence")?,
            &format!("recurrence of silence {id}"),
        )?,
        comment: row.try_get("comment")?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
        expired_ms: row.try_get("expired_ms")?,
    })
}

async fn insert_timeline(
    conn: &mut sqlx::AnyConnection,
    entries: &[NewTimelineEntry],
) -> Result<()> {
    for t in entries {
        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, at_ms, kind, actor, text, data) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.incident_id)
        .bind(t.at_ms)
        .bind(t.kind.as_str())
        .bind(t.actor.clone())
        .bind(t.text.as_str())
        .bind(to_json(&t.data, "timeline data")?)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn push_projects(q: &mut SqlBuilder, projects: &Option<Vec<String>>) {
    if let Some(ps) = projects {
        if ps.is_empty() {
            q.push(" AND 1 = 0");
            return;
        }
        q.push(" AND project IN (");
        for (i, p) in ps.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.arg(Arg::Text(p.clone()));
        }
        q.push(")");
    }
}

impl Store {
    // ---- integrations ----

    /// Adds an integration; `Conflict` when the name is taken in the project or the key is
    /// already in use.
    pub async fn add_integration(&self, n: NewIntegration, event: NewEvent) -> Result<Integration> {
        let mut w = self.write(true).await?;
        let row = conflict_on_unique(
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO integrations (name, project, service, key_hash, key_hint, \
                 created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 RETURNING {INTEGRATION_COLS}"
            )))
            .bind(n.name.as_str())
            .bind(n.project.as_str())
            .bind(n.service.clone())
            .bind(n.key_hash.as_str())
            .bind(n.key_hint.as_str())
            .bind(n.created_by.as_str())
            .bind(crate::now_ms())
            .fetch_one(w.conn())
            .await,
            || format!("integration `{}` or its key", n.name),
        )?;
        let out = integration(&row)?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(out)
    }

    /// The integration whose key hashes to `key_hash`.
    pub async fn integration_by_key(&self, key_hash: &str) -> Result<Option<Integration>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INTEGRATION_COLS} FROM integrations WHERE key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(integration).transpose()
    }

    /// Integrations, optionally of one project, by id.
    pub async fn integrations(&self, project: Option<&str>) -> Result<Vec<Integration>> {
        let mut q = SqlBuilder::new(&format!(
            "SELECT {INTEGRATION_COLS} FROM integrations WHERE 1 = 1"
        ));
        if let Some(p) = project {
            q.push(" AND project = ").arg(Arg::Text(p.to_owned()));
        }
        q.push(" ORDER BY id");
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(integration).collect()
    }

    /// Removes an integration; `NotFound` if there is none with that id.
    pub async fn remove_integration(&self, id: i64, event: NewEvent) -> Result<Integration> {
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM integrations WHERE id = $1 RETURNING {INTEGRATION_COLS}"
        )))
        .bind(id)
        .fetch_optional(w.conn())
        .await?;
        let Some(row) = row else {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("integration {id}")));
        };
        let out = integration(&row)?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(out)
    }

    // ---- alerts and incidents ----

    /// Writes one engine step: new incidents, new alerts, changes, timeline entries, events
    /// and how far the journal is applied, in one transaction.
    pub async fn apply_alert_batch(&self, b: AlertBatch) -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        let mut w = self.write(!b.events.is_empty()).await?;
        for inc in &b.new_incidents {
            let suspected = inc
                .suspected_release
                .as_ref()
                .map(|v| to_json(v, "suspected release"))
                .transpose()?;
            sqlx::query(
                "INSERT INTO incidents (id, project, service, group_key, title, severity, \
                 status, alert_count, rule, opened_ms, suspected_release, updated_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'triggered', 0, $7, $8, $9, $8)",
            )
            .bind(inc.id)
            .bind(inc.project.as_str())
            .bind(inc.service.as_str())
            .bind(inc.group_key.as_str())
            .bind(inc.title.as_str())
            .bind(inc.severity.as_str())
            .bind(inc.rule.clone())
            .bind(inc.opened_ms)
            .bind(suspected)
            .execute(w.conn())
            .await?;
        }
        // One key may close and reopen within a batch (an alert resolved, then triggered
        // again: a new alert), and at most one alert per key may be open (`alerts_open_key`).
        // So: changes of alerts that existed before the batch first, then the new alerts,
        // inserted already resolved when the batch resolves them, then the new alerts'
        // changes. Each alert's own changes keep their order.
        let new_ids: std::collections::HashSet<i64> = b.new_alerts.iter().map(|a| a.id).collect();
        let resolved_in_batch: std::collections::HashSet<i64> = b
            .alert_changes
            .iter()
            .filter_map(|c| match c {
                AlertChange::Resolved { id, .. } if new_ids.contains(id) => Some(*id),
                _ => None,
            })
            .collect();
        let (changes_of_new, changes_of_old): (Vec<&AlertChange>, Vec<&AlertChange>) = b
            .alert_changes
            .iter()
            .partition(|c| new_ids.contains(&c.alert_id()));
        for c in changes_of_old {
            alert_change(c).execute(w.conn()).await?;
        }
        for chunk in b.new_alerts.chunks(ALERT_ROWS_PER_INSERT) {
            let mut q = SqlBuilder::new(
                "INSERT INTO alerts (id, scope, dedup_key, project, service, source, rule, \
                 status, severity, summary, labels, details, incident_id, silenced, \
                 created_ms, starts_ms, updated_ms) VALUES ",
            )
            .anonymous_on(self.backend());
            for (i, a) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.arg(Arg::Int(a.id)).push(", ");
                q.arg(Arg::Text(a.scope.clone())).push(", ");
                q.arg(Arg::Text(a.dedup_key.clone())).push(", ");
                q.arg(Arg::Text(a.project.clone())).push(", ");
                q.arg(Arg::Text(a.service.clone())).push(", ");
                q.arg(Arg::Text(a.source.clone())).push(", ");
                q.arg(Arg::OptText(a.rule.clone())).push(", ");
                let status = if resolved_in_batch.contains(&a.id) {
                    "resolved"
                } else {
                    "firing"
                };
                q.arg(Arg::Text(status.to_owned())).push(", ");
                q.arg(Arg::Text(a.severity.clone())).push(", ");
                q.arg(Arg::Text(a.summary.clone())).push(", ");
                q.arg(Arg::Text(to_json(&a.labels, "alert labels")?))
                    .push(", ");
                q.arg(Arg::Text(to_json(&a.details, "alert details")?))
                    .push(", ");
                q.arg(Arg::OptInt(a.incident_id)).push(", ");
                q.arg(Arg::Int(i64::from(a.silenced))).push(", ");
                q.arg(Arg::Int(a.created_ms)).push(", ");
                q.arg(Arg::Int(a.starts_ms)).push(", ");
                q.arg(Arg::Int(a.created_ms)).push(")");
            }
            q.build().execute(w.conn()).await?;
        }
        for c in changes_of_new {
            alert_change(c).execute(w.conn()).await?;
        }
        let mut changes = b.incident_changes.iter().peekable();
        while let Some(c) = changes.next() {
            let q = match c {
                IncidentChange::AlertsJoined { id, n, at_ms } => {
                    // A run of count changes (one per incident a batch touched, often
                    // dozens) goes in one statement per chunk, not one each.
                    let mut run = vec![(*id, *n, *at_ms)];
                    while run.len() < ALERT_ROWS_PER_INSERT
                        && let Some(IncidentChange::AlertsJoined { id, n, at_ms }) =
                            changes.next_if(|c| matches!(c, IncidentChange::AlertsJoined { .. }))
                    {
                        run.push((*id, *n, *at_ms));
                    }
                    alerts_joined(&run, self.backend())
                        .execute(w.conn())
                        .await?;
                    continue;
                }
                IncidentChange::Severity {
                    id,
                    severity,
                    at_ms,
                } => {
                    sqlx::query("UPDATE incidents SET severity = $2, updated_ms = $3 WHERE id = $1")
                        .bind(*id)
                        .bind(severity.clone())
                        .bind(*at_ms)
                }
                IncidentChange::Notified { id, at_ms } => {
                    sqlx::query("UPDATE incidents SET notified_ms = $2 WHERE id = $1")
                        .bind(*id)
                        .bind(*at_ms)
                }
                IncidentChange::Acknowledged { id, by, at_ms } => sqlx::query(
                    "UPDATE incidents SET status = CASE WHEN status = 'triggered' \
                     THEN 'acknowledged' ELSE status END, \
                     acked_ms = COALESCE(acked_ms, $3), acked_by = COALESCE(acked_by, $2), \
                     updated_ms = $3 WHERE id = $1",
                )
                .bind(*id)
                .bind(by.clone())
                .bind(*at_ms),
                IncidentChange::Resolved { id, by, at_ms } => sqlx::query(
                    "UPDATE incidents SET status = 'resolved', resolved_ms = $3, \
                     resolved_by = $2, updated_ms = $3 WHERE id = $1",
                )
                .bind(*id)
                .bind(by.clone())
                .bind(*at_ms),
            };
            q.execute(w.conn()).await?;
        }
        insert_timeline(w.conn(), &b.timeline).await?;
        if let Some(seq) = b.applied_seq {
            crate::secrets::put_setting(w.conn(), SETTING_ALERTS_APPLIED, &seq.to_string()).await?;
        }
        if !b.events.is_empty() {
            insert_events(w.conn(), b.events).await?;
        }
        w.commit().await
    }

    /// The last journal entry the engine applied (0 if none).
    pub async fn alerts_applied_seq(&self) -> Result<i64> {
        Ok(self
            .setting(SETTING_ALERTS_APPLIED)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// The highest alert and incident ids (0 when none).
    pub async fn alert_max_ids(&self) -> Result<(i64, i64)> {
        let a: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM alerts")
            .fetch_one(&self.inner.pool)
            .await?;
        let i: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM incidents")
                .fetch_one(&self.inner.pool)
                .await?;
        Ok((a, i))
    }

    /// Every alert that is not resolved, by id.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ALERT_COLS} FROM alerts WHERE status <> 'resolved' ORDER BY id"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(alert).collect()
    }

    /// Every incident that is not resolved, by id.
    pub async fn open_incidents(&self) -> Result<Vec<IncidentRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLS} FROM incidents WHERE status <> 'resolved' ORDER BY id"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(incident).collect()
    }

    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<IncidentRow> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLS} FROM incidents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref()
            .map(incident)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("incident {id}")))
    }

    /// Incidents, newest first.
    pub async fn incidents(&self, f: &IncidentFilter) -> Result<Vec<IncidentRow>> {
        let mut q = SqlBuilder::new(&format!(
            "SELECT {INCIDENT_COLS} FROM incidents WHERE 1 = 1"
        ));
        push_projects(&mut q, &f.projects);
        if let Some(s) = &f.service {
            q.push(" AND service = ").arg(Arg::Text(s.clone()));
        }
        if f.open {
            q.push(" AND status <> 'resolved'");
        }
        if let Some(t) = f.since_ms {
            q.push(" AND opened_ms >= ").arg(Arg::Int(t));
        }
        if f.before_id > 0 {
            q.push(" AND id < ").arg(Arg::Int(f.before_id));
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .arg(Arg::Int(limit_or(f.limit, 100)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(incident).collect()
    }

    /// Alerts, newest first.
    pub async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRow>> {
        let mut q = SqlBuilder::new(&format!("SELECT {ALERT_COLS} FROM alerts WHERE 1 = 1"));
        push_projects(&mut q, &f.projects);
        if let Some(i) = f.incident {
            q.push(" AND incident_id = ").arg(Arg::Int(i));
        }
        if f.firing {
            q.push(" AND status <> 'resolved'");
        }
        if let Some(t) = f.since_ms {
            q.push(" AND created_ms >= ").arg(Arg::Int(t));
        }
        if f.before_id > 0 {
            q.push(" AND id < ").arg(Arg::Int(f.before_id));
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .arg(Arg::Int(limit_or(f.limit, 100)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(alert).collect()
    }

    /// An incident's timeline entries, oldest first.
    pub async fn incident_timeline(&self, id: i64) -> Result<Vec<TimelineRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TIMELINE_COLS} FROM incident_timeline WHERE incident_id = $1 \
             ORDER BY at_ms, id"
        )))
        .bind(id)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(timeline).collect()
    }

    /// Adds timeline entries on their own (notification deliveries).
    pub async fn add_timeline(&self, entries: Vec<NewTimelineEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut w = self.write(false).await?;
        insert_timeline(w.conn(), &entries).await?;
        w.commit().await
    }

    /// Stores an incident's escalation state (owned by the server's escalation ticker).
    pub async fn set_escalation(&self, id: i64, state: &serde_json::Value) -> Result<()> {
        let mut w = self.write(false).await?;
        sqlx::query("UPDATE incidents SET escalation = $2 WHERE id = $1")
            .bind(id)
            .bind(to_json(state, "escalation state")?)
            .execute(w.conn())
            .await?;
        w.commit().await
    }

    // ---- silences ----

    /// Adds a silence.
    pub async fn add_silence(&self, s: NewSilence, event: NewEvent) -> Result<SilenceRow> {
        let recurrence = s
            .recurrence
            .as_ref()
            .map(|r| to_json(r, "recurrence"))
            .transpose()?;
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO silences (project, matchers, starts_ms, ends_ms, recurrence, comment, \
             created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {SILENCE_COLS}"
        )))
        .bind(s.project.clone())
        .bind(s.matchers.as_str())
        .bind(s.starts_ms)
        .bind(s.ends_ms)
        .bind(recurrence)
        .bind(s.comment.as_str())
        .bind(s.created_by.as_str())
        .bind(crate::now_ms())
        .fetch_one(w.conn())
        .await?;
        let out = silence(&row)?;
        let mut events = vec![event];
        crate::fill_subjects(&mut events, out.id, None);
        insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Ends a silence now; `NotFound` when there is none with that id or it already ended.
    pub async fn expire_silence(
        &self,
        id: i64,
        now_ms: i64,
        event: NewEvent,
    ) -> Result<SilenceRow> {
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE silences SET expired_ms = $2 WHERE id = $1 AND expired_ms IS NULL \
             RETURNING {SILENCE_COLS}"
        )))
        .bind(id)
        .bind(now_ms)
        .fetch_optional(w.conn())
        .await?;
        let Some(row) = row else {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("active silence {id}")));
        };
        let out = silence(&row)?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Silences not expired by hand whose end is after `now_ms` (recurring ones always),
    /// by id.
    pub async fn live_silences(&self, now_ms: i64) -> Result<Vec<SilenceRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SILENCE_COLS} FROM silences WHERE expired_ms IS NULL \
             AND (ends_ms > $1 OR recurrence IS NOT NULL) ORDER BY id"
        )))
        .bind(now_ms)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(silence).collect()
    }

    /// Every silence, newest first, at most `limit`.
    pub async fn silences(&self, limit: i64) -> Result<Vec<SilenceRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SILENCE_COLS} FROM silences ORDER BY id DESC LIMIT $1"
        )))
        .bind(limit_or(limit, 100))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(silence).collect()
    }
}

impl AlertChange {
    /// The alert it changes.
    fn alert_id(&self) -> i64 {
        match self {
            AlertChange::Repeated { id, .. }
            | AlertChange::Resolved { id, .. }
            | AlertChange::Flapping { id, .. }
            | AlertChange::ResolveHeld { id, .. }
            | AlertChange::Unsilenced { id, .. } => *id,
        }
    }
}

/// One statement adding the alert counts of a run of [`IncidentChange::AlertsJoined`], given
/// as `(incident id, alerts joined, at_ms)`: `alert_count + CASE id WHEN .. THEN n .. END`,
/// each `updated_ms` set to its change's time.
fn alerts_joined(
    joined: &[(i64, i64, i64)],
    backend: crate::Backend,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let mut q = SqlBuilder::new("UPDATE incidents SET alert_count = alert_count + CASE id")
        .anonymous_on(backend);
    for (id, n, _) in joined {
        q.push(" WHEN ")
            .arg(Arg::Int(*id))
            .push(" THEN ")
            .arg(Arg::Int(*n));
    }
    q.push(" ELSE 0 END, updated_ms = CASE id");
    for (id, _, at_ms) in joined {
        q.push(" WHEN ")
            .arg(Arg::Int(*id))
            .push(" THEN ")
            .arg(Arg::Int(*at_ms));
    }
    q.push(" ELSE updated_ms END WHERE id IN (");
    for (i, (id, _, _)) in joined.iter().enumerate() {
        q.push(if i == 0 { "" } else { ", " }).arg(Arg::Int(*id));
    }
    q.push(")");
    q.build()
}

/// The statement of one alert change.
fn alert_change(
    c: &AlertChange,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    match c {
        AlertChange::Repeated {
            id,
            severity,
            summary,
            at_ms,
        } => sqlx::query(
            "UPDATE alerts SET repeats = repeats + 1, severity = $2, summary = $3, \
             resolved_ms = NULL, updated_ms = $4 WHERE id = $1",
        )
        .bind(*id)
        .bind(severity.clone())
        .bind(summary.clone())
        .bind(*at_ms),
        AlertChange::Resolved { id, at_ms } => sqlx::query(
            "UPDATE alerts SET status = 'resolved', resolved_ms = $2, updated_ms = $2 \
             WHERE id = $1",
        )
        .bind(*id)
        .bind(*at_ms),
        AlertChange::Flapping {
            id,
            flapping,
            at_ms,
        } => sqlx::query("UPDATE alerts SET flapping = $2, updated_ms = $3 WHERE id = $1")
            .bind(*id)
            .bind(if *flapping { FLAP_NOW } else { FLAP_BEFORE })
            .bind(*at_ms),
        AlertChange::ResolveHeld { id, at_ms } => {
            sqlx::query("UPDATE alerts SET resolved_ms = $2, updated_ms = $2 WHERE id = $1")
                .bind(*id)
                .bind(*at_ms)
        }
        AlertChange::Unsilenced {
            id,
            incident_id,
            at_ms,
        } => sqlx::query(
            "UPDATE alerts SET silenced = 0, incident_id = $2, updated_ms = $3 WHERE id = $1",
        )
        .bind(*id)
        .bind(*incident_id)
        .bind(*at_ms),
    }
}
