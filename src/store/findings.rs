//! Findings per (server, kind, subject): opened, refreshed and resolved run by run.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::{Finding, FindingChanges, JobKind, StoredFinding};

/// Findings as the runner records them.
pub trait FindingLog: Send + Sync {
    /// Record the findings of one run of `job` on `server`: new ones open, present ones
    /// are refreshed, open ones of this (server, job) that are absent resolve. The
    /// changes include the open findings of every server afterwards, per severity.
    fn record<'a>(
        &'a self,
        server: &'a str,
        job: JobKind,
        findings: &'a [Finding],
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, FindingChanges>;
    /// Open findings, of one server or all: by server, most severe first, then by kind.
    fn open<'a>(&'a self, server: Option<&'a str>) -> StoreFuture<'a, Vec<StoredFinding>>;
}
