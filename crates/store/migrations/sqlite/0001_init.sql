-- sluice schema, version 1 (SQLite).
-- Ids and times are 64-bit integers (times in ms since the Unix epoch), booleans 0/1,
-- JSON and lists as TEXT. Keep in step with ../postgres/0001_init.sql.

CREATE TABLE events (
    seq      INTEGER PRIMARY KEY,
    time_ms  INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    subject  TEXT    NOT NULL,
    project  TEXT,
    payload  TEXT    NOT NULL
);
CREATE INDEX events_project_seq ON events (project, seq);
CREATE INDEX events_subject_seq ON events (subject, seq);
CREATE INDEX events_kind_seq ON events (kind, seq);

CREATE TABLE projects (
    name             TEXT    PRIMARY KEY,
    source           TEXT    NOT NULL,
    poll_interval_s  INTEGER NOT NULL,
    webhook_secret   TEXT    NOT NULL,
    created_ms       INTEGER NOT NULL
);

CREATE TABLE branch_heads (
    project     TEXT    NOT NULL,
    branch      TEXT    NOT NULL,
    commit_sha  TEXT    NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (project, branch)
);

CREATE TABLE webhook_deliveries (
    provider     TEXT    NOT NULL,
    delivery_id  TEXT    NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project      TEXT    NOT NULL,
    env          TEXT    NOT NULL,
    branch       TEXT    NOT NULL,
    commit_sha   TEXT    NOT NULL,
    run_trigger  TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    rerun_of     INTEGER,
    status       TEXT    NOT NULL,
    services     TEXT    NOT NULL,
    config       TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    started_ms   INTEGER,
    finished_ms  INTEGER
);
CREATE INDEX runs_project_id ON runs (project, id);
CREATE INDEX runs_env_id ON runs (env, id);
CREATE INDEX runs_status_id ON runs (status, id);

CREATE TABLE steps (
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    name         TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    service      TEXT    NOT NULL,
    needs        TEXT    NOT NULL,
    gate         INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    exit_code    INTEGER,
    pgid         INTEGER,
    started_ms   INTEGER,
    finished_ms  INTEGER,
    tests        TEXT,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE log_lines (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   INTEGER NOT NULL,
    step     TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    time_ms  INTEGER NOT NULL,
    stream   TEXT    NOT NULL,
    line     TEXT    NOT NULL
);
CREATE INDEX log_lines_run_id ON log_lines (run_id, id);

CREATE TABLE releases (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    project          TEXT    NOT NULL,
    service          TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    commit_sha       TEXT    NOT NULL,
    branch           TEXT    NOT NULL,
    env              TEXT    NOT NULL,
    run_id           INTEGER NOT NULL,
    artifact_sha256  TEXT    NOT NULL,
    artifact_bytes   INTEGER NOT NULL,
    artifact_pruned  INTEGER NOT NULL DEFAULT 0,
    gates            TEXT    NOT NULL,
    created_ms       INTEGER NOT NULL,
    UNIQUE (project, service, commit_sha),
    UNIQUE (project, service, version)
);
CREATE INDEX releases_env ON releases (project, service, env, version);
