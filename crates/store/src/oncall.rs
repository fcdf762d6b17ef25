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

#[cfg(test)]
mod tests {
    //! Overrides on SQLite and on PostgreSQL (`SLUICE_TEST_POSTGRES_URL`, see
    //! `.ci/postgres.sh`; a fresh database per run, dropped afterwards). Without the variable
    //! the PostgreSQL half is skipped with a notice, except under `CI`, where it fails.

    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use sluice_core::{EventKind, NewEvent};
    use sqlx::{AssertSqlSafe, Connection};

    use super::*;
    use crate::EventFilter;

    const HOUR: i64 = 3_600_000;

    fn new(schedule: &str, user: &str, starts_ms: i64, ends_ms: i64) -> NewOverride {
        NewOverride {
            project: "shop".into(),
            schedule: schedule.into(),
            user: user.into(),
            starts_ms,
            ends_ms,
            created_by: "user:admin".into(),
        }
    }

    fn added() -> NewEvent {
        NewEvent::new(
            EventKind::OncallOverrideAdded,
            "user:admin",
            "oncall_override/{id}",
        )
    }

    async fn scenario(store: &Store) {
        let t0 = 1_767_225_600_000;
        let a = store
            .add_override(new("primary", "alice", t0, t0 + 8 * HOUR), added())
            .await
            .unwrap();
        let b = store
            .add_override(new("primary", "bob", t0 + 2 * HOUR, t0 + 4 * HOUR), added())
            .await
            .unwrap();
        let c = store
            .add_override(new("backup", "carol", t0, t0 + HOUR), added())
            .await
            .unwrap();
        assert!(a.id < b.id && b.id < c.id);
        assert_eq!(
            (b.user.as_str(), b.starts_ms, b.ends_ms),
            ("bob", t0 + 2 * HOUR, t0 + 4 * HOUR)
        );
        // Refused before anything is written: an empty interval, an empty user.
        for bad in [
            new("primary", "dan", t0, t0),
            new("primary", "dan", t0, t0 - 1),
            new("primary", " ", t0, t0 + 1),
        ] {
            assert!(matches!(
                store.add_override(bad, added()).await,
                Err(StoreError::Invalid(_))
            ));
        }

        // Filters: by schedule, by end, by project; oldest first.
        let all = |f: OverrideFilter| async move { store.overrides(&f).await.unwrap() };
        let ids = |v: Vec<OverrideRow>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(
            ids(all(OverrideFilter::default()).await),
            vec![a.id, b.id, c.id]
        );
        let primary = OverrideFilter {
            project: Some("shop".into()),
            schedule: Some("primary".into()),
            ..OverrideFilter::default()
        };
        assert_eq!(ids(all(primary.clone()).await), vec![a.id, b.id]);
        let later = OverrideFilter {
            ends_after_ms: Some(t0 + 4 * HOUR),
            ..OverrideFilter::default()
        };
        assert_eq!(ids(all(later).await), vec![a.id]);
        let other = OverrideFilter {
            project: Some("other".into()),
            ..OverrideFilter::default()
        };
        assert!(all(other).await.is_empty());

        // Removing: only within its project, once.
        let removed = NewEvent::new(
            EventKind::OncallOverrideRemoved,
            "user:admin",
            format!("oncall_override/{}", b.id),
        );
        assert!(matches!(
            store.remove_override("other", b.id, removed.clone()).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            store
                .remove_override("shop", b.id, removed.clone())
                .await
                .unwrap(),
            b
        );
        assert!(matches!(
            store.remove_override("shop", b.id, removed).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(ids(all(primary).await), vec![a.id]);

        // One event per change, with the id filled in; none for the refusals.
        let events = store
            .events(&EventFilter {
                kinds: vec![
                    EventKind::OncallOverrideAdded,
                    EventKind::OncallOverrideRemoved,
                ],
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let seen: Vec<(EventKind, String, serde_json::Value, Option<String>)> = events
            .into_iter()
            .map(|e| (e.kind, e.subject, e.payload["override"].clone(), e.project))
            .collect();
        let shop = Some("shop".to_owned());
        assert_eq!(
            seen,
            vec![
                (
                    EventKind::OncallOverrideAdded,
                    format!("oncall_override/{}", a.id),
                    a.id.into(),
                    shop.clone()
                ),
                (
                    EventKind::OncallOverrideAdded,
                    format!("oncall_override/{}", b.id),
                    b.id.into(),
                    shop.clone()
                ),
                (
                    EventKind::OncallOverrideAdded,
                    format!("oncall_override/{}", c.id),
                    c.id.into(),
                    shop.clone()
                ),
                (
                    EventKind::OncallOverrideRemoved,
                    format!("oncall_override/{}", b.id),
                    b.id.into(),
                    shop
                ),
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overrides_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        scenario(&store).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overrides_on_postgres() {
        let Ok(admin) = std::env::var("SLUICE_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "SLUICE_TEST_POSTGRES_URL is not set but CI is: run `eval \"$(.ci/postgres.sh)\"` first"
            );
            let _ = writeln!(
                std::io::stderr(),
                "notice: skipping overrides_on_postgres: set SLUICE_TEST_POSTGRES_URL (e.g. `eval \"$(.ci/postgres.sh)\"`)"
            );
            return;
        };
        let name = format!("sluice_oncall_{}_{}", std::process::id(), crate::now_ms());
        let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        // The admin URL with the database replaced.
        let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        let url = if query.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{query}")
        };
        let store = Store::open(&url).await.unwrap();
        scenario(&store).await;
        store.close().await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
}
