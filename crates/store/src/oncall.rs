//! On-call overrides added through the API: "alice covers bob's shift tonight" without a
//! commit. Schedules themselves live in `sluice.yml`; the server merges these rows into the
//! schedule they name whenever it resolves who is on call (the on-call API and page, and
//! escalation). Each change writes its `oncall.override_added` / `oncall.override_removed`
//! event in the same transaction.
//!
//! Architecture invariant: the store only keeps overrides; whether the schedule exists and
//! who wins where overrides overlap (the later one, by id) is decided by the server and
//! `sluice-oncall`.

use serde::{Deserialize, Serialize};
use sluice_core::NewEvent;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::rows::{Arg, SqlBuilder};
use crate::{Result, Store, StoreError, insert_events, limit_or};

const OVERRIDE_COLS: &str =
    "id, project, schedule, user_name, starts_ms, ends_ms, created_by, created_ms";

/// A stored on-call override: `user` is on call in `schedule` during `[starts_ms, ends_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideRow {
    /// Id; a later override (higher id) wins where two overlap.
    pub id: i64,
    /// The project whose `sluice.yml` defines the schedule.
    pub project: String,
    /// The schedule's name in `oncall.schedules`.
    pub schedule: String,
    /// Who is on call during the override.
    pub user: String,
    /// Start, Unix ms (inclusive).
    pub starts_ms: i64,
    /// End, Unix ms (exclusive).
    pub ends_ms: i64,
    /// Who added it (an actor, e.g. `user:alice`).
    pub created_by: String,
    /// When it was added.
    pub created_ms: i64,
}

/// An override to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOverride {
    /// The project.
    pub project: String,
    /// The schedule's name.
    pub schedule: String,
    /// Who is on call during the override.
    pub user: String,
    /// Start, Unix ms (inclusive).
    pub starts_ms: i64,
    /// End, Unix ms (exclusive); must be after `starts_ms`.
    pub ends_ms: i64,
    /// Who adds it.
    pub created_by: String,
}

/// Which overrides to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverrideFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this schedule.
    pub schedule: Option<String>,
    /// Only overrides ending after this instant (Unix ms); `None`: ended ones too.
    pub ends_after_ms: Option<i64>,
    /// At most this many (0 means 500).
    pub limit: i64,
}

fn override_row(row: &AnyRow) -> Result<OverrideRow> {
    Ok(OverrideRow {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        schedule: row.try_get("schedule")?,
        user: row.try_get("user_name")?,
        starts_ms: row.try_get("starts_ms")?,
        ends_ms: row.try_get("ends_ms")?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// The event of a change to `o`: the override's id goes into the payload (`override`) and
/// replaces `{id}` in the subject, since the caller does not know it before the insert.
fn with_override(mut event: NewEvent, o: &OverrideRow) -> NewEvent {
    event.subject = event.subject.replace("{id}", &o.id.to_string());
    if !event.payload.is_object() {
        event.payload = serde_json::Value::Object(Default::default());
    }
    event.payload["override"] = o.id.into();
    event.payload["schedule"] = o.schedule.clone().into();
    event.payload["user"] = o.user.clone().into();
    event.payload["starts_ms"] = o.starts_ms.into();
    event.payload["ends_ms"] = o.ends_ms.into();
    if event.project.is_none() {
        event.project = Some(o.project.clone());
    }
    event
}

impl Store {
    /// Adds an override with its event, into which the store fills the override's id (in
    /// `override` and for `{id}` in the subject), schedule, user, start and end.
    /// `Invalid` when the end is not after the start or the user or schedule is empty.
    pub async fn add_override(&self, o: NewOverride, event: NewEvent) -> Result<OverrideRow> {
        if o.ends_ms <= o.starts_ms {
            return Err(StoreError::Invalid(format!(
                "override of schedule `{}`: its end must be after its start",
                o.schedule
            )));
        }
        if o.user.trim().is_empty() || o.schedule.trim().is_empty() {
            return Err(StoreError::Invalid(
                "an override needs a user and a schedule".into(),
            ));
        }
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO oncall_overrides (project, schedule, user_name, starts_ms, ends_ms, \
             created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING {OVERRIDE_COLS}"
        )))
        .bind(o.project.as_str())
        .bind(o.schedule.as_str())
        .bind(o.user.as_str())
        .bind(o.starts_ms)
        .bind(o.ends_ms)
        .bind(o.created_by.as_str())
        .bind(crate::now_ms())
        .fetch_one(w.conn())
        .await?;
        let out = override_row(&row)?;
        insert_events(w.conn(), vec![with_override(event, &out)]).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Removes override `id` of `project` with its event; `NotFound` when the project has
    /// no override with that id.
    pub async fn remove_override(
        &self,
        project: &str,
        id: i64,
        event: NewEvent,
    ) -> Result<OverrideRow> {
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM oncall_overrides WHERE id = $1 AND project = $2 \
             RETURNING {OVERRIDE_COLS}"
        )))
        .bind(id)
        .bind(project)
        .fetch_optional(w.conn())
        .await?;
        let Some(row) = row else {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "on-call override {id} of project `{project}`"
            )));
        };
        let out = override_row(&row)?;
        insert_events(w.conn(), vec![with_override(event, &out)]).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Overrides matching `filter`, oldest first (by id, the order in which they win).
    pub async fn overrides(&self, filter: &OverrideFilter) -> Result<Vec<OverrideRow>> {
        let mut q = SqlBuilder::new(&format!(
            "SELECT {OVERRIDE_COLS} FROM oncall_overrides WHERE 1 = 1"
        ));
        if let Some(p) = &filter.project {
            q.push(" AND project = ").arg(Arg::Text(p.clone()));
        }
        if let Some(s) = &filter.schedule {
            q.push(" AND schedule = ").arg(Arg::Text(s.clone()));
        }
        if let Some(t) = filter.ends_after_ms {
            q.push(" AND ends_ms > ").arg(Arg::Int(t));
        }
        q.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(limit_or(filter.limit, 500)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(override_row).collect()
    }
}
