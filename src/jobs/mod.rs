//! The periodic jobs and their runner. Each job is one module with the same shape:
//! `observe` (async, read-only) -> `plan` (pure: observed state + config + now -> data)
//! -> `execute` (the only side effects). A job is never told why it runs: it looks at
//! the server as it is now and makes it right, so running it twice is harmless.
//! The runner (not the jobs) times runs, records outcomes, guards against overlap,
//! backs off failing servers and hands findings on.

pub mod config_sync;
pub mod health;
pub mod quota;
pub mod reality;
pub mod runner;
pub mod sink;

use std::time::Duration;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::model::Finding;
use crate::server_api::ServerApi;
use crate::store::Store;

pub use crate::model::JobKind;
pub use sink::{AlertSink, FindingSink, LogSink, SinkFuture};

/// How the job was started: by the scheduler, or once by `keywarden check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A scheduled run: one observation per run; confirmations accumulate across runs.
    Daemon,
    /// `keywarden check`: a confirmation count is gathered within this run by reading
    /// the status again, `reread_interval` apart, so a single check can repair.
    Check { reread_interval: Duration },
}

/// Everything a job may use. Jobs take `now` from `clock`, never from the system.
pub struct JobContext<'a> {
    pub config: &'a Config,
    pub server: &'a ServerConfig,
    pub api: &'a ServerApi,
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
    /// `[agent].dry_run` or `--dry-run`: observe and plan, never POST or DELETE.
    pub dry_run: bool,
    pub mode: RunMode,
}

/// What one job run found and decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobResult {
    pub findings: Vec<Finding>,
    /// What the job decided or did, one human line each ("would sync fra-1: 2 uuids
    /// missing from config.json"). Printed by `check`, logged by the daemon.
    pub plan: Vec<String>,
    /// Set when the server could not be observed at all (unreachable, timeout, 5xx):
    /// the runner backs the server off and the run's outcome is an error.
    pub transport_failure: Option<String>,
}

impl JobResult {
    pub fn with_finding(mut self, finding: Finding) -> JobResult {
        self.findings.push(finding);
        self
    }
}

/// Run one job once on one server, with the job's own code (the runner wraps this).
pub async fn run_job(job: JobKind, ctx: &JobContext<'_>) -> JobResult {
    match job {
        JobKind::Health => health::run(ctx).await,
        JobKind::ConfigSync => config_sync::run(ctx).await,
        JobKind::Reality => reality::run(ctx).await,
        JobKind::Quota => quota::run(ctx).await,
    }
}
