-- sluice schema, version 2 (SQLite): deploy targets and deployments.
-- Keep in step with ../postgres/0002_deploys.sql.

-- The desired and the stable (serving) release per service and environment: the controller
-- converges the runtime to `desired_version`.
CREATE TABLE targets (
    project          TEXT    NOT NULL,
    service          TEXT    NOT NULL,
    env              TEXT    NOT NULL,
    desired_version  INTEGER,
    stable_version   INTEGER,
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (project, service, env)
);

CREATE TABLE deployments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project       TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    env           TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    from_version  INTEGER,
    strategy      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    phase         TEXT    NOT NULL,
    reason        TEXT,
    state         TEXT    NOT NULL,
    run_trigger   TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    finished_ms   INTEGER
);
CREATE INDEX deployments_target_id ON deployments (project, service, env, id);
CREATE INDEX deployments_status_id ON deployments (status, id);
