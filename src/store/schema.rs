//! The schema and its migrations. `PRAGMA user_version` holds the version; each
//! migration runs once, in a transaction, in order. Never edit a released migration:
//! add the next one.

/// Migrations, index 0 is version 1.
pub const MIGRATIONS: &[&str] = &[
    // v1: reconciliation state.
    r#"
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    server      TEXT NOT NULL,
    job         TEXT NOT NULL,
    started_at  TEXT NOT NULL,            -- RFC 3339, UTC
    duration_ms INTEGER NOT NULL,
    outcome     TEXT NOT NULL,            -- ok | warning | critical | error | skipped
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_runs_by_job ON job_runs (server, job, id);

CREATE TABLE drift_state (
    server        TEXT PRIMARY KEY,
    confirmations INTEGER NOT NULL,       -- consecutive drifted reads
    first_seen    TEXT,                   -- first read of this drift streak
    signature     TEXT NOT NULL,          -- what drifted, to tell one drift from another
    updated_at    TEXT NOT NULL
);

CREATE TABLE sync_attempts (
    id     INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    at     TEXT NOT NULL                  -- written before the POST: a crash still counts
);
CREATE INDEX sync_attempts_by_server ON sync_attempts (server, at);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,
    server TEXT NOT NULL,
    action TEXT NOT NULL,                 -- sync | verify_reality | reset | delete | ...
    target TEXT NOT NULL,                 -- config.json, a key uuid, ...
    result TEXT NOT NULL,                 -- started | ok | failed | deferred | dry_run | ...
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_by_server ON audit_log (server, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

CREATE TABLE findings (
    id          INTEGER PRIMARY KEY,
    server      TEXT NOT NULL,
    job         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    severity    TEXT NOT NULL,            -- info | warning | critical
    summary     TEXT NOT NULL,
    details     TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    resolved_at TEXT                      -- NULL while open
);
CREATE UNIQUE INDEX findings_open ON findings (server, kind, subject) WHERE resolved_at IS NULL;
CREATE INDEX findings_by_job ON findings (server, job, resolved_at);

CREATE TABLE server_state (
    server               TEXT PRIMARY KEY,
    version              TEXT,
    last_up_at           TEXT,
    last_down_at         TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    updated_at           TEXT NOT NULL
);
"#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
