//! Retention: how far back the store keeps its history. The daily maintenance
//! (`jobs::maintenance`) turns `[retention]` into horizons and asks the store to delete
//! what is older, in small batches (other work waits at most one batch), then to hand
//! free pages back to the file system where the database allows it (see
//! docs/state-store.md). The audit log is append-only: the only deletes it accepts are of
//! entries older than the horizon recorded by `trim` itself, and never an update.

use chrono::{DateTime, Utc};

use super::StoreFuture;

/// What is older than these instants goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizons {
    /// Audit entries stamped before this.
    pub audit: DateTime<Utc>,
    /// Job runs started before this (the latest run of each server and job is kept).
    pub job_runs: DateTime<Utc>,
    /// Findings resolved before this (open findings are kept however old).
    pub findings: DateTime<Utc>,
    /// Finished quota periods that ended before this.
    pub quota_history: DateTime<Utc>,
}

/// Rows deleted by one trim, and the file's pages given back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub audit: usize,
    pub job_runs: usize,
    pub findings: usize,
    pub quota_history: usize,
    /// Pages returned to the file system (0 where the database reuses them instead).
    pub pages_released: u64,
    /// Free pages left in the file, reused by the next writes.
    pub pages_free: u64,
}

/// The retention repository.
pub trait RetentionLog: Send + Sync {
    /// Delete what is older than `horizons`; the audit log's horizon is recorded first,
    /// as the one the store's own guard lets deletes through for.
    fn trim(&self, horizons: &Horizons) -> StoreFuture<'_, Trimmed>;
}
