//! The state store: one SQLite file (`state_dir/state.db`, WAL) holding what must
//! survive a restart: job runs, drift confirmations, the sync window, the audit log,
//! findings, per-server state. All SQL lives in this module; callers get typed
//! functions. The connection is behind a std mutex held only inside one call, never
//! across an `.await`.

mod alerts;
mod audit;
mod error;
mod findings;
mod quota;
mod quota_intents;
mod runs;
mod schema;
mod servers;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;
use serde::Serialize;

pub use alerts::{OUTBOX_KEPT_DAYS, OutboxCounts, SinkHealth};
pub use error::StoreError;
pub use quota::QuotaCommit;
pub use quota_intents::{Intent, IntentState};

use crate::config::Severity;

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
