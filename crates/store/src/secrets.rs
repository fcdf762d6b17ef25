//! Secrets, persisted sealed: one row per version, the value encrypted under a data key that
//! is wrapped by the key-encryption key (see `sluice-secrets`); the store never sees a value.
//! Plus the small `settings` table (e.g. [`crate::SETTING_KEK_ID`]).
//!
//! A write takes the next version of its (project, environment, name) under the writer lock
//! and seals the value for exactly that version inside the transaction, so versions are
//! gap-free and every ciphertext is bound to the row that holds it. Deleting leaves
//! tombstones (`deleted_ms`); a later write continues the version count. Rotating the key
//! re-wraps every row, deleted ones too, in one transaction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sluice_core::NewEvent;
use sluice_secrets::{Sealed, SecretRef, SecretsError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::access::{ALL, from_scope_column, scope_column};
use crate::{
    NewSecret, Result, SETTING_KEK_ID, SecretMeta, SecretRow, Store, StoreError,
    conflict_on_unique, insert_events, now_ms,
};

/// Columns read by [`secret_row`].
const SECRET_COLS: &str = "id, project, environment, name, version, kek_id, wrapped_dek, \
     ciphertext, created_ms, created_by, deleted_ms";
/// Columns read by [`secret_meta`].
const META_COLS: &str = "id, project, environment, name, version, kek_id, created_ms, created_by";

fn bytes(text: &str, what: &str, id: &str) -> Result<Vec<u8>> {
    B64.decode(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} of secret {id}: {e}")))
}

fn secret_row(row: &AnyRow) -> Result<SecretRow> {
    let id: String = row.try_get("id")?;
    let wrapped: String = row.try_get("wrapped_dek")?;
    let ciphertext: String = row.try_get("ciphertext")?;
    Ok(SecretRow {
        sealed: Sealed {
            kek_id: row.try_get("kek_id")?,
            wrapped_dek: bytes(&wrapped, "wrapped key", &id)?,
            ciphertext: bytes(&ciphertext, "ciphertext", &id)?,
        },
        secret: SecretRef {
            project: row.try_get("project")?,
            environment: from_scope_column(row.try_get("environment")?),
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            id,
        },
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
        deleted_ms: row.try_get("deleted_ms")?,
    })
}

fn secret_meta(row: &AnyRow) -> Result<SecretMeta> {
    Ok(SecretMeta {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        environment: from_scope_column(row.try_get("environment")?),
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        kek_id: row.try_get("kek_id")?,
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
    })
}

fn describe(project: &str, env: Option<&str>, name: &str) -> String {
    format!(
        "secret `{name}` of project `{project}` environment `{}`",
        scope_column(env)
    )
}

async fn get_setting(conn: &mut AnyConnection, key: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

pub(crate) async fn put_setting(conn: &mut AnyConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = $2",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Writes the next version of a secret with its event. Under the writer lock the store
    /// picks the version (one more than the highest ever written for this project,
    /// environment and name, deleted ones included), calls `seal` with the new version's
    /// [`SecretRef`] (e.g. `|r| vault.seal(r, value)`), and stores the result. In the event,
    /// `{version}` in the subject is replaced and a JSON-object payload gets `version`.
    ///
    /// Refused: an invalid name ([`StoreError::Secrets`]), an empty id or project, an
    /// environment named `*` or empty, and a value sealed under another key than the
    /// [`crate::SETTING_KEK_ID`] setting names (`Invalid`). `Conflict` if the id is taken.
    /// A failing `seal` writes nothing and its error is returned as [`StoreError::Secrets`].
    pub async fn put_secret<F>(
        &self,
        new: NewSecret,
        seal: F,
        mut event: NewEvent,
    ) -> Result<SecretRow>
    where
        F: FnOnce(&SecretRef) -> std::result::Result<Sealed, SecretsError> + Send,
    {
        sluice_secrets::validate_name(&new.name)?;
        if new.id.is_empty() || new.project.is_empty() {
            return Err(StoreError::Invalid(
                "a secret needs an id and a project".into(),
            ));
        }
        if matches!(new.environment.as_deref(), Some("" | ALL)) {
            return Err(StoreError::Invalid(format!(
                "environment `{}` is not allowed for a secret (use none for all)",
                scope_column(new.environment.as_deref())
            )));
        }
        let env = scope_column(new.environment.as_deref()).to_owned();
        let mut w = self.write(true).await?;
        let version: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) + 1 AS BIGINT) FROM secrets \
             WHERE project = $1 AND environment = $2 AND name = $3",
        )
        .bind(new.project.as_str())
        .bind(env.as_str())
        .bind(new.name.as_str())
        .fetch_one(w.conn())
        .await?;
        let secret = SecretRef {
            id: new.id,
            project: new.project,
            environment: new.environment,
            name: new.name,
            version,
        };
        let sealed = match seal(&secret) {
            Ok(s) => s,
            Err(e) => {
                w.rollback().await?;
                return Err(e.into());
            }
        };
        if let Some(expected) = get_setting(w.conn(), SETTING_KEK_ID).await?
            && expected != sealed.kek_id
        {
            w.rollback().await?;
            return Err(StoreError::Invalid(format!(
                "secret sealed under key {} but the secrets are kept under key {expected}",
                sealed.kek_id
            )));
        }
        let inserted = sqlx::query(
            "INSERT INTO secrets (id, project, environment, name, version, kek_id, wrapped_dek, \
             ciphertext, created_ms, created_by, deleted_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
        )
        .bind(secret.id.as_str())
        .bind(secret.project.as_str())
        .bind(env.as_str())
        .bind(secret.name.as_str())
        .bind(version)
        .bind(sealed.kek_id.as_str())
        .bind(B64.encode(&sealed.wrapped_dek))
        .bind(B64.encode(&sealed.ciphertext))
        .bind(new.created_ms)
        .bind(new.created_by.as_str())
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || format!("secret id `{}`", secret.id))?;
        event.subject = event.subject.replace("{version}", &version.to_string());
        if let Some(obj) = event.payload.as_object_mut() {
            obj.insert("version".to_owned(), version.into());
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(SecretRow {
            secret,
            sealed,
            created_ms: new.created_ms,
            created_by: new.created_by,
            deleted_ms: None,
        })
    }

    /// The current version of a secret (`environment` `None` = the project-wide one, not a
    /// fallback), or `None` if it was never written or is deleted.
    pub async fn secret(
        &self,
        project: &str,
        environment: Option<&str>,
        name: &str,
    ) -> Result<Option<SecretRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets \
             WHERE project = $1 AND environment = $2 AND name = $3 AND deleted_ms IS NULL \
             ORDER BY version DESC LIMIT 1"
        )))
        .bind(project)
        .bind(scope_column(environment))
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(secret_row).transpose()
    }

    /// The current version of every live secret of a project, without values: project-wide
    /// ones first, then by environment and name.
    pub async fn secrets(&self, project: &str) -> Result<Vec<SecretMeta>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {META_COLS} FROM secrets s \
             WHERE project = $1 AND deleted_ms IS NULL AND version = ( \
                 SELECT MAX(version) FROM secrets t WHERE t.project = s.project \
                 AND t.environment = s.environment AND t.name = s.name) \
             ORDER BY environment, name"
        )))
        .bind(project)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(secret_meta).collect()
    }

    /// Deletes a secret with its event: every live version becomes a tombstone (kept, still
    /// sealed, for history and key rotation). Returns how many versions were tombstoned;
    /// `NotFound` if there is no live version.
    pub async fn delete_secret(
        &self,
        project: &str,
        environment: Option<&str>,
        name: &str,
        event: NewEvent,
    ) -> Result<u64> {
        let mut w = self.write(true).await?;
        let deleted = sqlx::query(
            "UPDATE secrets SET deleted_ms = $4 \
             WHERE project = $1 AND environment = $2 AND name = $3 AND deleted_ms IS NULL",
        )
        .bind(project)
        .bind(scope_column(environment))
        .bind(name)
        .bind(now_ms())
        .execute(w.conn())
        .await?
        .rows_affected();
        if deleted == 0 {
            w.rollback().await?;
            return Err(StoreError::NotFound(describe(project, environment, name)));
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(deleted)
    }

    /// Every stored version of every secret, tombstones included (for key rotation), by
    /// project, environment, name and version.
    pub async fn all_secret_rows(&self) -> Result<Vec<SecretRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SECRET_COLS} FROM secrets ORDER BY project, environment, name, version"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(secret_row).collect()
    }

    /// Key rotation: stores the re-wrapped data keys `(row id, sealed)` of
    /// [`Store::all_secret_rows`] and sets [`crate::SETTING_KEK_ID`] to `new_kek_id`, with
    /// the event, in one transaction. Only `kek_id` and `wrapped_dek` change. All or
    /// nothing: refused (`Invalid`, nothing written) if an update is under another key,
    /// changes a ciphertext, or names a row that does not exist, or if any row would stay
    /// under another key (a secret written meanwhile: read the rows again and retry).
    /// Returns how many rows were re-wrapped.
    pub async fn rewrap_secrets(
        &self,
        new_kek_id: &str,
        updates: Vec<(String, Sealed)>,
        event: NewEvent,
    ) -> Result<usize> {
        if let Some((id, _)) = updates.iter().find(|(_, s)| s.kek_id != new_kek_id) {
            return Err(StoreError::Invalid(format!(
                "re-wrapped secret {id} is not under the new key {new_kek_id}"
            )));
        }
        let mut w = self.write(true).await?;
        for (id, sealed) in &updates {
            let updated = sqlx::query(
                "UPDATE secrets SET kek_id = $2, wrapped_dek = $3 \
                 WHERE id = $1 AND ciphertext = $4",
            )
            .bind(id.as_str())
            .bind(sealed.kek_id.as_str())
            .bind(B64.encode(&sealed.wrapped_dek))
            .bind(B64.encode(&sealed.ciphertext))
            .execute(w.conn())
            .await?;
            if updated.rows_affected() == 0 {
                w.rollback().await?;
                return Err(StoreError::Invalid(format!(
                    "secret {id} does not exist or its re-wrapped ciphertext differs"
                )));
            }
        }
        let left: i64 =
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM secrets WHERE kek_id <> $1")
                .bind(new_kek_id)
                .fetch_one(w.conn())
                .await?;
        if left > 0 {
            w.rollback().await?;
            return Err(StoreError::Invalid(format!(
                "{left} secret version(s) would stay under another key than {new_kek_id}: \
                 read the secrets again and retry"
            )));
        }
        put_setting(w.conn(), SETTING_KEK_ID, new_kek_id).await?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(updates.len())
    }

    /// A setting's value, if set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        get_setting(&mut *self.inner.pool.acquire().await?, key).await
    }

    /// Sets a setting (no event: settings are bookkeeping, e.g. the expected key id,
    /// recorded alongside the event of the change that needs them).
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut w = self.write(false).await?;
        put_setting(w.conn(), key, value).await?;
        w.commit().await
    }
}
