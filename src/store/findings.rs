//! Findings per (server, kind, subject): opened, refreshed and resolved run by run.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::{Finding, FindingChanges, JobKind, StoredFinding};

/// Findings as the runner records them.
pub trait FindingLog: Send + Sync {
    /// Record the findings of one run of `job` on `server`: new ones open, present ones
    /// are refreshed, open ones of this (server, job) that are absent resolve. The
    /// changes include the open findings of every server afterwards, per severity.
    fn record(
        &self,
        server: &str,
        job: JobKind,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, FindingChanges>;
    /// Findings open at some time in `[from, to)` (raised before `to`, not resolved
    /// before `from`), in the order they were raised.
    fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<StoredFinding>>;
    /// Open findings, of one server or all: by server, most severe first, then by kind.
    fn open(&self, server: Option<&str>) -> StoreFuture<'_, Vec<StoredFinding>>;
}
