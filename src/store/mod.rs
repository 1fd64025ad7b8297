//! The state store: what must survive a restart (job runs, the drift streak and sync
//! attempts, the audit log, findings, server state, the quota ledger and intents, alert
//! states and the outbox, what the usage report reads, the data plane's memories), as
//! one repository per concern behind a small async interface. `lock` keeps the state directory to one daemon.
//!
//! `Store` is a cheap handle (`Clone`) over a `Backend`, which implements every
//! repository trait. Repositories take and return `crate::model` records; no SQL and no
//! backend type crosses the interface. Each method returns a boxed `Send` future, so a
//! backend that is async by nature (PostgreSQL) implements it directly, and one that
//! blocks (SQLite, in `sqlite/`) does its work on tokio's blocking threads, never on the
//! async workers. See ARCHITECTURE.md for why boxed futures.

mod alerts;
mod audit;
mod dataplane;
mod error;
mod findings;
mod leases;
mod lock;
pub mod postgres;
mod quota;
mod reality;
mod report;
mod retention;
mod runs;
mod schema;
mod servers;
mod sqlite;
mod sync;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use alerts::{AlertLog, OUTBOX_KEPT_DAYS};
pub use audit::AuditLog;
pub use dataplane::{DataplaneCommit, DataplaneLog};
pub use error::StoreError;
pub use findings::FindingLog;
pub use leases::{LeaseGrant, LeaseLog};
pub use lock::{DISPATCH_LOCK_FILE, DispatchLock, LOCK_FILE, LockError, StateDirLock};
pub use quota::{QuotaCommit, QuotaLog};
pub use reality::RealityLog;
pub use report::{DAILY_KEPT_DAYS, ReportLog};
pub use retention::{Horizons, RetentionLog, Trimmed};
pub use runs::{PRUNE_BATCH, RUNS_KEPT_PER_JOB, RunLog};
pub use servers::ServerLog;
pub use sqlite::DB_FILE;
pub use sync::SyncLog;

/// The schema version this build writes (older stores are migrated to it on open).
pub fn latest_schema_version() -> i64 {
    schema::current_version()
}

/// What a store call returns: a future that may be sent across threads.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A storage backend: one implementation of every repository.
pub trait Backend: Send + Sync + 'static {
    fn runs(&self) -> &dyn RunLog;
    fn sync(&self) -> &dyn SyncLog;
    fn audit(&self) -> &dyn AuditLog;
    fn findings(&self) -> &dyn FindingLog;
    fn servers(&self) -> &dyn ServerLog;
    fn quota(&self) -> &dyn QuotaLog;
    fn alerts(&self) -> &dyn AlertLog;
    fn report(&self) -> &dyn ReportLog;
    fn reality(&self) -> &dyn RealityLog;
    fn dataplane(&self) -> &dyn DataplaneLog;
    fn retention(&self) -> &dyn RetentionLog;
    fn leases(&self) -> &dyn LeaseLog;
    /// Whether a write goes through now (for /healthz): a real write, committed (one
    /// rolled back never reached the disk and proved nothing), after `check_intact`.
    fn check_writable(&self) -> StoreFuture<'_, ()>;
    /// Whether the data is still where it was opened: SQLite's file at its path must be
    /// the one open (not deleted, not replaced); `StoreError::Lost` otherwise. A backend
    /// without such a file has nothing to check.
    fn check_intact(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// The schema version of the data.
    fn schema_version(&self) -> StoreFuture<'_, i64>;
    /// Where the data lives, for messages ("/var/lib/keywarden/state.db").
    fn location(&self) -> String;
}

/// The state store: a handle to its backend, cheap to clone and share.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.backend.location())
            .finish()
    }
}

impl Store {
    /// Open (creating on first start) the SQLite store `state_dir/state.db`, migrating it
    /// to this build's schema. A clear error when the directory cannot be created or
    /// written. It blocks: async callers run it on a blocking thread.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        sqlite::SqliteStore::open(state_dir).map(Store::with_backend)
    }

    /// Open (and migrate) a SQLite database file directly.
    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        sqlite::SqliteStore::open_file(path).map(Store::with_backend)
    }

    /// Open an existing SQLite database read-only (no migration, no writes): for looking
    /// at a store another process owns. `check_writable` fails on it.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        sqlite::SqliteStore::open_read_only(path).map(Store::with_backend)
    }

    /// The store in `state_dir` only to look at it (`status`, `usage`): never a write or
    /// a migration, so it works beside the daemon and on a read-only state directory; an
    /// empty store when there is none yet.
    pub fn open_for_reading(state_dir: &Path) -> Result<Store, StoreError> {
        sqlite::SqliteStore::open_for_reading(state_dir).map(Store::with_backend)
    }

    /// Connect to the PostgreSQL store of `[store.postgres]` and bring its schema to this
    /// build's version (under the migration lock: agents starting together are safe).
    pub async fn open_postgres(pg: &crate::config::PgConfig) -> Result<Store, StoreError> {
        let (store, _) = postgres::PgStore::open(pg).await?;
        Ok(Store::with_backend(store))
    }

    /// The PostgreSQL store only to look at it (`status`, `usage`): no migration; its
    /// schema must be this build's version.
    pub async fn open_postgres_for_reading(
        pg: &crate::config::PgConfig,
    ) -> Result<Store, StoreError> {
        postgres::PgStore::open_for_reading(pg)
            .await
            .map(Store::with_backend)
    }

    /// A store over any backend.
    pub fn with_backend(backend: impl Backend) -> Store {
        Store {
            backend: Arc::new(backend),
        }
    }

    pub fn runs(&self) -> &dyn RunLog {
        self.backend.runs()
    }

    pub fn sync(&self) -> &dyn SyncLog {
        self.backend.sync()
    }

    pub fn audit(&self) -> &dyn AuditLog {
        self.backend.audit()
    }

    pub fn findings(&self) -> &dyn FindingLog {
        self.backend.findings()
    }

    pub fn servers(&self) -> &dyn ServerLog {
        self.backend.servers()
    }

    pub fn quota(&self) -> &dyn QuotaLog {
        self.backend.quota()
    }

    pub fn alerts(&self) -> &dyn AlertLog {
        self.backend.alerts()
    }

    pub fn report(&self) -> &dyn ReportLog {
        self.backend.report()
    }

    pub fn reality(&self) -> &dyn RealityLog {
        self.backend.reality()
    }

    pub fn dataplane(&self) -> &dyn DataplaneLog {
        self.backend.dataplane()
    }

    pub fn retention(&self) -> &dyn RetentionLog {
        self.backend.retention()
    }

    pub fn leases(&self) -> &dyn LeaseLog {
        self.backend.leases()
    }

    /// Whether the data is still where it was opened (see `Backend::check_intact`).
    pub async fn check_intact(&self) -> Result<(), StoreError> {
        self.backend.check_intact().await
    }

    /// Whether a write goes through now and is committed (for /healthz).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.backend.check_writable().await
    }

    /// The schema version of the data.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.backend.schema_version().await
    }

    /// Where the data lives, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }
}
