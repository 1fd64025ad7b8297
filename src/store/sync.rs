//! config_sync's memory: the drift streak per server, and the attempts of each server's
//! hourly sync budget (shared by every action that restarts Xray: syncs, restarts of a
//! stopped Xray, fix-reality-keys).

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::{AttemptKind, DriftMemory, SyncAttempt, SyncAttemptOutcome};

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
    /// Record an attempt of `kind` as `Started`, before its POST (a crash mid-action still
    /// spends budget); returns its id. Attempts older than a day are pruned, except each
    /// server's latest.
    fn record_attempt(
        &self,
        server: &str,
        kind: AttemptKind,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, i64>;
    /// How the attempt ended.
    fn finish_attempt(&self, id: i64, outcome: SyncAttemptOutcome) -> StoreFuture<'_, ()>;
    /// When Xray last restarted, or may have (the latest attempt of any kind the server
    /// did not defer).
    fn last_sync(&self, server: &str) -> StoreFuture<'_, Option<DateTime<Utc>>>;
    /// Attempts at or after `since`, oldest first, deferred ones included.
    fn attempts_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<SyncAttempt>>;
}
