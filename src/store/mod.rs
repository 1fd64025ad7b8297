//! The state store: one SQLite file (`state_dir/state.db`, WAL) holding what must
//! survive a restart: job runs, drift confirmations, the sync window, the audit log,
//! findings, per-server state. All SQL lives in this module; callers get typed
//! functions. The connection is behind a std mutex held only inside one call, never
//! across an `.await`.

mod alerts;
mod budget;
mod daily;
mod dataplane;
mod error;
mod lock;
mod quota;
mod quota_intents;
mod reader;
mod reality;
mod schema;
mod xray;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub use alerts::{OUTBOX_KEPT_DAYS, OutboxCounts, SinkHealth};
pub use budget::AttemptKind;
pub use daily::{
    AvailabilityRow, AvailabilitySample, AvailabilitySeries, DAILY_KEPT_DAYS, DailyUsage,
    DailyUsageRow, DeliveryState, ReportDelivery,
};
pub use dataplane::{DataplaneCommit, DataplaneMemory, PortRecord, PortState, StoredLink};
pub use error::StoreError;
pub use lock::{LOCK_FILE, LockError, StateDirLock};
pub use quota::QuotaCommit;
pub use quota_intents::{Intent, IntentState};
pub use reality::RealityMemory;
pub use xray::{XrayMemory, XrayState};

use crate::config::{JobKind, Severity};
use crate::finding::Finding;

/// The file name inside `state_dir`.
pub const DB_FILE: &str = "state.db";
/// Job runs kept per (server, job); older ones are pruned as new ones arrive.
pub const RUNS_KEPT_PER_JOB: i64 = 500;

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Ran, nothing worse than info found.
    Ok,
    /// Ran; the worst finding is a warning.
    Warning,
    /// Ran; the worst finding is critical.
    Critical,
    /// Could not complete (the server did not answer, or an internal error).
    Error,
    /// Not run: the previous run was still going, or the server is backed off.
    Skipped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Warning => "warning",
            RunOutcome::Critical => "critical",
            RunOutcome::Error => "error",
            RunOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Ok,
            RunOutcome::Warning,
            RunOutcome::Critical,
            RunOutcome::Error,
            RunOutcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One job run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub server: String,
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    pub detail: String,
}

/// The consecutive drifted reads of one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftMemory {
    pub confirmations: u32,
    pub first_seen: Option<DateTime<Utc>>,
    /// A stable description of what drifted (sorted uuids), to tell streaks apart.
    pub signature: String,
}

/// One action keywarden took (or meant to take) on a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub server: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub detail: String,
}

/// A finding as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFinding {
    pub server: String,
    pub job: String,
    pub kind: String,
    pub subject: String,
    pub severity: String,
    pub summary: String,
    pub details: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What recording a run's findings changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingChanges {
    /// Fingerprints new in this run.
    pub opened: Vec<String>,
    /// Fingerprints that were open and are again.
    pub continuing: Vec<String>,
    /// Open findings of this (server, job) this run no longer produced.
    pub resolved: Vec<StoredFinding>,
}

/// What keywarden last knew of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ServerState {
    pub server: String,
    pub version: Option<String>,
    pub last_up_at: Option<DateTime<Utc>>,
    pub last_down_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

/// The state store.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Timestamps are stored as RFC 3339 UTC with milliseconds, so text order is time order.
pub fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn parse_ts(
    path: &Path,
    what: &'static str,
    text: &str,
) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            what,
            value: text.to_string(),
        })
}

pub(super) fn parse_opt_ts(
    path: &Path,
    what: &'static str,
    text: Option<String>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|t| parse_ts(path, what, &t)).transpose()
}

impl Store {
    /// Open (creating on first start) `state_dir/state.db`, migrating it to this build's
    /// schema. A clear error when the directory cannot be created or written.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir_error = |reason: String| StoreError::Directory {
            dir: state_dir.to_path_buf(),
            reason,
        };
        std::fs::create_dir_all(state_dir).map_err(|err| dir_error(err.to_string()))?;
        // SQLite would report a bare "unable to open database file"; probe first so the
        // operator learns which directory and why.
        let probe = state_dir.join(".keywarden-write-test");
        std::fs::write(&probe, b"ok").map_err(|err| dir_error(format!("not writable: {err}")))?;
        let _ = std::fs::remove_file(&probe);
        Store::open_file(&state_dir.join(DB_FILE))
    }

    /// Open a database file directly.
    /// Open an existing database read-only (no migration, no writes): for looking at
    /// a store another process owns. `check_writable` fails on it.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, path)?;
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every row of `sql` as a tuple of its columns (rusqlite converts rows to tuples).
    pub(super) fn tuples<T>(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
    {
        self.with(|conn| {
            let mut statement = conn.prepare(sql)?;
            let rows = statement.query_map(args, |row| T::try_from(row))?;
            rows.collect()
        })
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A poisoned mutex means a panic mid-call; SQLite's own transaction rolled back,
        // so the connection is still consistent.
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether a write goes through now (for /healthz).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        // A real write, rolled back when the transaction drops: taking the lock alone
        // succeeds on a read-only database and says nothing about a full disk.
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO job_runs (server, job, started_at, duration_ms, outcome) VALUES ('', '', '', 0, 'ok')",
                [],
            )?;
            Ok(())
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.with(|conn| conn.pragma_query_value(None, "user_version", |row| row.get(0)))
    }

    // --- job runs ---

    pub fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO job_runs (server, job, started_at, duration_ms, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run.server, run.job, ts(run.started_at), run.duration_ms as i64, run.outcome.as_str(), run.detail],
            )?;
            tx.execute(
                "DELETE FROM job_runs WHERE server = ?1 AND job = ?2 AND id <= (
                     SELECT id FROM job_runs WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                params![run.server, run.job, RUNS_KEPT_PER_JOB],
            )?;
            tx.commit()
        })
    }

    /// The latest run of each (server, job), skipped ticks excluded.
    pub fn last_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.query_runs(
            "SELECT server, job, started_at, duration_ms, outcome, detail FROM job_runs
             WHERE id IN (SELECT MAX(id) FROM job_runs WHERE outcome != 'skipped' GROUP BY server, job)
             ORDER BY server, job",
            &[],
        )
    }

    /// The latest `limit` runs of one (server, job), newest first.
    pub fn recent_runs(
        &self,
        server: &str,
        job: JobKind,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.query_runs(
            "SELECT server, job, started_at, duration_ms, outcome, detail FROM job_runs
             WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT ?3",
            &[&server, &job.as_str(), &(limit as i64)],
        )
    }

    fn query_runs(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows: Vec<(String, String, String, i64, String, String)> = self.tuples(sql, args)?;
        rows.into_iter()
            .map(|(server, job, started, duration_ms, outcome, detail)| {
                Ok(RunRecord {
                    server,
                    job,
                    started_at: parse_ts(&self.path, "job_runs.started_at", &started)?,
                    duration_ms: duration_ms.max(0) as u64,
                    outcome: RunOutcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt {
                        path: self.path.clone(),
                        what: "job_runs.outcome",
                        value: outcome.clone(),
                    })?,
                    detail,
                })
            })
            .collect()
    }

    // --- drift confirmations ---

    pub fn drift(&self, server: &str) -> Result<DriftMemory, StoreError> {
        let row: Option<(i64, Option<String>, String)> = self.with(|conn| {
            conn.query_row(
                "SELECT confirmations, first_seen, signature FROM drift_state WHERE server = ?1",
                params![server],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        match row {
            None => Ok(DriftMemory::default()),
            Some((confirmations, first_seen, signature)) => Ok(DriftMemory {
                confirmations: confirmations.clamp(0, u32::MAX as i64) as u32,
                first_seen: parse_opt_ts(&self.path, "drift_state.first_seen", first_seen)?,
                signature,
            }),
        }
    }

    pub fn save_drift(
        &self,
        server: &str,
        memory: &DriftMemory,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO drift_state (server, confirmations, first_seen, signature, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (server) DO UPDATE SET confirmations = ?2, first_seen = ?3, signature = ?4, updated_at = ?5",
                params![server, memory.confirmations as i64, memory.first_seen.map(ts), memory.signature, ts(now)],
            )
            .map(|_| ())
        })
    }

    // --- sync window ---

    /// Record a sync attempt. Call it before the POST, so a crash mid-sync still
    /// spends budget.
    pub fn record_sync_attempt(&self, server: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sync_attempts (server, at) VALUES (?1, ?2)",
                params![server, ts(at)],
            )?;
            // Only the last hour matters; a day keeps `status` informative.
            tx.execute(
                "DELETE FROM sync_attempts WHERE at < ?1",
                params![ts(at - chrono::Duration::days(1))],
            )?;
            tx.commit()
        })
    }

    /// Attempts of the shared sync budget (syncs, Xray restarts, Reality fixes) at or
    /// after `since`, oldest first; attempts the server refused with 429 do not count.
    pub fn sync_attempts_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let rows: Vec<(String,)> = self.tuples(
            "SELECT at FROM sync_attempts WHERE server = ?1 AND at >= ?2 AND outcome != 'deferred' ORDER BY at",
            params![server, ts(since)],
        )?;
        rows.iter()
            .map(|(t,)| parse_ts(&self.path, "sync_attempts.at", t))
            .collect()
    }

    // --- audit log ---

    /// Append one entry; the table refuses updates and deletes.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO audit_log (at, server, action, target, result, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ts(entry.at), entry.server, entry.action, entry.target, entry.result, entry.detail],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// The latest `limit` audit entries (of one server, or all), newest first.
    pub fn recent_audit(
        &self,
        server: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_entries(
            "SELECT at, server, action, target, result, detail FROM audit_log
                 WHERE ?1 IS NULL OR server = ?1 ORDER BY id DESC LIMIT ?2",
            params![server, limit as i64],
        )
    }

    /// One server's audit entries at or after `since`, newest first.
    pub fn audit_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_entries(
            "SELECT at, server, action, target, result, detail FROM audit_log
                 WHERE server = ?1 AND at >= ?2 ORDER BY id DESC",
            params![server, ts(since)],
        )
    }

    fn audit_entries(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<(String, String, String, String, String, String)> = self.tuples(sql, args)?;
        rows.into_iter()
            .map(|(at, server, action, target, result, detail)| {
                Ok(AuditEntry {
                    at: parse_ts(&self.path, "audit_log.at", &at)?,
                    server,
                    action,
                    target,
                    result,
                    detail,
                })
            })
            .collect()
    }

    // --- findings ---

    /// Record the findings of one run of `job` on `server`: new ones open, present
    /// ones are refreshed, open ones of this (server, job) that are absent resolve.
    pub fn record_findings(
        &self,
        server: &str,
        job: JobKind,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<FindingChanges, StoreError> {
        let now_text = ts(now);
        let resolved_rows = self.with(|conn| {
            let tx = conn.transaction()?;
            let mut changes = (Vec::new(), Vec::new());
            for finding in findings {
                let updated = tx.execute(
                    "UPDATE findings SET job = ?4, severity = ?5, summary = ?6, details = ?7, last_seen = ?8
                     WHERE server = ?1 AND kind = ?2 AND subject = ?3 AND resolved_at IS NULL",
                    params![
                        finding.server,
                        finding.kind.as_str(),
                        finding.subject,
                        finding.job.as_str(),
                        finding.severity.as_str(),
                        finding.summary,
                        finding.details,
                        now_text
                    ],
                )?;
                if updated == 0 {
                    tx.execute(
                        "INSERT INTO findings (server, job, kind, subject, severity, summary, details, first_seen, last_seen)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                        params![
                            finding.server,
                            finding.job.as_str(),
                            finding.kind.as_str(),
                            finding.subject,
                            finding.severity.as_str(),
                            finding.summary,
                            finding.details,
                            now_text
                        ],
                    )?;
                    changes.0.push(finding.fingerprint());
                } else {
                    changes.1.push(finding.fingerprint());
                }
            }
            // Resolve what this job produced before and not now.
            let mut statement = tx.prepare(
                "SELECT id, kind, subject FROM findings WHERE server = ?1 AND job = ?2 AND resolved_at IS NULL",
            )?;
            let open: Vec<(i64, String, String)> = statement
                .query_map(params![server, job.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            drop(statement);
            let mut resolved_ids = Vec::new();
            for (id, kind, subject) in open {
                let still = findings.iter().any(|f| f.kind.as_str() == kind && f.subject == subject);
                if !still {
                    tx.execute("UPDATE findings SET resolved_at = ?2 WHERE id = ?1", params![id, now_text])?;
                    resolved_ids.push(id);
                }
            }
            tx.commit()?;
            Ok((changes, resolved_ids))
        })?;
        let ((opened, continuing), resolved_ids) = resolved_rows;
        let mut resolved = Vec::new();
        for id in resolved_ids {
            resolved.extend(self.findings_where("id = ?1", &[&id])?);
        }
        Ok(FindingChanges {
            opened,
            continuing,
            resolved,
        })
    }

    /// Open findings, of one server or all, most severe first.
    pub fn open_findings(&self, server: Option<&str>) -> Result<Vec<StoredFinding>, StoreError> {
        let mut found = match server {
            Some(server) => {
                self.findings_where("resolved_at IS NULL AND server = ?1", &[&server])?
            }
            None => self.findings_where("resolved_at IS NULL", &[])?,
        };
        let rank = |s: &str| match s {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        };
        found.sort_by(|a, b| {
            (&a.server, rank(&a.severity), &a.kind).cmp(&(&b.server, rank(&b.severity), &b.kind))
        });
        Ok(found)
    }

    fn findings_where(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredFinding>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
        );
        let sql = format!(
            "SELECT server, job, kind, subject, severity, summary, details, first_seen, last_seen, resolved_at
             FROM findings WHERE {condition} ORDER BY id"
        );
        let rows: Vec<Row> = self.tuples(&sql, args)?;
        rows.into_iter()
            .map(
                |(
                    server,
                    job,
                    kind,
                    subject,
                    severity,
                    summary,
                    details,
                    first,
                    last,
                    resolved,
                )| {
                    Ok(StoredFinding {
                        server,
                        job,
                        kind,
                        subject,
                        severity,
                        summary,
                        details,
                        first_seen: parse_ts(&self.path, "findings.first_seen", &first)?,
                        last_seen: parse_ts(&self.path, "findings.last_seen", &last)?,
                        resolved_at: parse_opt_ts(&self.path, "findings.resolved_at", resolved)?,
                    })
                },
            )
            .collect()
    }

    // --- server state ---

    /// Note that the server answered (with its version).
    pub fn note_server_up(
        &self,
        server: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO server_state (server, version, last_up_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, ?3, 0, NULL, ?3)
                 ON CONFLICT (server) DO UPDATE SET version = ?2, last_up_at = ?3, consecutive_failures = 0,
                     last_error = NULL, updated_at = ?3",
                params![server, version, ts(now)],
            )
            .map(|_| ())
        })
    }

    /// Note a failed health check; returns the consecutive failure count (survives
    /// restarts, so a restart does not hide an outage).
    pub fn note_server_down(
        &self,
        server: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "INSERT INTO server_state (server, last_down_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, 1, ?3, ?2)
                 ON CONFLICT (server) DO UPDATE SET last_down_at = ?2,
                     consecutive_failures = consecutive_failures + 1, last_error = ?3, updated_at = ?2
                 RETURNING consecutive_failures",
                params![server, ts(now), error],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.clamp(0, u32::MAX as i64) as u32)
        })
    }

    pub fn server_states(&self) -> Result<Vec<ServerState>, StoreError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = self.tuples("SELECT server, version, last_up_at, last_down_at, consecutive_failures, last_error FROM server_state ORDER BY server", &[])?;
        rows.into_iter()
            .map(|(server, version, up, down, failures, last_error)| {
                Ok(ServerState {
                    server,
                    version,
                    last_up_at: parse_opt_ts(&self.path, "server_state.last_up_at", up)?,
                    last_down_at: parse_opt_ts(&self.path, "server_state.last_down_at", down)?,
                    consecutive_failures: failures.clamp(0, u32::MAX as i64) as u32,
                    last_error,
                })
            })
            .collect()
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql)?;
    let supported = schema::current_version();
    if found > supported {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    for (index, migration) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(path = %path.display(), version, "state store migrated");
    }
    Ok(())
}

/// Severity as stored, back to the type (unknown text reads as warning).
pub fn parse_severity(text: &str) -> Severity {
    match text {
        "info" => Severity::Info,
        "critical" => Severity::Critical,
        _ => Severity::Warning,
    }
}

#[cfg(test)]
mod tests;
