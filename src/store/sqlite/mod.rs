//! The SQLite backend: one file (`state_dir/state.db`, WAL). Every SQL statement and
//! every SQLite detail lives below this module. The connection is behind a std mutex
//! that is taken only on tokio's blocking threads (`SqliteStore::call`), never on an
//! async worker and never across an `.await`.

mod alerts;
mod audit;
mod columns;
mod dataplane;
mod findings;
mod leases;
mod quota;
mod quota_intents;
mod reader;
mod report;
mod retention;
mod runs;
mod servers;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::{
    AlertLog, AuditLog, Backend, DataplaneLog, FindingLog, LeaseLog, QuotaLog, RealityLog,
    ReportLog, RetentionLog, RunLog, ServerLog, StoreError, StoreFuture, SyncLog, schema,
};

/// The file name inside `state_dir`.
pub const DB_FILE: &str = "state.db";

/// The open database: its path (for messages), the one connection, and which file it
/// opened (`None` in memory).
struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
    opened: Option<FileId>,
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Db {
    /// Whether the file at `path` is still the one opened. Deleting `state.db` while the
    /// daemon ran went unnoticed: it wrote on into the unlinked file, and at the stop the
    /// ledger, intents, audit log and alert state were gone. An unlinked file (nlink 0)
    /// is no longer at its path, and a replaced one has another inode; SQLite's own
    /// handle keeps the old inode alive, so its number cannot be reused meanwhile. (The
    /// path, not a second descriptor of our own: closing any descriptor of the file
    /// would drop SQLite's POSIX locks on it.)
    fn check_intact(&self) -> Result<(), StoreError> {
        let Some(opened) = self.opened else {
            return Ok(());
        };
        let reason = match FileId::of(&self.path) {
            Ok(now) if now == opened => return Ok(()),
            Ok(_) => "was replaced by another file".to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => "was deleted".to_string(),
            Err(error) => format!("can no longer be found ({error})"),
        };
        Err(StoreError::Lost {
            path: self.path.clone(),
            reason,
        })
    }

    /// Run `f` on the connection (blocking).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A poisoned mutex means a panic mid-call; SQLite's own transaction rolled back,
        // so the connection is still consistent.
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn).map_err(|source| StoreError::from_sqlite(&self.path, source))
    }
}

/// The SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
    cache: Arc<CacheFit>,
}

/// Page cache bytes per ledger row: the row and its key in the primary-key index, with
/// room for the day's `usage_daily` rows a busy key adds (about 250 + 60 + 150 bytes at
/// the pages' usual fill).
const CACHE_BYTES_PER_LEDGER_ROW: i64 = 640;
/// SQLite's default (2 MiB) is the floor; 64 MiB, a ledger of about 100 000 keys, the
/// ceiling: past it the cache would crowd out everything else the daemon keeps.
const CACHE_MIN_KIB: i64 = 2 * 1024;
const CACHE_MAX_KIB: i64 = 64 * 1024;
/// Quota commits between two recounts of the ledger (a count reads its whole index).
const COMMITS_PER_RECOUNT: u64 = 64;

/// The page cache in KiB for a ledger of `rows` rows: every page a quota run reads and
/// writes stays in memory, so a commit does not read back pages it has just evicted
/// (at 45 000 keys the default cache made a run read 530 MB).
pub(crate) fn cache_kib(rows: i64) -> i64 {
    (rows.saturating_mul(CACHE_BYTES_PER_LEDGER_ROW) / 1024).clamp(CACHE_MIN_KIB, CACHE_MAX_KIB)
}

/// Keeps `PRAGMA cache_size` fitted to the ledger as it grows.
#[derive(Default)]
struct CacheFit {
    rows: std::sync::atomic::AtomicI64,
    commits: std::sync::atomic::AtomicU64,
}

impl CacheFit {
    /// After a quota commit of `entries` rows: recount now and then, and at once when
    /// one server alone has more rows than the cache was sized for.
    fn after_commit(&self, conn: &Connection, entries: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let commits = self.commits.fetch_add(1, Relaxed);
        let known = self.rows.load(Relaxed);
        if entries as i64 > known || commits.is_multiple_of(COMMITS_PER_RECOUNT) {
            self.fit(conn);
        }
    }

    fn fit(&self, conn: &Connection) {
        let Ok(rows) = conn.query_row("SELECT COUNT(*) FROM quota_ledger", [], |row| {
            row.get::<_, i64>(0)
        }) else {
            return;
        };
        self.rows.store(rows, std::sync::atomic::Ordering::Relaxed);
        // A cache size that cannot be set leaves SQLite's default: slower, still right.
        let _ = conn.pragma_update(None, "cache_size", -cache_kib(rows));
    }
}

impl SqliteStore {
    /// Open (creating on first start) `state_dir/state.db` and migrate it.
    pub fn open(state_dir: &Path) -> Result<SqliteStore, StoreError> {
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
        SqliteStore::open_file(&state_dir.join(DB_FILE))
    }

    /// Open (creating) a database file and migrate it.
    pub fn open_file(path: &Path) -> Result<SqliteStore, StoreError> {
        let sql = |source| StoreError::from_sqlite(path, source);
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        // A new database hands free pages back (`incremental_vacuum` in the maintenance);
        // on one that already has tables this changes nothing (SQLite reuses its free
        // pages instead): see docs/state-store.md.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, path)?;
        let store = SqliteStore::over(path, conn);
        store.db.with(|conn| {
            store.cache.fit(conn);
            Ok(())
        })?;
        Ok(store)
    }

    /// Open an existing database read-only: no migration, no writes.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let sql = |source| StoreError::from_sqlite(path, source);
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        Ok(SqliteStore::over(path, conn))
    }

    fn over(path: &Path, conn: Connection) -> SqliteStore {
        SqliteStore {
            db: Arc::new(Db {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                opened: FileId::of(path).ok(),
            }),
            cache: Arc::default(),
        }
    }

    /// Run `f` on the connection on a blocking thread.
    fn call<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move {
            let path = db.path.clone();
            tokio::task::spawn_blocking(move || db.with(f))
                .await
                .unwrap_or_else(|error| Err(StoreError::Task { path, error }))
        })
    }
}

impl Backend for SqliteStore {
    fn runs(&self) -> &dyn RunLog {
        self
    }

    fn sync(&self) -> &dyn SyncLog {
        self
    }

    fn audit(&self) -> &dyn AuditLog {
        self
    }

    fn findings(&self) -> &dyn FindingLog {
        self
    }

    fn servers(&self) -> &dyn ServerLog {
        self
    }

    fn quota(&self) -> &dyn QuotaLog {
        self
    }

    fn reality(&self) -> &dyn RealityLog {
        self
    }

    fn dataplane(&self) -> &dyn DataplaneLog {
        self
    }

    fn alerts(&self) -> &dyn AlertLog {
        self
    }

    fn report(&self) -> &dyn ReportLog {
        self
    }

    fn retention(&self) -> &dyn RetentionLog {
        self
    }

    fn leases(&self) -> &dyn LeaseLog {
        self
    }

    fn check_writable(&self) -> StoreFuture<'_, ()> {
        // A committed write: a write rolled back before the commit never reaches the WAL,
        // so it passed on a full disk and in an immutable directory (/healthz said 200
        // while every write failed).
        let db = self.db.clone();
        Box::pin(async move {
            let path = db.path.clone();
            tokio::task::spawn_blocking(move || {
                db.check_intact()?;
                let now = crate::model::stamp(chrono::Utc::now());
                db.with(|conn| {
                    conn.execute(
                        "INSERT INTO store_probe (id, at, writes) VALUES (1, ?1, 1)
                         ON CONFLICT (id) DO UPDATE SET at = excluded.at, writes = writes + 1",
                        [now],
                    )
                    .map(|_| ())
                })
            })
            .await
            .unwrap_or_else(|error| Err(StoreError::Task { path, error }))
        })
    }

    fn check_intact(&self) -> StoreFuture<'_, ()> {
        let db = self.db.clone();
        Box::pin(async move {
            let path = db.path.clone();
            tokio::task::spawn_blocking(move || db.check_intact())
                .await
                .unwrap_or_else(|error| Err(StoreError::Task { path, error }))
        })
    }

    fn schema_version(&self) -> StoreFuture<'_, i64> {
        self.call(|conn| conn.pragma_query_value(None, "user_version", |row| row.get(0)))
    }

    fn location(&self) -> String {
        self.db.path.display().to_string()
    }
}

/// Bring the database to this build's schema: each migration once, in order, in a
/// transaction of its own.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::from_sqlite(path, source);
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

#[cfg(test)]
mod tests;
