//! config_sync's memory: the drift streak per server and the sync attempts of the budget
//! window.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::{DriftMemory, SyncAttempt, SyncAttemptOutcome};

/// The drift streak and the sync attempts.
pub trait SyncLog: Send + Sync {
    /// The server's drift streak (empty before the first drifted read).
    fn drift<'a>(&'a self, server: &'a str) -> StoreFuture<'a, DriftMemory>;
    fn save_drift<'a>(
        &'a self,
        server: &'a str,
        memory: &'a DriftMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()>;
    /// Record a sync attempt as `Pending`, before the POST (a crash mid-sync still spends
    /// budget); returns its id. Attempts older than a day are pruned, except each
    /// server's latest.
    fn record_attempt<'a>(&'a self, server: &'a str, at: DateTime<Utc>) -> StoreFuture<'a, i64>;
    /// How the attempt ended.
    fn finish_attempt(&self, id: i64, outcome: SyncAttemptOutcome) -> StoreFuture<'_, ()>;
    /// When the server last synced, or may have (the latest attempt it did not defer).
    fn last_sync<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Option<DateTime<Utc>>>;
    /// Sync attempts at or after `since`, oldest first.
    fn attempts_since<'a>(
        &'a self,
        server: &'a str,
        since: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<SyncAttempt>>;
}
