//! The audit log: what keywarden did to servers, append-only and written for people. No
//! decision reads it back; decisions read typed state (sync attempts, quota intents).

use super::StoreFuture;
use crate::model::AuditEntry;

/// The audit log.
pub trait AuditLog: Send + Sync {
    /// Append one entry; entries are never changed or removed.
    fn append<'a>(&'a self, entry: &'a AuditEntry) -> StoreFuture<'a, ()>;
    /// The latest `limit` entries (of one server, or all), newest first.
    fn recent<'a>(
        &'a self,
        server: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AuditEntry>>;
}
