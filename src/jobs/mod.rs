//! The periodic jobs and their runner. Each job is one module with the same shape:
//! `observe` (async, read-only) -> `plan` (pure: observed state + config + now -> data)
//! -> `execute` (the only side effects). A job is never told why it runs: it looks at
//! the server as it is now and makes it right, so running it twice is harmless.
//! The runner (not the jobs) times runs, records outcomes, guards against overlap,
//! backs off failing servers and hands findings on.

pub mod config_sync;
pub mod dataplane;
pub mod health;
pub mod quota;
pub mod reality;
pub mod reality_v2;
pub mod restart;
pub mod runner;
pub mod xray;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::finding::Finding;
use crate::server_api::ServerApi;
use crate::store::{Store, XrayState};

pub use crate::config::JobKind;

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
    /// The TLS probe of the server's VLESS ports (the dataplane job).
    pub prober: &'a Arc<dataplane::Prober>,
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
    /// health (2.x): Xray's state at the end of the run (for metrics).
    pub xray: Option<XrayState>,
    /// dataplane: what this run's probes measured (for metrics).
    pub ports: Option<dataplane::PortsMeasured>,
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
        JobKind::Dataplane => dataplane::run(ctx).await,
    }
}
