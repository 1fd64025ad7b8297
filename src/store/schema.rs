//! The schema and its migrations. `PRAGMA user_version` holds the version; each
//! migration runs once, in a transaction, in order. Never edit a released migration:
//! add the next one. Longer than 400 lines on purpose: the schema's history is read top
//! to bottom in one place.

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
    // v2: alerts.
    ALERT_SCHEMA,
    // v3: traffic accounting and quotas.
    QUOTA_SCHEMA,
    // v4: audit entries of one server since a time (sync window, per-run counts).
    "CREATE INDEX audit_log_by_server_at ON audit_log (server, at);",
    // v5: what the usage report reads.
    REPORT_SCHEMA,
    // v6: the data plane: Xray's state, 2.x Reality streaks, VLESS links and ports, and
    // what kind of restart each entry of the shared sync budget was.
    DATAPLANE_SCHEMA,
    // v7: sync attempts say how they ended (the budget and the 429 streak read them).
    SYNC_ATTEMPT_OUTCOMES,
    // v8: quota intents: a typed outcome, the call's error, the period they belong to.
    QUOTA_INTENT_OUTCOMES,
    // v9: per-(server, job) leases across processes, and the row /healthz writes.
    LEASES_AND_PROBE,
    // v10: the ledger's reading time once per server (a steady run rewrites no row).
    LEDGER_READ_STAMP,
    // v11: retention: the audit log may lose entries older than a recorded horizon.
    AUDIT_RETENTION,
];

/// Leases: which process runs a job on a server now (the daemon and a `check` beside it
/// never run the same one at once); and the one row the health probe rewrites, so that
/// /healthz proves a committed write rather than one rolled back.
pub const LEASES_AND_PROBE: &str = r#"
CREATE TABLE job_leases (
    server      TEXT NOT NULL,
    job         TEXT NOT NULL,
    holder      TEXT NOT NULL,            -- "keywarden run, pid 4242, runner 1"
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL,            -- renewed while the run goes on; after it, free to take
    PRIMARY KEY (server, job)
);

CREATE TABLE store_probe (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    at     TEXT NOT NULL,                 -- the last probe's commit
    writes INTEGER NOT NULL               -- probes committed so far
);
"#;

/// Retention (see `store/retention.rs`): settings of the store itself, and the audit
/// log's delete guard. The audit log stays append-only (no update, ever); a delete goes
/// through only for an entry stamped before the horizon in `store_settings`
/// (`audit_trim_before`), which the daily maintenance sets from `[retention].audit`. That
/// horizon cannot be set within 30 days of the database's own clock, so neither a bad
/// clock nor a stray statement can empty the log; without it nothing may be deleted.
pub const AUDIT_RETENTION: &str = r#"
CREATE TABLE store_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER store_settings_audit_horizon_insert BEFORE INSERT ON store_settings
    WHEN NEW.name = 'audit_trim_before'
        AND NEW.value > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-30 days')
    BEGIN SELECT RAISE(ABORT, 'the audit log keeps at least 30 days'); END;
CREATE TRIGGER store_settings_audit_horizon_update BEFORE UPDATE ON store_settings
    WHEN NEW.name = 'audit_trim_before'
        AND NEW.value > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-30 days')
    BEGIN SELECT RAISE(ABORT, 'the audit log keeps at least 30 days'); END;
DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN OLD.at >= COALESCE((SELECT value FROM store_settings WHERE name = 'audit_trim_before'), '')
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (only entries older than the retention horizon may be deleted)'); END;
CREATE INDEX audit_log_by_at ON audit_log (at);
"#;

/// The time of a server's last quota reading, kept once: a ledger row whose `read_at` is
/// NULL was read then (see `store/sqlite/quota.rs`). Rows written before keep their own.
pub const LEDGER_READ_STAMP: &str = r#"
ALTER TABLE quota_servers ADD COLUMN ledger_read_at TEXT;
"#;

/// The data-plane tables (health's Xray memory, reality's 2.x streak, the dataplane job's
/// links, ports and rotation) and the kind/outcome of each sync-budget attempt.
pub const DATAPLANE_SCHEMA: &str = r#"
-- One hourly budget per server, shared by every action that restarts Xray.
ALTER TABLE sync_attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'sync';       -- sync | xray_restart | reality_fix
ALTER TABLE sync_attempts ADD COLUMN outcome TEXT NOT NULL DEFAULT 'started'; -- started | deferred (429: did not run)

-- health (2.x): Xray's service state as GET /health last said, and the stopped streak.
CREATE TABLE xray_state (
    server           TEXT PRIMARY KEY,
    state            TEXT,                -- running | stopped; NULL: never read
    stopped_reads    INTEGER NOT NULL,    -- consecutive reads that said stopped
    first_stopped_at TEXT,
    checked_at       TEXT,
    updated_at       TEXT NOT NULL
);

-- reality (2.x): consecutive invalid reads, and the problem a fix-reality-keys did not cure.
CREATE TABLE reality_state (
    server          TEXT PRIMARY KEY,
    confirmations   INTEGER NOT NULL,
    first_seen      TEXT,
    signature       TEXT NOT NULL,        -- what is invalid, to tell one problem from another
    fixed_signature TEXT,                 -- the problem the last fix was for
    fixed_at        TEXT,
    updated_at      TEXT NOT NULL
);

-- dataplane: each key's vless:// link, fetched once and kept until the key changes.
CREATE TABLE vless_links (
    server     TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_sig    TEXT NOT NULL,             -- uuid|port|short_id|active: a change refetches
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    sni        TEXT,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (server, key_id)
);

-- dataplane: the last probe of each distinct host:port.
CREATE TABLE vless_ports (
    server     TEXT NOT NULL,
    endpoint   TEXT NOT NULL,             -- host:port
    state      TEXT NOT NULL,             -- open | closed | tls_failed | cert_invalid
    detail     TEXT NOT NULL DEFAULT '',
    latency_ms INTEGER,
    probed_at  TEXT NOT NULL,
    PRIMARY KEY (server, endpoint)
);

-- dataplane: where the next run continues when a server has more ports than one run probes.
CREATE TABLE dataplane_state (
    server     TEXT PRIMARY KEY,
    cursor     TEXT,                      -- the last endpoint probed
    updated_at TEXT NOT NULL
);
"#;

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

/// The quota job's tables (traffic accounting). Kept apart so that migrations from
/// parallel branches can be renumbered at merge without touching their text.
pub const QUOTA_SCHEMA: &str = r#"
-- The usage ledger: one row per key and server; keywarden's own truth about traffic.
CREATE TABLE quota_ledger (
    server        TEXT NOT NULL,
    uuid          TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    counter       INTEGER,                -- last counter seen; NULL: none yet (idle 1.x key)
    used          INTEGER NOT NULL,       -- bytes counted against the limit (this allowance)
    period_total  INTEGER NOT NULL,       -- bytes of the current period
    period_start  TEXT NOT NULL,
    adopted       INTEGER NOT NULL,       -- 1 until the key's first full period
    warned        INTEGER NOT NULL,       -- highest warn_at level raised (0: none)
    exceeded_at   TEXT,                   -- 100% crossed in this allowance
    exceed_resets INTEGER NOT NULL,       -- on_exceed resets in this period
    delete_due    TEXT,                   -- on_exceed = delete: end of the grace
    expect_drop   INTEGER NOT NULL,       -- a reset was sent, not yet confirmed by a reading
    last_reset    TEXT,                   -- keywarden last started a period or allowance
    first_seen    TEXT NOT NULL,
    read_at       TEXT,
    changed_at    TEXT,
    gone_at       TEXT,                   -- the server no longer lists the key
    PRIMARY KEY (server, uuid)
);

-- Finished periods.
CREATE TABLE quota_history (
    id           INTEGER PRIMARY KEY,
    server       TEXT NOT NULL,
    uuid         TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    total        INTEGER NOT NULL,        -- bytes in the period
    used         INTEGER NOT NULL,        -- bytes of its last allowance
    adopted      INTEGER NOT NULL         -- the key was adopted during this period
);
CREATE INDEX quota_history_by_key ON quota_history (server, uuid, period_start);

-- Resets and deletes: written (pending) with the ledger change that decided them, marked
-- sending right before the remote call, done after verification. intent_key makes each
-- happen once per key and period (or allowance).
CREATE TABLE quota_intents (
    id             INTEGER PRIMARY KEY,
    server         TEXT NOT NULL,
    uuid           TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    name           TEXT NOT NULL,
    action         TEXT NOT NULL,         -- reset | delete
    reason         TEXT NOT NULL,         -- boundary | exceeded | grace_ended
    intent_key     TEXT NOT NULL,
    counter_before INTEGER,
    state          TEXT NOT NULL,         -- pending | sending | done | failed
    outcome        TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (server, uuid, intent_key)
);
CREATE INDEX quota_intents_open ON quota_intents (server, state);

-- Per server: what the quota job remembers between runs.
CREATE TABLE quota_servers (
    server                   TEXT PRIMARY KEY,
    first_run_at             TEXT,
    api_version              TEXT,
    consecutive_failures     INTEGER NOT NULL DEFAULT 0,
    traffic_changed_at       TEXT,
    sync_noted_at            TEXT,        -- config_sync restarted Xray (drops are expected)
    resets_suspended_version TEXT,        -- counter_resets = auto: resets ignored by this version
    updated_at               TEXT NOT NULL
);

-- Notices raised once per server and period (the reset_not_applied digest).
CREATE TABLE quota_notices (
    server     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    period_key TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (server, kind, period_key)
);
"#;

/// Sync attempts say how they ended: `started` (written before the POST; it stays so if
/// the process died mid-action), `deferred` (the server refused with 429 and did not act)
/// or `completed` (the server answered). v6 added the column with `started` for every row
/// and `deferred` for refusals from then on; before v6 a refused sync was known only from
/// the audit log (an entry `deferred` stamped with the attempt's time): carry that
/// forward once, and take the attempts already made as completed.
pub const SYNC_ATTEMPT_OUTCOMES: &str = r#"
UPDATE sync_attempts SET outcome = 'deferred' WHERE outcome = 'started' AND kind = 'sync' AND EXISTS (
    SELECT 1 FROM audit_log a
    WHERE a.server = sync_attempts.server AND a.action = 'sync' AND a.result = 'deferred'
      AND a.at = sync_attempts.at);
UPDATE sync_attempts SET outcome = 'completed' WHERE outcome = 'started';
"#;

/// Quota intents: the outcome becomes a name (NULL while open) with the call's error in a
/// column of its own (it was "failed: <error>" in one text), and the period an intent
/// belongs to (and an exceeded reset's allowance) become columns from which `intent_key`
/// is derived, instead of text to be cut out of it. The old rows are carried over once
/// (the timestamp in a key is 24 characters wide); the two columns' defaults only serve
/// this step, every insert sets them.
pub const QUOTA_INTENT_OUTCOMES: &str = r#"
ALTER TABLE quota_intents RENAME COLUMN outcome TO outcome_text;
ALTER TABLE quota_intents ADD COLUMN outcome TEXT;      -- NULL while open; applied | not_applied | failed | ...
ALTER TABLE quota_intents ADD COLUMN error TEXT;        -- the call's error, when there was one
ALTER TABLE quota_intents ADD COLUMN period_start TEXT NOT NULL DEFAULT '';  -- the period the intent belongs to
ALTER TABLE quota_intents ADD COLUMN allowance INTEGER NOT NULL DEFAULT 0;   -- exceeded: the allowance it ends (from 1)
UPDATE quota_intents SET
    period_start = substr(intent_key, instr(intent_key, ' ') + 1, 24),
    allowance = CASE WHEN instr(intent_key, '#') > 0
        THEN CAST(substr(intent_key, instr(intent_key, '#') + 1) AS INTEGER) ELSE 0 END,
    outcome = CASE WHEN outcome_text = '' THEN NULL
        WHEN instr(outcome_text, ':') > 0 THEN substr(outcome_text, 1, instr(outcome_text, ':') - 1)
        ELSE outcome_text END,
    error = CASE WHEN instr(outcome_text, ': ') > 0
        THEN substr(outcome_text, instr(outcome_text, ': ') + 2) END;
ALTER TABLE quota_intents DROP COLUMN outcome_text;
"#;

/// The usage report's tables: daily traffic per key and server, hourly availability
/// samples per server and series, and report deliveries per period and sink.
pub const REPORT_SCHEMA: &str = r#"
-- Bytes a key added on a day (the agent's time zone), summed over the quota runs of that
-- day. Kept 400 days.
CREATE TABLE usage_daily (
    server TEXT NOT NULL,
    day    TEXT NOT NULL,                 -- YYYY-MM-DD
    uuid   TEXT NOT NULL,
    key_id TEXT NOT NULL,
    name   TEXT NOT NULL,
    bytes  INTEGER NOT NULL,
    PRIMARY KEY (server, day, uuid)
);
CREATE INDEX usage_daily_by_day ON usage_daily (day);

-- Checks per server, series (api; data-plane checks add theirs) and UTC hour. Kept 400 days.
CREATE TABLE availability_hourly (
    server TEXT NOT NULL,
    series TEXT NOT NULL,
    hour   TEXT NOT NULL,                 -- RFC 3339, the start of the hour
    checks INTEGER NOT NULL,
    up     INTEGER NOT NULL,
    PRIMARY KEY (server, series, hour)
);
CREATE INDEX availability_hourly_by_hour ON availability_hourly (hour);

-- Which scheduled report reached which sink: a restart neither re-sends nor forgets one.
CREATE TABLE report_deliveries (
    period     TEXT NOT NULL,             -- 2026-W48 | 2026-11
    sink       TEXT NOT NULL,
    state      TEXT NOT NULL,             -- delivered | failed
    attempts   INTEGER NOT NULL,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (period, sink)
);
"#;

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
