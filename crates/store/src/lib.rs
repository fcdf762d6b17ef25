//! Persistence for sluice.
//!
//! One [`Store`] type over two backends, picked from the URL at start-up: SQLite in the data
//! directory by default (`sqlite:///path/sluice.db`), PostgreSQL when given a `postgres://`
//! URL. Every mutating method writes its state change and the matching events of the
//! append-only log in one transaction, so the log never misses a change and a crash never
//! leaves a change without its event. Writes are serialised through one writer lock, which
//! is what makes event sequence numbers gap-free and monotonic in commit order.
//! Architecture invariant: this crate knows SQL and the model types, nothing of HTTP, git or
//! processes. The same conformance suite (`tests/conformance.rs`) runs against both backends.

mod model;

pub use model::*;

use sluice_core::{NewEvent, RunStatus, StepStatus};

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
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    _todo: (),
}

#[allow(unused_variables, clippy::unused_async)]
impl Store {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    /// `url` is a filesystem path or `sqlite://PATH` for SQLite, `postgres://...` for PostgreSQL.
    pub async fn open(url: &str) -> Result<Store> {
        todo!()
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        todo!()
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        todo!()
    }

    // ---- events ----

    /// Appends events on their own (for changes with no other state, e.g. a rejected
    /// webhook). Returns them with their sequence numbers and times.
    pub async fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        todo!()
    }

    /// Events with `seq > after`, oldest first, at most `limit`, filtered.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        todo!()
    }

    /// The highest sequence number, 0 when the log is empty.
    pub async fn last_event_seq(&self) -> Result<i64> {
        todo!()
    }

    // ---- projects ----

    /// Registers a project; `Conflict` if the name is taken.
    pub async fn add_project(&self, p: NewProject, event: NewEvent) -> Result<Project> {
        todo!()
    }

    /// One project by name.
    pub async fn project(&self, name: &str) -> Result<Project> {
        todo!()
    }

    /// All projects, by name.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        todo!()
    }

    /// Removes a project (its runs, releases and events stay).
    pub async fn remove_project(&self, name: &str, event: NewEvent) -> Result<()> {
        todo!()
    }

    // ---- branch heads seen (the poller's memory) ----

    /// The last commit seen on each branch of a project.
    pub async fn branch_heads(&self, project: &str) -> Result<Vec<BranchHead>> {
        todo!()
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
        todo!()
    }

    // ---- webhook deliveries ----

    /// Records a delivery id; returns false (writing nothing) if it was seen before.
    pub async fn record_delivery(
        &self,
        provider: &str,
        delivery_id: &str,
        event: NewEvent,
    ) -> Result<bool> {
        todo!()
    }

    // ---- runs and steps ----

    /// Creates a run in `queued` with all its steps `pending`, plus its events.
    pub async fn create_run(&self, run: NewRun, events: Vec<NewEvent>) -> Result<Run> {
        todo!()
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Run> {
        todo!()
    }

    /// Runs, newest first, filtered.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        todo!()
    }

    /// Runs whose status is not terminal (queued or running), oldest first.
    pub async fn unfinished_runs(&self) -> Result<Vec<Run>> {
        todo!()
    }

    /// Sets a run's status (and started/finished times as the status implies) with events.
    pub async fn set_run_status(
        &self,
        id: i64,
        status: RunStatus,
        now_ms: i64,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        todo!()
    }

    /// The steps of a run, in definition order.
    pub async fn steps(&self, run_id: i64) -> Result<Vec<Step>> {
        todo!()
    }

    /// Updates one step (status, attempt, exit code, times, pgid, tests) with events.
    pub async fn update_step(&self, update: StepUpdate, events: Vec<NewEvent>) -> Result<()> {
        todo!()
    }

    // ---- logs ----

    /// Appends log lines (they carry their own run, step and per-step sequence).
    pub async fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        todo!()
    }

    /// Log lines of a run (optionally one step) with `seq > after` for that step ordering,
    /// ordered by (time, step, seq), at most `limit`.
    pub async fn logs(&self, filter: &LogFilter) -> Result<Vec<LogLine>> {
        todo!()
    }

    // ---- releases ----

    /// Creates a release with the next version for its service, plus its event. Returns
    /// `Ok(None)` and writes nothing if the service already has a release for that commit.
    pub async fn create_release(&self, r: NewRelease, event: NewEvent) -> Result<Option<Release>> {
        todo!()
    }

    /// Releases, newest first, filtered.
    pub async fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>> {
        todo!()
    }

    /// The release of a service at a commit, if any.
    pub async fn release_for_commit(
        &self,
        project: &str,
        service: &str,
        commit: &str,
    ) -> Result<Option<Release>> {
        todo!()
    }

    /// The newest release of a service built from a run on environment `env`.
    pub async fn last_release_in_env(
        &self,
        project: &str,
        service: &str,
        env: &str,
    ) -> Result<Option<Release>> {
        todo!()
    }

    /// Marks a release's artifact as pruned (file deleted by retention), with its event.
    pub async fn mark_artifact_pruned(&self, release_id: i64, event: NewEvent) -> Result<()> {
        todo!()
    }

    /// Counts for `/metrics`: runs by status.
    pub async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>> {
        todo!()
    }
}

#[allow(dead_code)]
fn _uses(_: StepStatus) {}
