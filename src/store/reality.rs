//! What the reality job remembers on a 2.x server: the streak of invalid reads and the
//! problem the last fix-reality-keys was for. Written by the reality job's execute step
//! only.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::dataplane::RealityMemory;

/// The reality job's repository.
pub trait RealityLog: Send + Sync {
    /// A server's memory (empty before its first invalid read).
    fn memory(&self, server: &str) -> StoreFuture<'_, RealityMemory>;
    fn save(&self, server: &str, memory: &RealityMemory, now: DateTime<Utc>)
    -> StoreFuture<'_, ()>;
}
