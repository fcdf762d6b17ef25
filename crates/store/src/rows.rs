//! Decoding stored rows into model types, and the small SQL builder for filtered reads.
//!
//! Both backends are read through sqlx's `Any` driver, so only integers (BIGINT), text and
//! NULL cross this boundary: enums are stored as their stable string forms, lists and
//! documents as JSON text, booleans as 0/1.

use serde::de::DeserializeOwned;
use sluice_audit::{Hash, StoredEntry};
use sluice_core::{EventKind, RunStatus, StepStatus};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};

use crate::{BranchHead, Event, LogLine, Project, Release, Result, Run, Step, StoreError};

/// Columns read by [`event`] and [`audit_entry`], in order.
pub(crate) const EVENT_COLS: &str = "seq, time_ms, kind, actor, subject, project, payload, \
     source, request_id, prev_hash, hash";
/// Columns read by [`project`].
pub(crate) const PROJECT_COLS: &str = "name, source, poll_interval_s, webhook_secret, created_ms";
/// Columns read by [`branch_head`].
pub(crate) const BRANCH_HEAD_COLS: &str = "project, branch, commit_sha, updated_ms";
/// Columns read by [`run`].
pub(crate) const RUN_COLS: &str = "id, project, env, branch, commit_sha, run_trigger, actor, \
     rerun_of, status, services, config, created_ms, started_ms, finished_ms";
/// Columns read by [`step`].
pub(crate) const STEP_COLS: &str = "run_id, position, name, service, needs, gate, status, \
     attempt, exit_code, pgid, started_ms, finished_ms, tests, image_id, vuln_report";
/// Columns read by [`log_line`].
pub(crate) const LOG_COLS: &str = "id, run_id, step, seq, time_ms, stream, line";
/// Columns read by [`release`].
pub(crate) const RELEASE_COLS: &str = "id, project, service, version, commit_sha, branch, env, \
     run_id, artifact_sha256, artifact_bytes, artifact_pruned, gates, created_ms, image_id, \
     image_tag, vuln_report";

fn json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Encodes a value as JSON text for storage.
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))
}

pub(crate) fn event(row: &AnyRow) -> Result<Event> {
    let seq: i64 = row.try_get("seq")?;
    let kind: String = row.try_get("kind")?;
    let payload: String = row.try_get("payload")?;
    Ok(Event {
        seq,
        time_ms: row.try_get("time_ms")?,
        kind: EventKind::parse(&kind).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "event {seq} has unknown kind `{kind}`: it was written by a newer sluice"
            ))
        })?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        project: row.try_get("project")?,
        payload: json(&payload, &format!("payload of event {seq}"))?,
        source: row.try_get("source")?,
        request_id: row.try_get("request_id")?,
        prev_hash: stored_hash(&row.try_get::<String, _>("prev_hash")?),
        hash: stored_hash(&row.try_get::<String, _>("hash")?),
    })
}

/// A stored chain hash. Text that is not 64 hex digits (tampering, or a row not yet chained)
/// reads as all zeros, so audit verification reports the entry instead of the read failing.
pub(crate) fn stored_hash(text: &str) -> Hash {
    text.parse().unwrap_or(Hash::GENESIS)
}

/// One event as an audit chain entry, the payload as its exact stored text.
pub(crate) fn audit_entry(row: &AnyRow) -> Result<StoredEntry> {
    Ok(StoredEntry {
        seq: row.try_get("seq")?,
        time_ms: row.try_get("time_ms")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        subject: row.try_get("subject")?,
        project: row.try_get("project")?,
        payload: row.try_get("payload")?,
        source: row.try_get("source")?,
        request_id: row.try_get("request_id")?,
        prev_hash: stored_hash(&row.try_get::<String, _>("prev_hash")?),
        hash: stored_hash(&row.try_get::<String, _>("hash")?),
    })
}

pub(crate) fn project(row: &AnyRow) -> Result<Project> {
    Ok(Project {
        name: row.try_get("name")?,
        source: row.try_get("source")?,
        poll_interval_s: row.try_get("poll_interval_s")?,
        webhook_secret: row.try_get("webhook_secret")?,
        created_ms: row.try_get("created_ms")?,
    })
}

pub(crate) fn branch_head(row: &AnyRow) -> Result<BranchHead> {
    Ok(BranchHead {
        project: row.try_get("project")?,
        branch: row.try_get("branch")?,
        commit: row.try_get("commit_sha")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

pub(crate) fn run_status(s: &str, what: &str) -> Result<RunStatus> {
    RunStatus::parse(s).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{what} has unknown status `{s}`: it was written by a newer sluice"
        ))
    })
}

pub(crate) fn run(row: &AnyRow) -> Result<Run> {
    let id: i64 = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let services: String = row.try_get("services")?;
    Ok(Run {
        id,
        project: row.try_get("project")?,
        env: row.try_get("env")?,
        branch: row.try_get("branch")?,
        commit: row.try_get("commit_sha")?,
        trigger: row.try_get("run_trigger")?,
        actor: row.try_get("actor")?,
        rerun_of: row.try_get("rerun_of")?,
        status: run_status(&status, &format!("run {id}"))?,
        services: json(&services, &format!("services of run {id}"))?,
        config: row.try_get("config")?,
        created_ms: row.try_get("created_ms")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
    })
}

pub(crate) fn step(row: &AnyRow) -> Result<Step> {
    let run_id: i64 = row.try_get("run_id")?;
    let name: String = row.try_get("name")?;
    let what = format!("step `{name}` of run {run_id}");
    let status: String = row.try_get("status")?;
    let needs: String = row.try_get("needs")?;
    let gate: i64 = row.try_get("gate")?;
    let tests: Option<String> = row.try_get("tests")?;
    let vuln_report: Option<String> = row.try_get("vuln_report")?;
    Ok(Step {
        run_id,
        position: row.try_get("position")?,
        service: row.try_get("service")?,
        needs: json(&needs, &what)?,
        gate: gate != 0,
        status: StepStatus::parse(&status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{what} has unknown status `{status}`: it was written by a newer sluice"
            ))
        })?,
        attempt: row.try_get("attempt")?,
        exit_code: row.try_get("exit_code")?,
        pgid: row.try_get("pgid")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        tests: tests.map(|t| json(&t, &what)).transpose()?,
        image_id: row.try_get("image_id")?,
        vuln_report: vuln_report.map(|r| json(&r, &what)).transpose()?,
        name,
    })
}

pub(crate) fn log_line(row: &AnyRow) -> Result<LogLine> {
    Ok(LogLine {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        step: row.try_get("step")?,
        seq: row.try_get("seq")?,
        time_ms: row.try_get("time_ms")?,
        stream: row.try_get("stream")?,
        line: row.try_get("line")?,
    })
}

pub(crate) fn release(row: &AnyRow) -> Result<Release> {
    let id: i64 = row.try_get("id")?;
    let gates: String = row.try_get("gates")?;
    let pruned: i64 = row.try_get("artifact_pruned")?;
    let vuln_report: Option<String> = row.try_get("vuln_report")?;
    Ok(Release {
        id,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        version: row.try_get("version")?,
        commit: row.try_get("commit_sha")?,
        branch: row.try_get("branch")?,
        env: row.try_get("env")?,
        run_id: row.try_get("run_id")?,
        artifact_sha256: row.try_get("artifact_sha256")?,
        artifact_bytes: row.try_get("artifact_bytes")?,
        artifact_pruned: pruned != 0,
        gates: json(&gates, &format!("gates of release {id}"))?,
        created_ms: row.try_get("created_ms")?,
        image_id: row.try_get("image_id")?,
        image_tag: row.try_get("image_tag")?,
        vuln_report: vuln_report
            .map(|r| json(&r, &format!("vulnerability report of release {id}")))
            .transpose()?,
    })
}

/// A bound value of a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// A string or NULL.
    OptText(Option<String>),
}

/// A query assembled from optional filters, with `$N` placeholders numbered as arguments are
/// added (sqlx-sqlite binds `$N` to argument N, as PostgreSQL does).
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    text: String,
    args: Vec<Arg>,
    /// Placeholders are `?` (bound in order) instead of `$N`.
    anonymous: bool,
}

impl SqlBuilder {
    pub(crate) fn new(text: &str) -> Self {
        SqlBuilder {
            text: text.to_owned(),
            args: Vec::new(),
            anonymous: false,
        }
    }

    /// For a statement with many arguments on SQLite: `?` placeholders, bound in order.
    /// sqlx-sqlite asks SQLite for the name of every parameter, which SQLite finds by a
    /// linear scan of the statement's named parameters, so `$N` costs grow with the square of
    /// their number; anonymous ones cost nothing. PostgreSQL only understands `$N`.
    pub(crate) fn anonymous_on(mut self, backend: crate::Backend) -> Self {
        self.anonymous = backend == crate::Backend::Sqlite;
        self
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub(crate) fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        if self.anonymous {
            self.text.push('?');
        } else {
            self.text.push_str(&format!("${}", self.args.len()));
        }
        self
    }

    /// The query, with every argument bound.
    pub(crate) fn build(self) -> Query<'static, Any, AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(self.text));
        for a in self.args {
            q = match a {
                Arg::Int(i) => q.bind(i),
                Arg::Text(s) => q.bind(s),
                Arg::OptInt(i) => q.bind(i),
                Arg::OptText(s) => q.bind(s),
            };
        }
        q
    }
}
