//! Typed `[retention]`: how long the state store keeps its history, and when the daily
//! maintenance that enforces it runs (see docs/state-store.md).

use std::time::Duration;

use super::schedule::Schedule;

/// `[retention]`
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// Audit log entries (at least 30 days; the store itself refuses younger deletes).
    pub audit: Duration,
    /// Job runs (the latest of each server and job is kept however old).
    pub job_runs: Duration,
    /// Findings resolved longer ago (open ones are kept).
    pub findings: Duration,
    /// Finished quota periods (per key), counted from the period's end.
    pub quota_history: Duration,
    /// When the maintenance runs (agent's time zone).
    pub schedule: Schedule,
}
