-- sluice schema, version 5 (SQLite): alerts, incidents, on-call and noise control.
-- Keep in step with ../postgres/0005_incidents.sql.
-- Alerts and incidents are written by the incident engine alone (one task), which assigns
-- their ids itself so a batch of effects can be written without reading ids back.

-- Where external signals come in: a PagerDuty routing key or an Alertmanager endpoint.
-- Only the SHA-256 of the key is kept; `key_hint` is its last four characters.
CREATE TABLE integrations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    project     TEXT    NOT NULL,
    service     TEXT,
    key_hash    TEXT    NOT NULL UNIQUE,
    key_hint    TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (project, name)
);

-- Accepted signals, durable before the sender gets its answer; the engine applies them in
-- seq order and records how far it got in settings (`alerts.applied_seq`).
CREATE TABLE alert_journal (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms  INTEGER NOT NULL,
    body         TEXT    NOT NULL
);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    scope        TEXT    NOT NULL,
    dedup_key    TEXT    NOT NULL,
    project      TEXT    NOT NULL,
    service      TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    rule         TEXT,
    status       TEXT    NOT NULL,
    severity     TEXT    NOT NULL,
    summary      TEXT    NOT NULL,
    labels       TEXT    NOT NULL,
    details      TEXT    NOT NULL,
    incident_id  INTEGER,
    silenced     INTEGER NOT NULL DEFAULT 0,
    flapping     INTEGER NOT NULL DEFAULT 0,
    repeats      INTEGER NOT NULL DEFAULT 0,
    created_ms   INTEGER NOT NULL,
    starts_ms    INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    resolved_ms  INTEGER
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (scope, dedup_key) WHERE status <> 'resolved';
CREATE INDEX alerts_incident ON alerts (incident_id, id);
CREATE INDEX alerts_created ON alerts (created_ms);

CREATE TABLE incidents (
    id                 INTEGER PRIMARY KEY,
    project            TEXT    NOT NULL,
    service            TEXT    NOT NULL,
    group_key          TEXT    NOT NULL,
    title              TEXT    NOT NULL,
    severity           TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    alert_count        INTEGER NOT NULL,
    rule               TEXT,
    opened_ms          INTEGER NOT NULL,
    notified_ms        INTEGER,
    acked_ms           INTEGER,
    acked_by           TEXT,
    resolved_ms        INTEGER,
    resolved_by        TEXT,
    suspected_release  TEXT,
    escalation         TEXT,
    updated_ms         INTEGER NOT NULL
);
CREATE INDEX incidents_status ON incidents (status, id);
CREATE INDEX incidents_service ON incidents (project, service, id);

-- Everything that happened to an incident other than its alerts (which are read from
-- `alerts`): notifications and each delivery attempt, status changes, deploys nearby.
CREATE TABLE incident_timeline (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL,
    at_ms        INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    actor        TEXT,
    text         TEXT    NOT NULL,
    data         TEXT    NOT NULL
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, at_ms);

-- project NULL = every project. recurrence: JSON of a weekly window, NULL = one-off.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT,
    matchers    TEXT    NOT NULL,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    recurrence  TEXT,
    comment     TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    expired_ms  INTEGER
);

-- Where people are reached: notifications for a user go to this address.
ALTER TABLE users ADD COLUMN email TEXT;
