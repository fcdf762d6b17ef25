-- sluice schema, version 3 (SQLite): who may do what, the audit chain, secrets.
-- Keep in step with ../postgres/0003_security.sql.
-- Conventions as before; in addition, "all projects" / "all environments" is stored as '*'
-- (never NULL) where the column is part of a uniqueness rule, so the rule is portable.
-- Nothing here holds a plaintext password or token: only their hashes.

-- The request context of an event and its place in the hash chain. Events written before
-- this version get their chain computed when the store opens (hash = '' until then).
ALTER TABLE events ADD COLUMN source TEXT;
ALTER TABLE events ADD COLUMN request_id TEXT;
ALTER TABLE events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE INDEX events_unchained ON events (seq) WHERE hash = '';

-- Signed statements "at time_ms the log ended at seq with entry hash `hash`".
CREATE TABLE audit_checkpoints (
    seq        INTEGER NOT NULL,
    hash       TEXT    NOT NULL,
    time_ms    INTEGER NOT NULL,
    key_id     TEXT    NOT NULL,
    signature  TEXT    NOT NULL,
    PRIMARY KEY (time_ms, key_id)
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq, time_ms);

CREATE TABLE users (
    name           TEXT    PRIMARY KEY,
    password_hash  TEXT    NOT NULL,
    admin          INTEGER NOT NULL DEFAULT 0,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);

-- project / environment: '*' = all.
CREATE TABLE grants (
    user_name    TEXT NOT NULL,
    role         TEXT NOT NULL,
    project      TEXT NOT NULL,
    environment  TEXT NOT NULL,
    PRIMARY KEY (user_name, role, project, environment)
);

CREATE TABLE api_tokens (
    id            TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    hash          TEXT    NOT NULL UNIQUE,
    scopes        TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER,
    revoked_ms    INTEGER,
    last_used_ms  INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_name, created_ms);

CREATE TABLE sessions (
    id_hash       TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expires ON sessions (expires_ms);

CREATE TABLE setup_tokens (
    hash        TEXT    PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    used_ms     INTEGER
);

CREATE TABLE approvals (
    deployment_id  INTEGER NOT NULL,
    user_name      TEXT    NOT NULL,
    at_ms          INTEGER NOT NULL,
    comment        TEXT    NOT NULL,
    PRIMARY KEY (deployment_id, user_name)
);

-- One row per version; environment '*' = every environment of the project. Values and
-- wrapped data keys are base64 of the sealed bytes (see sluice-secrets).
CREATE TABLE secrets (
    id           TEXT    PRIMARY KEY,
    project      TEXT    NOT NULL,
    environment  TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    kek_id       TEXT    NOT NULL,
    wrapped_dek  TEXT    NOT NULL,
    ciphertext   TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    deleted_ms   INTEGER,
    UNIQUE (project, environment, name, version)
);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
