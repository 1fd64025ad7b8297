//! The audit log: what keywarden did to servers, append-only and written for people. No
//! decision reads it back; decisions read typed state (sync attempts, quota intents).

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::AuditEntry;

/// The audit log.
pub trait AuditLog: Send + Sync {
    /// Append one entry; entries are never changed or removed.
    fn append(&self, entry: &AuditEntry) -> StoreFuture<'_, ()>;
    /// The latest `limit` entries (of one server, or all), newest first.
    fn recent(&self, server: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>>;
    /// Entries of every server in `[from, to)`, oldest first (for the usage report).
    fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreFuture<'_, Vec<AuditEntry>>;
}
