//! Persistence for sluice.
//!
//! One [`Store`] type over two backends, picked from the URL at start-up: SQLite in the data
//! directory by default (`sqlite:///path/sluice.db`), PostgreSQL when given a `postgres://`
//! URL. Every mutating method writes its state change and the matching events of the
//! append-only log in one transaction, so the log never misses a change and a crash never
//! leaves a change without its event. Writes are serialised through one writer lock, which
//! is what makes event sequence numbers gap-free and monotonic in commit order; each event
//! is also hashed into a chain with the one before it in the same transaction
//! (`chain.rs`), so edits, deletions and reorderings of the log are detectable.
//! Users, grants, API tokens, sessions, setup tokens and approvals live in `access.rs`
//! (credentials only as hashes), sealed secrets and settings in `secrets.rs`.
//! Architecture invariant: this crate knows SQL and the model types, nothing of HTTP, git or
//! processes. The same conformance suite (`tests/conformance.rs`) runs against both backends.

mod access;
mod alert_stats;
mod alerts;
mod chain;
mod deploys;
mod migrate;
mod model;
mod oncall;
pub mod origin;
mod rows;
mod secrets;

pub use access::TOUCH_INTERVAL_MS;
pub use alert_stats::{NoiseFilter, RuleNoise};
pub use alerts::*;
pub use model::*;
pub use oncall::{NewOverride, OverrideFilter, OverrideRow};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::{NewEvent, RunStatus, StepStatus};
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use chain::insert_events;
use rows::{
    Arg, BRANCH_HEAD_COLS, EVENT_COLS, LOG_COLS, PROJECT_COLS, RELEASE_COLS, RUN_COLS, STEP_COLS,
    SqlBuilder, to_json,
};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one sluice understands.
    #[error(
        "unsupported database url `{0}`: use a path, `sqlite://PATH` or `postgres://USER@HOST/DB`"
    )]
    BadUrl(String),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule would be broken (e.g. a project name already taken).
    #[error("{0} already exists")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored value could not be decoded (corruption or a newer schema).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// A value the store refuses to keep (e.g. a plaintext token where its hash belongs).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// Sealing a secret failed (e.g. the vault is sealed).
    #[error(transparent)]
    Secrets(#[from] sluice_secrets::SecretsError),
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique violation to `Conflict(what)`.
pub(crate) fn conflict_on_unique<T>(
    r: std::result::Result<T, sqlx::Error>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict(what()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The persistence handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// The single-writer lock: every mutating method holds it for its whole transaction, so
    /// event sequence numbers are assigned and committed in one order.
    writer: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// The default page sizes of the filtered reads (see `model.rs`).
const DEFAULT_EVENT_LIMIT: i64 = 1000;
const DEFAULT_RUN_LIMIT: i64 = 50;
const DEFAULT_LOG_LIMIT: i64 = 10_000;
const DEFAULT_RELEASE_LIMIT: i64 = 100;

/// Log lines per multi-row INSERT: 7 parameters each stays far below both backends' limits
/// (32766 for SQLite, 65535 for PostgreSQL).
const LOG_ROWS_PER_INSERT: usize = 500;

/// Milliseconds since the Unix epoch, by the wall clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn limit_or(limit: i64, default: i64) -> i64 {
    if limit <= 0 { default } else { limit }
}

/// Where a URL points.
#[derive(Debug, PartialEq, Eq)]
enum DbTarget {
    SqliteFile(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<DbTarget> {
    let bad = || StoreError::BadUrl(url.to_owned());
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DbTarget::Postgres(url.to_owned()));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if url.contains("://") {
        return Err(bad());
    } else {
        url
    };
    if path.is_empty() || path.ends_with('/') || path.contains('?') {
        return Err(bad());
    }
    Ok(DbTarget::SqliteFile(PathBuf::from(path)))
}

/// Bytes kept as they are in a `sqlite://` URL; everything else is percent-encoded so that
/// `?`, `#`, `%` and spaces in a path survive.
fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~')
}

/// Creates the file's directory and returns the `sqlite://` URL for the file, which is
/// created on first connect (`mode=rwc`).
async fn sqlite_url(url: &str, path: &Path) -> Result<String> {
    let config_err = |msg: String| StoreError::Db(sqlx::Error::Configuration(msg.into()));
    let file_name = path
        .file_name()
        .ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&parent).await.map_err(|e| {
        config_err(format!(
            "cannot create directory {}: {e}: check the path and its permissions",
            parent.display()
        ))
    })?;
    let parent = tokio::fs::canonicalize(&parent).await.map_err(|e| {
        config_err(format!(
            "cannot resolve directory {}: {e}: check the path",
            parent.display()
        ))
    })?;
    let full = parent.join(file_name);
    let full = full
        .to_str()
        .ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
    let mut out = String::from("sqlite://");
    for &b in full.as_bytes() {
        if is_url_safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str("?mode=rwc");
    Ok(out)
}

/// Replaces `{id}` and `{version}` in event subjects with values only the store knows.
fn fill_subjects(events: &mut [NewEvent], id: i64, version: Option<i64>) {
    for e in events {
        if e.subject.contains('{') {
            let mut s = e.subject.replace("{id}", &id.to_string());
            if let Some(v) = version {
                s = s.replace("{version}", &v.to_string());
            }
            e.subject = s;
        }
    }
}

/// A write in progress: the writer lock and the transaction it protects.
struct Write<'a> {
    _guard: MutexGuard<'a, ()>,
    tx: Transaction<'static, Any>,
}

impl Write<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url`, applies pending migrations and
    /// chains events written before the audit chain existed (once, in one transaction).
    /// `url` is a filesystem path or `sqlite://PATH` for SQLite, `postgres://...` for PostgreSQL.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, pool) = match parse_url(url)? {
            DbTarget::Postgres(pg) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&pg)
                    .await?;
                (Backend::Postgres, pool)
            }
            DbTarget::SqliteFile(path) => {
                let file_url = sqlite_url(url, &path).await?;
                let pool = AnyPoolOptions::new()
                    // WAL lets readers run beside the one writer; a few connections suffice.
                    .max_connections(4)
                    .min_connections(1)
                    // A local file connection cannot go stale; pinging it before every
                    // query would double the round trips to SQLite's worker thread.
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // busy_timeout first, so switching to WAL waits for other
                            // connections instead of failing.
                            sqlx::raw_sql(
                                "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                            )
                            .execute(&mut *conn)
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&file_url)
                    .await?;
                (Backend::Sqlite, pool)
            }
        };
        if let Err(e) = migrate::migrate(&pool, backend).await {
            pool.close().await;
            return Err(e);
        }
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                writer: Mutex::new(()),
            }),
        };
        if let Err(e) = store.backfill().await {
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The schema version of the database (the newest applied migration).
    pub async fn schema_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
        )
        .fetch_one(&self.inner.pool)
        .await?)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Takes the writer lock and begins a write transaction. On PostgreSQL `events` is also
    /// locked against other writers (readers are not blocked), so several processes sharing
    /// one database still get a gap-free log; on SQLite `BEGIN IMMEDIATE` does the same.
    async fn write(&self, lock_events: bool) -> Result<Write<'_>> {
        let guard = self.inner.writer.lock().await;
        let tx = match self.inner.backend {
            Backend::Sqlite => self.inner.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.inner.pool.begin().await?;
                if lock_events {
                    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                        .execute(&mut *tx)
                        .await?;
                }
                tx
            }
        };
        Ok(Write { _guard: guard, tx })
    }

    // ---- events ----

    /// Appends events on their own (for changes with no other state, e.g. a rejected
    /// webhook). Returns them with their sequence numbers and times.
    pub async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.write(true).await?;
        let out = insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(out)
    }

    /// Events with `seq > after`, oldest first, at most `limit`, filtered.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut q = SqlBuilder::new(&format!("SELECT {EVENT_COLS} FROM events WHERE seq > "));
        q.arg(Arg::Int(filter.after));
        if let Some(p) = &filter.project {
            q.push(" AND project = ").arg(Arg::Text(p.clone()));
        }
        if let Some(s) = &filter.subject {
            q.push(" AND subject = ").arg(Arg::Text(s.clone()));
        }
        if let Some(t) = filter.since_ms {
            q.push(" AND time_ms >= ").arg(Arg::Int(t));
        }
        if !filter.kinds.is_empty() {
            q.push(" AND kind IN (");
            for (i, k) in filter.kinds.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.arg(Arg::Text(k.as_str().to_owned()));
            }
            q.push(")");
        }
        q.push(" ORDER BY seq LIMIT ")
            .arg(Arg::Int(limit_or(filter.limit, DEFAULT_EVENT_LIMIT)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(rows::event).collect()
    }

    /// The highest sequence number, 0 when the log is empty.
    pub async fn last_event_seq(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM events")
                .fetch_one(&self.inner.pool)
                .await?,
        )
    }

    // ---- projects ----

    /// Registers a project; `Conflict` if the name is taken.
    pub async fn add_project(&self, p: NewProject, event: NewEvent) -> Result<Project> {
        let conflict = || format!("project `{}`", p.name);
        let mut w = self.write(true).await?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM projects WHERE name = $1")
            .bind(p.name.as_str())
            .fetch_optional(w.conn())
            .await?;
        if taken.is_some() {
            w.rollback().await?;
            return Err(StoreError::Conflict(conflict()));
        }
        let project = Project {
            name: p.name.clone(),
            source: p.source,
            poll_interval_s: p.poll_interval_s,
            webhook_secret: p.webhook_secret,
            created_ms: now_ms(),
        };
        let inserted = sqlx::query(
            "INSERT INTO projects (name, source, poll_interval_s, webhook_secret, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(project.name.as_str())
        .bind(project.source.as_str())
        .bind(project.poll_interval_s)
        .bind(project.webhook_secret.as_str())
        .bind(project.created_ms)
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, conflict)?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(project)
    }

    /// One project by name.
    pub async fn project(&self, name: &str) -> Result<Project> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLS} FROM projects WHERE name = $1"
        )))
        .bind(name.to_owned())
        .fetch_optional(&self.inner.pool)
        .await?;
        match row {
            Some(row) => rows::project(&row),
            None => Err(StoreError::NotFound(format!("project `{name}`"))),
        }
    }

    /// All projects, by name.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLS} FROM projects ORDER BY name"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(rows::project).collect()
    }

    /// Removes a project (its runs, releases and events stay). The branch heads sluice saw for
    /// it and its on-call overrides are forgotten, so registering it again starts afresh.
    /// `NotFound` if there is none.
    pub async fn remove_project(&self, name: &str, event: NewEvent) -> Result<()> {
        let mut w = self.write(true).await?;
        let deleted = sqlx::query("DELETE FROM projects WHERE name = $1")
            .bind(name)
            .execute(w.conn())
            .await?;
        if deleted.rows_affected() == 0 {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("project `{name}`")));
        }
        for table in ["branch_heads", "oncall_overrides"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE project = $1"
            )))
            .bind(name)
            .execute(w.conn())
            .await?;
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await
    }

    // ---- branch heads seen (the poller's memory) ----

    /// The last commit seen on each branch of a project.
    pub async fn branch_heads(&self, project: &str) -> Result<Vec<BranchHead>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BRANCH_HEAD_COLS} FROM branch_heads WHERE project = $1 ORDER BY branch"
        )))
        .bind(project.to_owned())
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(rows::branch_head).collect()
    }

    /// Records a branch head and its `push.received` event, only if the stored head differs
    /// from `head.commit` (compare-and-set on `expected`: the head sluice last saw, None if
    /// never). Returns false, writing nothing, when another writer got there first.
    pub async fn set_branch_head(
        &self,
        head: &BranchHead,
        expected: Option<&str>,
        event: NewEvent,
    ) -> Result<bool> {
        let mut w = self.write(true).await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT commit_sha FROM branch_heads WHERE project = $1 AND branch = $2",
        )
        .bind(head.project.as_str())
        .bind(head.branch.as_str())
        .fetch_optional(w.conn())
        .await?;
        if current.as_deref() != expected || current.as_deref() == Some(head.commit.as_str()) {
            w.rollback().await?;
            return Ok(false);
        }
        let sql = if current.is_some() {
            "UPDATE branch_heads SET commit_sha = $3, updated_ms = $4 \
             WHERE project = $1 AND branch = $2"
        } else {
            "INSERT INTO branch_heads (project, branch, commit_sha, updated_ms) \
             VALUES ($1, $2, $3, $4)"
        };
        sqlx::query(sql)
            .bind(head.project.as_str())
            .bind(head.branch.as_str())
            .bind(head.commit.as_str())
            .bind(head.updated_ms)
            .execute(w.conn())
            .await?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(true)
    }

    // ---- webhook deliveries ----

    /// Records a delivery id; returns false (writing nothing) if it was seen before.
    pub async fn record_delivery(
        &self,
        provider: &str,
        delivery_id: &str,
        event: NewEvent,
    ) -> Result<bool> {
        let mut w = self.write(true).await?;
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE provider = $1 AND delivery_id = $2",
        )
        .bind(provider)
        .bind(delivery_id)
        .fetch_optional(w.conn())
        .await?;
        if seen.is_some() {
            w.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO webhook_deliveries (provider, delivery_id, received_ms) \
             VALUES ($1, $2, $3)",
        )
        .bind(provider)
        .bind(delivery_id)
        .bind(now_ms())
        .execute(w.conn())
        .await?;
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(true)
    }

    // ---- runs and steps ----

    /// Creates a run in `queued` with all its steps `pending`, plus its events.
    /// `{id}` in an event's subject (e.g. `run/{id}`) is replaced by the new run's id.
    pub async fn create_run(&self, run: NewRun, mut events: Vec<NewEvent>) -> Result<Run> {
        let services = to_json(&run.services, "run services")?;
        let mut w = self.write(true).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (project, env, branch, commit_sha, run_trigger, actor, rerun_of, \
             status, services, config, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(run.project.as_str())
        .bind(run.env.as_str())
        .bind(run.branch.as_str())
        .bind(run.commit.as_str())
        .bind(run.trigger.as_str())
        .bind(run.actor.as_str())
        .bind(run.rerun_of)
        .bind(RunStatus::Queued.as_str())
        .bind(services)
        .bind(run.config.as_str())
        .bind(run.created_ms)
        .fetch_one(w.conn())
        .await?;
        for (position, step) in (0_i64..).zip(&run.steps) {
            let needs = to_json(&step.needs, "step needs")?;
            let inserted = sqlx::query(
                "INSERT INTO steps (run_id, name, position, service, needs, gate, status, attempt) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
            )
            .bind(id)
            .bind(step.name.as_str())
            .bind(position)
            .bind(step.service.as_str())
            .bind(needs)
            .bind(i64::from(step.gate))
            .bind(StepStatus::Pending.as_str())
            .execute(w.conn())
            .await;
            conflict_on_unique(inserted, || {
                format!(
                    "step `{}` (step names must be unique within a run)",
                    step.name
                )
            })?;
        }
        fill_subjects(&mut events, id, None);
        insert_events(w.conn(), events).await?;
        w.commit().await?;
        Ok(Run {
            id,
            project: run.project,
            env: run.env,
            branch: run.branch,
            commit: run.commit,
            trigger: run.trigger,
            actor: run.actor,
            rerun_of: run.rerun_of,
            status: RunStatus::Queued,
            services: run.services,
            config: run.config,
            created_ms: run.created_ms,
            started_ms: None,
            finished_ms: None,
        })
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Run> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLS} FROM runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        match row {
            Some(row) => rows::run(&row),
            None => Err(StoreError::NotFound(format!("run {id}"))),
        }
    }

    /// Runs, newest first, filtered.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut q = SqlBuilder::new(&format!("SELECT {RUN_COLS} FROM runs WHERE 1 = 1"));
        if let Some(p) = &filter.project {
            q.push(" AND project = ").arg(Arg::Text(p.clone()));
        }
        if let Some(e) = &filter.env {
            q.push(" AND env = ").arg(Arg::Text(e.clone()));
        }
        if let Some(s) = filter.status {
            q.push(" AND status = ")
                .arg(Arg::Text(s.as_str().to_owned()));
        }
        if let Some(b) = filter.before_id {
            q.push(" AND id < ").arg(Arg::Int(b));
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .arg(Arg::Int(limit_or(filter.limit, DEFAULT_RUN_LIMIT)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(rows::run).collect()
    }

    /// Runs whose status is not terminal (queued or running), oldest first.
    pub async fn unfinished_runs(&self) -> Result<Vec<Run>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLS} FROM runs WHERE status IN ($1, $2) ORDER BY id"
        )))
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(rows::run).collect()
    }

    /// Sets a run's status (and started/finished times as the status implies) with events:
    /// `started_ms` is set on entering `running` if unset, `finished_ms` on entering a
    /// terminal status if unset. `NotFound` if there is no such run.
    pub async fn set_run_status(
        &self,
        id: i64,
        status: RunStatus,
        now_ms: i64,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        let mut w = self.write(true).await?;
        let times: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT started_ms, finished_ms FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(w.conn())
                .await?;
        let Some((mut started, mut finished)) = times else {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("run {id}")));
        };
        if status == RunStatus::Running && started.is_none() {
            started = Some(now_ms);
        }
        if status.is_terminal() && finished.is_none() {
            finished = Some(now_ms);
        }
        sqlx::query("UPDATE runs SET status = $2, started_ms = $3, finished_ms = $4 WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .bind(started)
            .bind(finished)
            .execute(w.conn())
            .await?;
        insert_events(w.conn(), events).await?;
        w.commit().await
    }

    /// The steps of a run, in definition order.
    pub async fn steps(&self, run_id: i64) -> Result<Vec<Step>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STEP_COLS} FROM steps WHERE run_id = $1 ORDER BY position"
        )))
        .bind(run_id)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(rows::step).collect()
    }

    /// Updates one step (status, attempt, exit code, times, pgid, tests) with events.
    /// `NotFound` if the run has no such step.
    pub async fn update_step(&self, update: StepUpdate, events: Vec<NewEvent>) -> Result<()> {
        let mut w = self.write(true).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STEP_COLS} FROM steps WHERE run_id = $1 AND name = $2"
        )))
        .bind(update.run_id)
        .bind(update.name.clone())
        .fetch_optional(w.conn())
        .await?;
        let Some(row) = row else {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!(
                "step `{}` of run {}",
                update.name, update.run_id
            )));
        };
        let mut step = rows::step(&row)?;
        if let Some(s) = update.status {
            step.status = s;
        }
        if let Some(a) = update.attempt {
            step.attempt = a;
        }
        if let Some(c) = update.exit_code {
            step.exit_code = Some(c);
        }
        if let Some(p) = update.pgid {
            step.pgid = p;
        }
        if step.started_ms.is_none() {
            step.started_ms = update.started_ms;
        }
        if let Some(f) = update.finished_ms {
            step.finished_ms = Some(f);
        }
        if let Some(t) = update.tests {
            step.tests = Some(t);
        }
        if let Some(i) = update.image_id {
            step.image_id = Some(i);
        }
        if let Some(r) = update.vuln_report {
            step.vuln_report = Some(r);
        }
        let tests = step
            .tests
            .as_ref()
            .map(|t| to_json(t, "test summary"))
            .transpose()?;
        let vuln_report = step
            .vuln_report
            .as_ref()
            .map(|r| to_json(r, "vulnerability report"))
            .transpose()?;
        sqlx::query(
            "UPDATE steps SET status = $3, attempt = $4, exit_code = $5, pgid = $6, \
             started_ms = $7, finished_ms = $8, tests = $9, image_id = $10, vuln_report = $11 \
             WHERE run_id = $1 AND name = $2",
        )
        .bind(step.run_id)
        .bind(step.name.as_str())
        .bind(step.status.as_str())
        .bind(step.attempt)
        .bind(step.exit_code)
        .bind(step.pgid)
        .bind(step.started_ms)
        .bind(step.finished_ms)
        .bind(tests)
        .bind(step.image_id.as_deref())
        .bind(vuln_report)
        .execute(w.conn())
        .await?;
        insert_events(w.conn(), events).await?;
        w.commit().await
    }

    // ---- logs ----

    /// Appends log lines (they carry their own run, step and per-step sequence). The whole
    /// batch is written in one transaction with multi-row inserts; `id` is assigned here.
    pub async fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut w = self.write(false).await?;
        for chunk in lines.chunks(LOG_ROWS_PER_INSERT) {
            let mut q = SqlBuilder::new(
                "INSERT INTO log_lines (run_id, step, seq, time_ms, stream, line) VALUES ",
            );
            for (i, l) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.arg(Arg::Int(l.run_id)).push(", ");
                q.arg(Arg::Text(l.step.clone())).push(", ");
                q.arg(Arg::Int(l.seq)).push(", ");
                q.arg(Arg::Int(l.time_ms)).push(", ");
                q.arg(Arg::Text(l.stream.clone())).push(", ");
                q.arg(Arg::Text(l.line.clone())).push(")");
            }
            q.build().execute(w.conn()).await?;
        }
        w.commit().await
    }

    /// Log lines of a run (optionally one step) with `id > after` (the store-wide cursor),
    /// in the order they were appended (by id), at most `limit`.
    pub async fn logs(&self, filter: &LogFilter) -> Result<Vec<LogLine>> {
        let mut q = SqlBuilder::new(&format!("SELECT {LOG_COLS} FROM log_lines WHERE run_id = "));
        q.arg(Arg::Int(filter.run_id));
        q.push(" AND id > ").arg(Arg::Int(filter.after));
        if let Some(s) = &filter.step {
            q.push(" AND step = ").arg(Arg::Text(s.clone()));
        }
        q.push(" ORDER BY id LIMIT ")
            .arg(Arg::Int(limit_or(filter.limit, DEFAULT_LOG_LIMIT)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(rows::log_line).collect()
    }

    // ---- releases ----

    /// Creates a release with the next version for its service, plus its event. Returns
    /// `Ok(None)` and writes nothing if the service already has a release for that commit.
    /// Only the store knows the id and version, so in the event `{id}` and `{version}` in the
    /// subject (e.g. `release/shop/api/{version}`) are replaced, and a JSON-object payload
    /// gets its `version` field set.
    pub async fn create_release(
        &self,
        r: NewRelease,
        mut event: NewEvent,
    ) -> Result<Option<Release>> {
        let gates = to_json(&r.gates, "release gates")?;
        let vuln_report = r
            .vuln_report
            .as_ref()
            .map(|v| to_json(v, "release vulnerability report"))
            .transpose()?;
        let mut w = self.write(true).await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM releases WHERE project = $1 AND service = $2 AND commit_sha = $3",
        )
        .bind(r.project.as_str())
        .bind(r.service.as_str())
        .bind(r.commit.as_str())
        .fetch_optional(w.conn())
        .await?;
        if existing.is_some() {
            w.rollback().await?;
            return Ok(None);
        }
        let version: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) + 1 AS BIGINT) FROM releases \
             WHERE project = $1 AND service = $2",
        )
        .bind(r.project.as_str())
        .bind(r.service.as_str())
        .fetch_one(w.conn())
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO releases (project, service, version, commit_sha, branch, env, run_id, \
             artifact_sha256, artifact_bytes, artifact_pruned, gates, created_ms, image_id, \
             image_tag, vuln_report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(r.project.as_str())
        .bind(r.service.as_str())
        .bind(version)
        .bind(r.commit.as_str())
        .bind(r.branch.as_str())
        .bind(r.env.as_str())
        .bind(r.run_id)
        .bind(r.artifact_sha256.as_str())
        .bind(r.artifact_bytes)
        .bind(gates)
        .bind(r.created_ms)
        .bind(r.image_id.as_deref())
        .bind(r.image_tag.as_deref())
        .bind(vuln_report)
        .fetch_one(w.conn())
        .await?;
        fill_subjects(std::slice::from_mut(&mut event), id, Some(version));
        if let Some(obj) = event.payload.as_object_mut() {
            obj.insert("version".to_owned(), version.into());
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await?;
        Ok(Some(Release {
            id,
            project: r.project,
            service: r.service,
            version,
            commit: r.commit,
            branch: r.branch,
            env: r.env,
            run_id: r.run_id,
            artifact_sha256: r.artifact_sha256,
            artifact_bytes: r.artifact_bytes,
            artifact_pruned: false,
            gates: r.gates,
            created_ms: r.created_ms,
            image_id: r.image_id,
            image_tag: r.image_tag,
            vuln_report: r.vuln_report,
        }))
    }

    /// Releases, newest first, filtered.
    pub async fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>> {
        let mut q = SqlBuilder::new(&format!("SELECT {RELEASE_COLS} FROM releases WHERE 1 = 1"));
        if let Some(p) = &filter.project {
            q.push(" AND project = ").arg(Arg::Text(p.clone()));
        }
        if let Some(s) = &filter.service {
            q.push(" AND service = ").arg(Arg::Text(s.clone()));
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .arg(Arg::Int(limit_or(filter.limit, DEFAULT_RELEASE_LIMIT)));
        let rows = q.build().fetch_all(&self.inner.pool).await?;
        rows.iter().map(rows::release).collect()
    }

    /// One release by id; `NotFound` if there is none.
    pub async fn release(&self, id: i64) -> Result<Release> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RELEASE_COLS} FROM releases WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        match row {
            Some(row) => rows::release(&row),
            None => Err(StoreError::NotFound(format!("release {id}"))),
        }
    }

    /// Release `version` of a service, if it exists (one indexed row, for per-tick lookups).
    pub async fn release_version(
        &self,
        project: &str,
        service: &str,
        version: i64,
    ) -> Result<Option<Release>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RELEASE_COLS} FROM releases \
             WHERE project = $1 AND service = $2 AND version = $3"
        )))
        .bind(project.to_owned())
        .bind(service.to_owned())
        .bind(version)
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(rows::release).transpose()
    }

    /// The release of a service at a commit, if any.
    pub async fn release_for_commit(
        &self,
        project: &str,
        service: &str,
        commit: &str,
    ) -> Result<Option<Release>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RELEASE_COLS} FROM releases \
             WHERE project = $1 AND service = $2 AND commit_sha = $3"
        )))
        .bind(project.to_owned())
        .bind(service.to_owned())
        .bind(commit.to_owned())
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(rows::release).transpose()
    }

    /// The newest release of a service built from a run on environment `env`.
    pub async fn last_release_in_env(
        &self,
        project: &str,
        service: &str,
        env: &str,
    ) -> Result<Option<Release>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RELEASE_COLS} FROM releases \
             WHERE project = $1 AND service = $2 AND env = $3 \
             ORDER BY version DESC LIMIT 1"
        )))
        .bind(project.to_owned())
        .bind(service.to_owned())
        .bind(env.to_owned())
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(rows::release).transpose()
    }

    /// Marks a release's artifact as pruned (file deleted by retention), with its event.
    /// `NotFound` if there is no such release.
    pub async fn mark_artifact_pruned(&self, release_id: i64, event: NewEvent) -> Result<()> {
        let mut w = self.write(true).await?;
        let updated = sqlx::query("UPDATE releases SET artifact_pruned = 1 WHERE id = $1")
            .bind(release_id)
            .execute(w.conn())
            .await?;
        if updated.rows_affected() == 0 {
            w.rollback().await?;
            return Err(StoreError::NotFound(format!("release {release_id}")));
        }
        insert_events(w.conn(), vec![event]).await?;
        w.commit().await
    }

    /// Counts for `/metrics`: runs by status. Every status is listed, in
    /// [`RunStatus::ALL`] order, with 0 for those no run has.
    pub async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, CAST(COUNT(*) AS BIGINT) FROM runs GROUP BY status")
                .fetch_all(&self.inner.pool)
                .await?;
        let mut counts: Vec<(RunStatus, i64)> = RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (status, n) in rows {
            let status = rows::run_status(&status, "a run")?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = n;
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// Servers spawn store calls onto tokio's multi-threaded runtime, so every future the
    /// store returns must be `Send` (checked at compile time; the futures are never polled).
    #[allow(dead_code)]
    fn futures_are_send(s: &Store, e: NewEvent, r: NewRun, rel: NewRelease, h: &BranchHead) {
        assert_send(&Store::open(""));
        assert_send(&s.close());
        assert_send(&s.append_events(vec![e.clone()]));
        assert_send(&s.events(&EventFilter::default()));
        assert_send(&s.add_project(
            NewProject {
                name: String::new(),
                source: String::new(),
                poll_interval_s: 0,
                webhook_secret: String::new(),
            },
            e.clone(),
        ));
        assert_send(&s.remove_project("", e.clone()));
        assert_send(&s.set_branch_head(h, None, e.clone()));
        assert_send(&s.record_delivery("", "", e.clone()));
        assert_send(&s.create_run(r, vec![]));
        assert_send(&s.runs(&RunFilter::default()));
        assert_send(&s.set_run_status(1, RunStatus::Running, 0, vec![]));
        assert_send(&s.update_step(StepUpdate::default(), vec![]));
        assert_send(&s.append_logs(&[]));
        assert_send(&s.logs(&LogFilter::default()));
        assert_send(&s.create_release(rel, e.clone()));
        assert_send(&s.last_release_in_env("", "", ""));
        assert_send(&s.mark_artifact_pruned(1, e.clone()));
        assert_send(&s.run_counts());
    }

    /// The same for the audit, access and secret methods.
    #[allow(dead_code)]
    fn security_futures_are_send(
        s: &Store,
        e: NewEvent,
        cp: &sluice_audit::Checkpoint,
        t: &TokenRow,
        ses: &SessionRow,
        g: &sluice_auth::Grant,
        n: NewSecret,
    ) {
        assert_send(&s.audit_entries(0, 0));
        assert_send(&s.last_event());
        assert_send(&s.add_checkpoint(cp));
        assert_send(&s.checkpoints());
        assert_send(&s.create_user("", "", false, e.clone()));
        assert_send(&s.set_user_disabled("", true, e.clone()));
        assert_send(&s.delete_user("", e.clone()));
        assert_send(&s.grant("", g, e.clone()));
        assert_send(&s.revoke_grant("", g, e.clone()));
        assert_send(&s.create_token(t, e.clone()));
        assert_send(&s.touch_token("", 0));
        assert_send(&s.revoke_token("", 0, e.clone()));
        assert_send(&s.create_session(ses, vec![]));
        assert_send(&s.touch_session("", 0, 0));
        assert_send(&s.use_setup_token("", 0));
        assert_send(&s.approve(1, "", 0, "", e.clone()));
        assert_send(&s.put_secret(
            n,
            |_r: &sluice_secrets::SecretRef| -> Result<sluice_secrets::Sealed, sluice_secrets::SecretsError> {
                Err(sluice_secrets::SecretsError::Sealed)
            },
            e.clone(),
        ));
        assert_send(&s.rewrap_secrets("", vec![], e.clone()));
        assert_send(&s.delete_secret("", None, "", e));
    }

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            parse_url("postgres://u@h/db").ok(),
            Some(DbTarget::Postgres("postgres://u@h/db".into()))
        );
        assert_eq!(
            parse_url("postgresql://u@h/db").ok(),
            Some(DbTarget::Postgres("postgresql://u@h/db".into()))
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/sluice/sluice.db").ok(),
            Some(DbTarget::SqliteFile("/var/lib/sluice/sluice.db".into()))
        );
        assert_eq!(
            parse_url("data/sluice.db").ok(),
            Some(DbTarget::SqliteFile("data/sluice.db".into()))
        );
        for bad in [
            "mysql://x/y",
            "",
            "sqlite://",
            "dir/",
            "http://example.com/db",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::BadUrl(_))),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn subjects_get_ids_and_versions() {
        let mut events = vec![
            NewEvent::new(sluice_core::EventKind::RunQueued, "system", "run/{id}"),
            NewEvent::new(sluice_core::EventKind::RunQueued, "system", "project/x"),
        ];
        fill_subjects(&mut events, 7, Some(3));
        assert_eq!(events[0].subject, "run/7");
        assert_eq!(events[1].subject, "project/x");
        let mut events = vec![NewEvent::new(
            sluice_core::EventKind::ReleaseCreated,
            "system",
            "release/shop/api/{version}",
        )];
        fill_subjects(&mut events, 7, Some(3));
        assert_eq!(events[0].subject, "release/shop/api/3");
    }
}
