//! What keywarden last knew of each server: the health job's up/down memory.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::ServerState;

/// Per-server state.
pub trait ServerLog: Send + Sync {
    /// Every server's state, by name.
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>>;
    /// One server's state (`None` before its first health check).
    fn state(&self, server: &str) -> StoreFuture<'_, Option<ServerState>>;
    /// Save a server's state.
    fn save(&self, state: &ServerState, now: DateTime<Utc>) -> StoreFuture<'_, ()>;
}
