//! What keywarden last knew of each server: the health job's up/down memory.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::ServerState;

/// Per-server state.
pub trait ServerLog: Send + Sync {
    /// Every server's state, by name.
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>>;
    /// One server's state (`None` before its first health check).
    fn state<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Option<ServerState>>;
    /// Save a server's state.
    fn save<'a>(&'a self, state: &'a ServerState, now: DateTime<Utc>) -> StoreFuture<'a, ()>;
}
