//! config_sync's memory: the drift streak per server and the sync attempts of the budget
//! window.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::{DriftMemory, SyncAttempt, SyncAttemptOutcome};

/// The drift streak and the sync attempts.
pub trait SyncLog: Send + Sync {
    /// The server's drift streak (empty before the first drifted read).
    fn drift(&self, server: &str) -> StoreFuture<'_, DriftMemory>;
    fn save_drift(
        &self,
        server: &str,
        memory: &DriftMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()>;
    /// Record a sync attempt as `Pending`, before the POST (a crash mid-sync still spends
    /// budget); returns its id. Attempts older than a day are pruned, except each
    /// server's latest.
    fn record_attempt(&self, server: &str, at: DateTime<Utc>) -> StoreFuture<'_, i64>;
    /// How the attempt ended.
    fn finish_attempt(&self, id: i64, outcome: SyncAttemptOutcome) -> StoreFuture<'_, ()>;
    /// When the server last synced, or may have (the latest attempt it did not defer).
    fn last_sync(&self, server: &str) -> StoreFuture<'_, Option<DateTime<Utc>>>;
    /// Sync attempts at or after `since`, oldest first.
    fn attempts_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<SyncAttempt>>;
}
