//! What keywarden last knew of each server: the health job's up/down memory, and on a
//! 2.x server its memory of Xray (the dataplane job reads it: a stopped Xray explains
//! closed ports).

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::ServerState;
use crate::model::dataplane::XrayMemory;

/// Per-server state.
pub trait ServerLog: Send + Sync {
    /// Every server's state, by name.
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>>;
    /// One server's state (`None` before its first health check).
    fn state(&self, server: &str) -> StoreFuture<'_, Option<ServerState>>;
    /// Save a server's state.
    fn save(&self, state: &ServerState, now: DateTime<Utc>) -> StoreFuture<'_, ()>;
    /// What health remembers of a server's Xray (empty before the first 2.x read).
    fn xray(&self, server: &str) -> StoreFuture<'_, XrayMemory>;
    fn save_xray(
        &self,
        server: &str,
        memory: &XrayMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()>;
}
