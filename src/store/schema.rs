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
    // v2: alerts (the quota issue appends its own; the order is settled at merge).
    ALERT_SCHEMA,
];

/// Alert lifecycle per fingerprint, the outbox per sink, and sink health.
pub const ALERT_SCHEMA: &str = r#"
CREATE TABLE alert_state (
    fingerprint            TEXT PRIMARY KEY,   -- server/kind/subject
    server                 TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    subject                TEXT NOT NULL,
    status                 TEXT NOT NULL,      -- firing | resolved
    severity               TEXT NOT NULL,
    summary                TEXT NOT NULL,
    details                TEXT NOT NULL,
    started_at             TEXT NOT NULL,
    ended_at               TEXT,
    last_notified_at       TEXT,               -- when a notice was last queued
    last_notified_severity TEXT,               -- NULL: no resolved notice owed
    max_notified_severity  TEXT,               -- routes the resolved notice
    held                   INTEGER NOT NULL DEFAULT 0,  -- inhibited (server unreachable)
    updated_at             TEXT NOT NULL
);
CREATE INDEX alert_state_by_server ON alert_state (server);

CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    sink            TEXT NOT NULL,
    server          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    reason          TEXT NOT NULL,             -- new | repeat | changed | released | resolved | test
    alert           TEXT NOT NULL,             -- the alert as JSON, as it was when queued
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,             -- group_wait, then backoff
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    delivered_at    TEXT,
    dropped_at      TEXT,
    drop_reason     TEXT                       -- max_age | permanent failure | superseded | test
);
CREATE INDEX alert_outbox_pending ON alert_outbox (sink, id)
    WHERE delivered_at IS NULL AND dropped_at IS NULL;

CREATE TABLE sink_health (
    sink                 TEXT PRIMARY KEY,
    failing              INTEGER NOT NULL DEFAULT 0,  -- notifications_failing raised
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    last_attempt_at      TEXT,
    last_success_at      TEXT
);
"#;

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
