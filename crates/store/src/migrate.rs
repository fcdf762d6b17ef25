//! Schema migrations, embedded in the binary.
//!
//! Each migration has a version, a name and one SQL script per backend; the DDL differs only
//! where it must (identity columns, integer widths). Applied migrations are recorded in
//! `schema_migrations`; opening a store applies the missing ones in order, each in its own
//! transaction, and refuses a database whose schema is newer than this binary knows.

use sqlx::{AnyPool, AssertSqlSafe};

use crate::{Backend, Result, StoreError, now_ms};

/// One schema change.
pub(crate) struct Migration {
    /// Increasing from 1, never reused.
    pub version: i64,
    /// A short name, recorded alongside the version.
    pub name: &'static str,
    /// The script for SQLite.
    pub sqlite: &'static str,
    /// The script for PostgreSQL.
    pub postgres: &'static str,
}

/// Every migration this binary knows, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "deploys",
        sqlite: include_str!("../migrations/sqlite/0002_deploys.sql"),
        postgres: include_str!("../migrations/postgres/0002_deploys.sql"),
    },
    Migration {
        version: 3,
        name: "security",
        sqlite: include_str!("../migrations/sqlite/0003_security.sql"),
        postgres: include_str!("../migrations/postgres/0003_security.sql"),
    },
    Migration {
        version: 4,
        name: "setup_user",
        sqlite: include_str!("../migrations/sqlite/0004_setup_user.sql"),
        postgres: include_str!("../migrations/postgres/0004_setup_user.sql"),
    },
    Migration {
        version: 5,
        name: "incidents",
        sqlite: include_str!("../migrations/sqlite/0005_incidents.sql"),
        postgres: include_str!("../migrations/postgres/0005_incidents.sql"),
    },
    Migration {
        version: 6,
        name: "journal_file",
        sqlite: include_str!("../migrations/sqlite/0006_journal_file.sql"),
        postgres: include_str!("../migrations/postgres/0006_journal_file.sql"),
    },
    Migration {
        version: 7,
        name: "oncall_overrides",
        sqlite: include_str!("../migrations/sqlite/0007_oncall_overrides.sql"),
        postgres: include_str!("../migrations/postgres/0007_oncall_overrides.sql"),
    },
    Migration {
        version: 8,
        name: "images",
        sqlite: include_str!("../migrations/sqlite/0008_images.sql"),
        postgres: include_str!("../migrations/postgres/0008_images.sql"),
    },
];

/// The newest schema version this binary knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_ms BIGINT NOT NULL
)";

const CURRENT_VERSION: &str =
    "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations";

/// Applies the missing migrations; a no-op when the schema is up to date.
pub(crate) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    sqlx::query(CREATE_TABLE).execute(pool).await?;
    check_not_newer(sqlx::query_scalar(CURRENT_VERSION).fetch_one(pool).await?)?;

    for m in MIGRATIONS {
        // Re-check under a write lock, so two processes opening the same database at once
        // cannot both apply a migration.
        let mut tx = match backend {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = pool.begin().await?;
                sqlx::query("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let current: i64 = sqlx::query_scalar(CURRENT_VERSION)
            .fetch_one(&mut *tx)
            .await?;
        check_not_newer(current)?;
        if current >= m.version {
            continue;
        }
        let script = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

fn check_not_newer(current: i64) -> Result<()> {
    let known = latest_version();
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this sluice build knows \
             ({known}): run a newer sluice against this database"
        )));
    }
    Ok(())
}
