//! Who may do what, persisted: users, role grants, API tokens, browser sessions, one-time
//! setup tokens and deployment approvals.
//!
//! Same rules as the rest of the store: every change commits with its events under the
//! writer lock. Credentials are stored only as hashes, and the store refuses anything else:
//! token, session and setup-token hashes must be 64 lowercase hex digits (the output of
//! `sluice_auth::token::hash_token`), password hashes PHC strings. "All projects" and "all
//! environments" of a grant are stored as `*` so that uniqueness is portable.

use std::str::FromStr;

use sluice_auth::{Grant, Role, Scope};
use sluice_core::NewEvent;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::rows::to_json;
use crate::{
    ApprovalRow, Result, SessionRow, Store, StoreError, TokenRow, UserRow, conflict_on_unique,
    insert_events, now_ms,
};

/// Columns read by [`user`].
const USER_COLS: &str = "name, password_hash, admin, disabled, email, created_ms, updated_ms";
/// Columns read by [`token`].
const TOKEN_COLS: &str = "id, user_name, name, hash, scopes, created_ms, expires_ms, revoked_ms, \
     last_used_ms";
/// Columns read by [`session`].
const SESSION_COLS: &str = "id_hash, user_name, created_ms, expires_ms, last_seen_ms";
/// Columns read by [`approval`].
const APPROVAL_COLS: &str = "deployment_id, user_name, at_ms, comment";

/// "Everything" in a grant's project or environment column.
pub(crate) const ALL: &str = "*";

/// Last-used times of tokens and sessions are recorded at most this often, so using a
/// credential does not take the writer lock on every request.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Refuses anything but a 64-digit lowercase hex hash where a credential's hash belongs, so
/// a plaintext token can never be stored by mistake.
fn check_hash(what: &str, hash: &str) -> Result<()> {
    let ok = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} must be stored as its hash (64 lowercase hex digits, see \
             sluice_auth::token::hash_token), not as given"
        )))
    }
}

/// Refuses anything but a PHC string (`$argon2id$...`) or empty (no password).
fn check_password_hash(hash: &str) -> Result<()> {
    if hash.is_empty() || (hash.starts_with('$') && hash.len() >= 20) {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "a password must be stored as its PHC hash string ($argon2id$...), not as given".into(),
        ))
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name == ALL {
        return Err(StoreError::Invalid(format!(
            "{what} name `{name}` is not allowed"
        )));
    }
    Ok(())
}

fn user(row: &AnyRow) -> Result<UserRow> {
    let admin: i64 = row.try_get("admin")?;
    let disabled: i64 = row.try_get("disabled")?;
    Ok(UserRow {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        admin: admin != 0,
        disabled: disabled != 0,
        email: row.try_get("email")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn token(row: &AnyRow) -> Result<TokenRow> {
    let id: String = row.try_get("id")?;
    let scopes: String = row.try_get("scopes")?;
    let scopes: Vec<Scope> = serde_json::from_str(&scopes)
        .map_err(|e| StoreError::Corrupt(format!("scopes of token {id}: {e}")))?;
    Ok(TokenRow {
        user: row.try_get("user_name")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        scopes,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
        id,
    })
}

fn session(row: &AnyRow) -> Result<SessionRow> {
    Ok(SessionRow {
        id_hash: row.try_get("id_hash")?,
        user: row.try_get("user_name")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

fn approval(row: &AnyRow) -> Result<ApprovalRow> {
    Ok(ApprovalRow {
        deployment_id: row.try_get("deployment_id")?,
        user: row.try_get("user_name")?,
        at_ms: row.try_get("at_ms")?,
        comment: row.try_get("comment")?,
    })
}

/// A grant's (or secret's) project or environment as stored: `None` (all) is [`ALL`].
pub(crate) fn scope_column(v: Option<&str>) -> &str {
    v.unwrap_or(ALL)
}

/// The reverse of [`scope_column`].
pub(crate) fn from_scope_column(v: String) -> Option<String> {
    (v != ALL).then_some(v)
}

/// Checks a grant's project and environment can be stored.
fn check_grant(g: &Grant) -> Result<()> {
    if let Some(p) = &g.project {
        check_name("project", p)?;
    }
    if let Some(e) = &g.environment {
        check_name("environment", e)?;
    }
    Ok(())
}

fn grant_text(g: &Grant) -> String {
    format!(
        "grant of {} on project {} environment {}",
        g.role,
        scope_column(g.project.as_deref()),
        scope_column(g.environment.as_deref())
    )
}

async fn user_exists(conn: &mut AnyConnection, name: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

impl Store {
    // ---- users ----

    /// Creates a user (with no grants) and its event; `Conflict` if the name is taken.
    /// `password_hash` is a PHC string (see `sluice_auth::password::hash_password`) or empty
    /// for an account without a password; anything else is refused as `Invalid`.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        admin: bool,
        event: NewEvent,
    ) -> Result<UserRow> {
        check_name("user", name)?;
        check_password_hash(password_hash)?;
        let now = now_ms();
        let row = UserRow {
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            admin,
            disabled: false,
            email: None,
            created_ms: now,
            updated_ms: now,
        };
        let mut w = self.write(true).await?;
        let inserted = sqlx::query(
            "INSERT INTO users (name, password_hash, admin, disabled, created_ms, updated_ms) \
             VALUES ($1, $2, $3, 0, $4, $4)",
        )
        .bind(name)
        .bind(password_hash)
        .bind(i64::from(admin))
        .bind(now)
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || format!("user `{name}`"))?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(row)
    }

    /// One user, if it exists.
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(user).transpose()
    }

    /// All users, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLS} FROM users ORDER BY name"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(user).collect()
    }

    /// How many users exist (0 before first-time setup).
    pub async fn user_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM users")
                .fetch_one(&self.inner.pool)
                .await?,
        )
    }

    /// Updates one column of a user with its event; `NotFound` if there is no such user.
    async fn update_user(
        &self,
        name: &str,
        sql: &'static str,
        value: UserValue<'_>,
        end_sessions: bool,
        event: NewEvent,
    ) -> Result<()> {
        let mut w = self.write(true).await?;
        let q = sqlx::query(sql).bind(name).bind(now_ms());
        let q = match value {
            UserValue::Text(t) => q.bind(t),
            UserValue::Flag(f) => q.bind(i64::from(f)),
        };
        let updated = q.execute(w.conn()).await?;
        if updated.rows_affected() == 0 {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("user `{name}`")));
        }
        if end_sessions {
            sqlx::query("DELETE FROM sessions WHERE user_name = $1")
                .bind(name)
                .execute(w.conn())
                .await?;
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await
    }

    /// Replaces a user's password hash (a PHC string, or empty for none) with its event.
    /// Sessions are left alone: end them with [`Store::delete_sessions_of`] if wanted.
    /// `NotFound` if there is no such user.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        event: NewEvent,
    ) -> Result<()> {
        check_password_hash(password_hash)?;
        self.update_user(
            name,
            "UPDATE users SET password_hash = $3, updated_ms = $2 WHERE name = $1",
            UserValue::Text(password_hash),
            false,
            event,
        )
        .await
    }

    /// Disables or re-enables a user, with its event. Disabling also deletes the user's
    /// sessions in the same transaction; their API tokens stay but must not be accepted
    /// while [`UserRow::disabled`] is set. `NotFound` if there is no such user.
    pub async fn set_user_disabled(
        &self,
        name: &str,
        disabled: bool,
        event: NewEvent,
    ) -> Result<()> {
        self.update_user(
            name,
            "UPDATE users SET disabled = $3, updated_ms = $2 WHERE name = $1",
            UserValue::Flag(disabled),
            disabled,
            event,
        )
        .await
    }

    /// Sets or clears a user's instance-administrator flag, with its event.
    /// `NotFound` if there is no such user.
    pub async fn set_user_admin(&self, name: &str, admin: bool, event: NewEvent) -> Result<()> {
        self.update_user(
            name,
            "UPDATE users SET admin = $3, updated_ms = $2 WHERE name = $1",
            UserValue::Flag(admin),
            false,
            event,
        )
        .await
    }

    /// Sets the address a user's pages are emailed to (empty removes it), with its event.
    pub async fn set_user_email(&self, name: &str, email: &str, event: NewEvent) -> Result<()> {
        self.update_user(
            name,
            "UPDATE users SET email = NULLIF($3, ''), updated_ms = $2 WHERE name = $1",
            UserValue::Text(email),
            false,
            event,
        )
        .await
    }

    /// The address a user's pages are emailed to, if set.
    pub async fn user_email(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>("SELECT email FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.inner.pool)
                .await?
                .flatten(),
        )
    }

    /// Deletes a user with their grants, API tokens and sessions, and its event, in one
    /// transaction (approvals they gave stay: they are history). `NotFound` if there is
    /// no such user.
    pub async fn delete_user(&self, name: &str, event: NewEvent) -> Result<()> {
        let mut w = self.write(true).await?;
        let deleted = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(w.conn())
            .await?;
        if deleted.rows_affected() == 0 {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("user `{name}`")));
        }
        for sql in [
            "DELETE FROM grants WHERE user_name = $1",
            "DELETE FROM api_tokens WHERE user_name = $1",
            "DELETE FROM sessions WHERE user_name = $1",
        ] {
            sqlx::query(sql).bind(name).execute(w.conn()).await?;
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await
    }

    // ---- grants ----

    /// Grants a role to a user on a project and environment (`None` = all), with its event.
    /// `NotFound` if there is no such user, `Conflict` if the same grant exists, `Invalid`
    /// for an empty or `*` project or environment name.
    pub async fn grant(&self, user: &str, g: &Grant, event: NewEvent) -> Result<()> {
        check_grant(g)?;
        let mut w = self.write(true).await?;
        if !user_exists(w.conn(), user).await? {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("user `{user}`")));
        }
        let inserted = sqlx::query(
            "INSERT INTO grants (user_name, role, project, environment) VALUES ($1, $2, $3, $4)",
        )
        .bind(user)
        .bind(g.role.as_str())
        .bind(scope_column(g.project.as_deref()))
        .bind(scope_column(g.environment.as_deref()))
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || format!("{} for `{user}`", grant_text(g)))?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await
    }

    /// Removes exactly this grant, with its event; `NotFound` if the user does not have it.
    pub async fn revoke_grant(&self, user: &str, g: &Grant, event: NewEvent) -> Result<()> {
        let mut w = self.write(true).await?;
        let deleted = sqlx::query(
            "DELETE FROM grants \
             WHERE user_name = $1 AND role = $2 AND project = $3 AND environment = $4",
        )
        .bind(user)
        .bind(g.role.as_str())
        .bind(scope_column(g.project.as_deref()))
        .bind(scope_column(g.environment.as_deref()))
        .execute(w.conn())
        .await?;
        if deleted.rows_affected() == 0 {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "{} for `{user}`",
                grant_text(g)
            )));
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await
    }

    /// A user's grants, by project, environment and role (all-project and all-environment
    /// grants, stored as `*`, first); empty for an unknown user.
    pub async fn grants(&self, user: &str) -> Result<Vec<Grant>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT role, project, environment FROM grants WHERE user_name = $1 \
             ORDER BY project, environment, role",
        )
        .bind(user)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.into_iter()
            .map(|(role, project, environment)| {
                Ok(Grant {
                    role: Role::from_str(&role)
                        .map_err(|e| StoreError::Corrupt(format!("grant of user `{user}`: {e}")))?,
                    project: from_scope_column(project),
                    environment: from_scope_column(environment),
                })
            })
            .collect()
    }

    // ---- API tokens ----

    /// Stores a new API token (its hash only) with its event. `NotFound` if the owner does
    /// not exist, `Conflict` if the id or the hash is taken, `Invalid` if `hash` is not a
    /// token hash.
    pub async fn create_token(&self, t: &TokenRow, event: NewEvent) -> Result<TokenRow> {
        check_hash("an API token", &t.hash)?;
        if t.id.is_empty() {
            return Err(StoreError::Invalid("an API token needs an id".into()));
        }
        let scopes = to_json(&t.scopes, "token scopes")?;
        let mut w = self.write(true).await?;
        if !user_exists(w.conn(), &t.user).await? {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("user `{}`", t.user)));
        }
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, user_name, name, hash, scopes, created_ms, expires_ms, \
             revoked_ms, last_used_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.id.as_str())
        .bind(t.user.as_str())
        .bind(t.name.as_str())
        .bind(t.hash.as_str())
        .bind(scopes)
        .bind(t.created_ms)
        .bind(t.expires_ms)
        .bind(t.revoked_ms)
        .bind(t.last_used_ms)
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || format!("API token `{}`", t.id))?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(t.clone())
    }

    /// The token with this hash (revoked and expired ones too: check them with
    /// [`TokenRow::record`]), if any.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(token).transpose()
    }

    /// The token with this id, if any.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(token).transpose()
    }

    /// A user's tokens (revoked ones too), oldest first.
    pub async fn tokens(&self, user: &str) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE user_name = $1 ORDER BY created_ms, id"
        )))
        .bind(user)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(token).collect()
    }

    /// Revokes a token at `now_ms`, with its event. Returns false, writing nothing, if it was
    /// already revoked; `NotFound` if there is no such token.
    pub async fn revoke_token(&self, id: &str, now_ms: i64, event: NewEvent) -> Result<bool> {
        let mut w = self.write(true).await?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .execute(w.conn())
        .await?
        .rows_affected();
        if revoked == 0 {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM api_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(w.conn())
                .await?;
            w.rollback().await?;
            return match exists {
                Some(_) => Ok(false),
                None => Err(StoreError::NotFound(format!("API token `{id}`"))),
            };
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(true)
    }

    /// Records that a token was used at `now_ms` (no event). Throttled: the stored time
    /// moves only when it is [`TOUCH_INTERVAL_MS`] old, so most calls are one read.
    pub async fn touch_token(&self, id: &str, now_ms: i64) -> Result<()> {
        let last: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_used_ms FROM api_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await?;
        if !matches!(last, Some(l) if l.is_none_or(|l| now_ms - l >= TOUCH_INTERVAL_MS)) {
            return Ok(());
        }
        let mut w = self.write(false).await?;
        sqlx::query(
            "UPDATE api_tokens SET last_used_ms = $2 \
             WHERE id = $1 AND (last_used_ms IS NULL OR last_used_ms <= $3)",
        )
        .bind(id)
        .bind(now_ms)
        .bind(now_ms - TOUCH_INTERVAL_MS)
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    // ---- sessions ----

    /// Stores a new session (its id's hash only) with its events (e.g. `auth.login`).
    /// `NotFound` if the user does not exist, `Conflict` if the hash is taken, `Invalid` if
    /// `id_hash` is not a token hash.
    pub async fn create_session(&self, s: &SessionRow, events: Vec<NewEvent>) -> Result<()> {
        check_hash("a session id", &s.id_hash)?;
        let mut w = self.write(true).await?;
        if !user_exists(w.conn(), &s.user).await? {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("user `{}`", s.user)));
        }
        let inserted = sqlx::query(
            "INSERT INTO sessions (id_hash, user_name, created_ms, expires_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(s.id_hash.as_str())
        .bind(s.user.as_str())
        .bind(s.created_ms)
        .bind(s.expires_ms)
        .bind(s.last_seen_ms)
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || "session".to_owned())?;
        insert_events(w.conn(), events).await?;
        w.commit().await
    }

    /// The session with this id hash (expired ones too: compare `expires_ms`), if any.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id_hash = $1"
        )))
        .bind(id_hash)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(session).transpose()
    }

    /// Records that a session was used at `now_ms` and moves its expiry to `expires_ms`
    /// (sliding expiry; no event). Throttled like [`Store::touch_token`]; a missing session
    /// is not an error.
    pub async fn touch_session(&self, id_hash: &str, now_ms: i64, expires_ms: i64) -> Result<()> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_seen_ms FROM sessions WHERE id_hash = $1")
                .bind(id_hash)
                .fetch_optional(&self.inner.pool)
                .await?;
        if !matches!(last, Some(l) if now_ms - l >= TOUCH_INTERVAL_MS) {
            return Ok(());
        }
        let mut w = self.write(false).await?;
        sqlx::query(
            "UPDATE sessions SET last_seen_ms = $2, expires_ms = $3 \
             WHERE id_hash = $1 AND last_seen_ms <= $4",
        )
        .bind(id_hash)
        .bind(now_ms)
        .bind(expires_ms)
        .bind(now_ms - TOUCH_INTERVAL_MS)
        .execute(w.conn())
        .await?;
        w.commit().await
    }

    /// Ends a session with its events (e.g. `auth.logout`). Returns false, writing nothing,
    /// if there was no such session.
    pub async fn delete_session(&self, id_hash: &str, events: Vec<NewEvent>) -> Result<bool> {
        let mut w = self.write(true).await?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(w.conn())
            .await?;
        if deleted.rows_affected() == 0 {
            w.rollback().await?;
            return Ok(false);
        }
        insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(true)
    }

    /// Ends every session of a user (e.g. after a password change); the events are written
    /// only if there was at least one. Returns how many were ended.
    pub async fn delete_sessions_of(&self, user: &str, events: Vec<NewEvent>) -> Result<u64> {
        let mut w = self.write(true).await?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(user)
            .execute(w.conn())
            .await?
            .rows_affected();
        if deleted == 0 {
            w.rollback().await?;
            return Ok(0);
        }
        insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(deleted)
    }

    /// Deletes sessions that expired at or before `now_ms` (housekeeping, no event).
    /// Returns how many.
    pub async fn prune_sessions(&self, now_ms: i64) -> Result<u64> {
        let mut w = self.write(false).await?;
        let deleted = sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(w.conn())
            .await?
            .rows_affected();
        w.commit().await?;
        Ok(deleted)
    }

    // ---- setup tokens ----

    /// Stores a one-time setup token (its hash only) for `user`, valid until `expires_ms`
    /// (no event: using it is what matters). `Conflict` if the hash exists, `Invalid` if it
    /// is not a token hash.
    pub async fn create_setup_token(&self, hash: &str, user: &str, expires_ms: i64) -> Result<()> {
        check_hash("a setup token", hash)?;
        check_name("user", user)?;
        let mut w = self.write(false).await?;
        let inserted = sqlx::query(
            "INSERT INTO setup_tokens (hash, created_ms, expires_ms, used_ms, user_name) \
             VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(hash)
        .bind(now_ms())
        .bind(expires_ms)
        .bind(user)
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || "setup token".to_owned())?;
        w.commit().await
    }

    /// Uses a setup token: the user it belongs to, exactly once, for the first caller at a
    /// time before its expiry; `None` for an unknown, used or expired token. Atomic (one
    /// conditional update).
    pub async fn use_setup_token(&self, hash: &str, now_ms: i64) -> Result<Option<String>> {
        let mut w = self.write(false).await?;
        let user: Option<String> = sqlx::query_scalar(
            "UPDATE setup_tokens SET used_ms = $2 \
             WHERE hash = $1 AND used_ms IS NULL AND expires_ms > $2 RETURNING user_name",
        )
        .bind(hash)
        .bind(now_ms)
        .fetch_optional(w.conn())
        .await?;
        w.commit().await?;
        Ok(user)
    }

    // ---- approvals ----

    /// Records a user's approval of a deployment with its event. `NotFound` if there is no
    /// such deployment, `Conflict` if the user approved it already.
    pub async fn approve(
        &self,
        deployment_id: i64,
        user: &str,
        at_ms: i64,
        comment: &str,
        event: NewEvent,
    ) -> Result<ApprovalRow> {
        let mut w = self.write(true).await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM deployments WHERE id = $1")
            .bind(deployment_id)
            .fetch_optional(w.conn())
            .await?;
        if found.is_none() {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("deployment {deployment_id}")));
        }
        let inserted = sqlx::query(
            "INSERT INTO approvals (deployment_id, user_name, at_ms, comment) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(deployment_id)
        .bind(user)
        .bind(at_ms)
        .bind(comment)
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || {
            format!("approval of deployment {deployment_id} by `{user}`")
        })?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(ApprovalRow {
            deployment_id,
            user: user.to_owned(),
            at_ms,
            comment: comment.to_owned(),
        })
    }

    /// A deployment's approvals, oldest first.
    pub async fn approvals(&self, deployment_id: i64) -> Result<Vec<ApprovalRow>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLS} FROM approvals WHERE deployment_id = $1 \
             ORDER BY at_ms, user_name"
        )))
        .bind(deployment_id)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(approval).collect()
    }
}

/// The new value of a user column.
enum UserValue<'a> {
    Text(&'a str),
    Flag(bool),
}
