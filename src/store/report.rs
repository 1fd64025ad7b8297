//! What the usage report reads and records: daily traffic per key (written with each
//! quota commit), hourly availability samples (written by the health job), and report
//! deliveries. Kept `DAILY_KEPT_DAYS` days (a year of monthly reports with their previous
//! month), pruned as new rows arrive.

use chrono::{DateTime, NaiveDate, Utc};

use super::StoreFuture;
use crate::model::report::{
    AvailabilityRow, AvailabilitySample, DailyUsageRow, DeliveryState, ReportDelivery,
};

/// Days of daily traffic and availability kept.
pub const DAILY_KEPT_DAYS: i64 = 400;

/// The usage report's repository.
pub trait ReportLog: Send + Sync {
    /// Daily traffic of every key and server on days `from..=to`, by server and day.
    fn daily_usage(&self, from: NaiveDate, to: NaiveDate) -> StoreFuture<'_, Vec<DailyUsageRow>>;
    /// Count one check per sample in the hour of `at` (pruning hours past retention).
    fn record_availability(
        &self,
        server: &str,
        at: DateTime<Utc>,
        samples: &[AvailabilitySample],
    ) -> StoreFuture<'_, ()>;
    /// Availability of hours in `[from, to)`, by server, series and hour. Series this
    /// build does not know (written by a newer one) are left out.
    fn availability(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<AvailabilityRow>>;
    /// The recorded delivery of report `period` to `sink`, if any.
    fn delivery(&self, period: &str, sink: &str) -> StoreFuture<'_, Option<ReportDelivery>>;
    /// Record one delivery attempt (the error never holds a secret: sinks scrub theirs).
    fn record_delivery(
        &self,
        period: &str,
        sink: &str,
        state: DeliveryState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()>;
}
