-- sluice schema, version 7 (SQLite): on-call overrides added through the API.
-- Keep in step with ../postgres/0007_oncall_overrides.sql.
-- Schedules live in sluice.yml; an override ("alice covers bob tonight") is added without a
-- commit, so it is stored here and merged into the schedule named `schedule` of `project`'s
-- production sluice.yml whenever the server asks who is on call. It covers
-- [starts_ms, ends_ms); a later override (higher id) wins where two overlap.
CREATE TABLE oncall_overrides (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT    NOT NULL,
    schedule    TEXT    NOT NULL,
    user_name   TEXT    NOT NULL,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    CHECK (ends_ms > starts_ms)
);
CREATE INDEX oncall_overrides_project_end ON oncall_overrides (project, ends_ms);
