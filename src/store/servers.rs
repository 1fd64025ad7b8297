//! What keywarden last knew of each server: the health job's up/down memory.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::ServerState;

/// Per-server state.
pub trait ServerLog: Send + Sync {
    /// Every server's state, by name.
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>>;
    /// Note that the server answered (with its version).
    fn note_up<'a>(
        &'a self,
        server: &'a str,
        version: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()>;
    /// Note a failed health check; returns the consecutive failure count.
    fn note_down<'a>(
        &'a self,
        server: &'a str,
        error: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, u32>;
}
