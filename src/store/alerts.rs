//! The alert pipeline's state: the lifecycle of each fingerprint, the outbox per sink
//! (written before anything is sent) and each sink's health. The decisions live in
//! `crate::alert`.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::alert::{AlertState, Notice, OutboxCounts, OutboxRow, SinkHealth};

/// Delivered and dropped notices are kept this long (for `status` and debugging).
pub const OUTBOX_KEPT_DAYS: i64 = 7;

/// Alert states, the outbox and sink health.
pub trait AlertLog: Send + Sync {
    /// Alert states of one server, by fingerprint.
    fn states(&self, server: &str) -> StoreFuture<'_, Vec<AlertState>>;
    /// Store an engine plan at once: the states, then the notices as outbox rows.
    /// Returns the new rows' ids.
    fn save_plan(
        &self,
        states: &[AlertState],
        notices: &[Notice],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<i64>>;
    /// Undelivered, not dropped notices of `sink`, oldest first.
    fn pending(&self, sink: &str) -> StoreFuture<'_, Vec<OutboxRow>>;
    /// The rows went out.
    fn mark_delivered(&self, ids: &[i64], now: DateTime<Utc>) -> StoreFuture<'_, ()>;
    /// A transient failure: try again at `next_attempt_at`.
    fn mark_retry(
        &self,
        ids: &[i64],
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreFuture<'_, ()>;
    /// Give up on the rows (`reason`: max_age, permanent failure, test).
    fn mark_dropped(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        reason: &str,
        error: Option<&str>,
    ) -> StoreFuture<'_, ()>;
    /// Forget delivered and dropped notices older than `before`; returns how many.
    fn prune(&self, before: DateTime<Utc>) -> StoreFuture<'_, usize>;
    /// When the oldest notice still waiting for delivery was queued.
    fn oldest_pending(&self) -> StoreFuture<'_, Option<DateTime<Utc>>>;
    /// Pending, delivered and dropped notices per sink.
    fn counts(&self) -> StoreFuture<'_, Vec<OutboxCounts>>;
    /// What is known of a sink's deliveries (defaults before the first).
    fn sink_health(&self, sink: &str) -> StoreFuture<'_, SinkHealth>;
    fn save_sink_health(&self, health: &SinkHealth) -> StoreFuture<'_, ()>;
}
