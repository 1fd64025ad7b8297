//! Job runs as recorded: one per run, the latest kept per (server, job).

use super::StoreFuture;
use crate::model::{JobKind, RunRecord};

/// Job runs kept per (server, job); older ones are pruned as new ones arrive, in
/// batches: between `RUNS_KEPT_PER_JOB` and `RUNS_KEPT_PER_JOB + PRUNE_BATCH - 1` are
/// kept. `[retention].job_runs` also removes runs older than it (the latest is kept).
pub const RUNS_KEPT_PER_JOB: usize = 500;

/// Runs past the cap deleted at once.
pub const PRUNE_BATCH: usize = 64;

/// The record of job runs.
pub trait RunLog: Send + Sync {
    /// Record a run (skipped ticks included), pruning beyond `RUNS_KEPT_PER_JOB` in batches.
    fn record(&self, run: &RunRecord) -> StoreFuture<'_, ()>;
    /// The latest run of each (server, job), skipped ticks excluded, by server and job.
    fn last_runs(&self) -> StoreFuture<'_, Vec<RunRecord>>;
    /// The latest `limit` runs of one (server, job), newest first.
    fn recent(&self, server: &str, job: JobKind, limit: usize) -> StoreFuture<'_, Vec<RunRecord>>;
}
