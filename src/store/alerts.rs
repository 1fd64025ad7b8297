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
    fn states<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<AlertState>>;
    /// Store an engine plan at once: the states, then the notices as outbox rows.
    /// Returns the new rows' ids.
    fn save_plan<'a>(
        &'a self,
        states: &'a [AlertState],
        notices: &'a [Notice],
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<i64>>;
    /// Undelivered, not dropped notices of `sink`, oldest first.
    fn pending<'a>(&'a self, sink: &'a str) -> StoreFuture<'a, Vec<OutboxRow>>;
    /// The rows went out.
    fn mark_delivered<'a>(&'a self, ids: &'a [i64], now: DateTime<Utc>) -> StoreFuture<'a, ()>;
    /// A transient failure: try again at `next_attempt_at`.
    fn mark_retry<'a>(
        &'a self,
        ids: &'a [i64],
        next_attempt_at: DateTime<Utc>,
        error: &'a str,
    ) -> StoreFuture<'a, ()>;
    /// Give up on the rows (`reason`: max_age, permanent failure, test).
    fn mark_dropped<'a>(
        &'a self,
        ids: &'a [i64],
        now: DateTime<Utc>,
        reason: &'a str,
        error: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
    /// Forget delivered and dropped notices older than `before`; returns how many.
    fn prune<'a>(&'a self, before: DateTime<Utc>) -> StoreFuture<'a, usize>;
    /// When the oldest notice still waiting for delivery was queued.
    fn oldest_pending(&self) -> StoreFuture<'_, Option<DateTime<Utc>>>;
    /// Pending, delivered and dropped notices per sink.
    fn counts(&self) -> StoreFuture<'_, Vec<OutboxCounts>>;
    /// What is known of a sink's deliveries (defaults before the first).
    fn sink_health<'a>(&'a self, sink: &'a str) -> StoreFuture<'a, SinkHealth>;
    fn save_sink_health<'a>(&'a self, health: &'a SinkHealth) -> StoreFuture<'a, ()>;
}
