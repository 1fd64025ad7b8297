//! The periodic jobs and their runner. Each job is one module with the same shape:
//! `observe` (async, read-only) -> `plan` (pure: observed state + config + now -> data)
//! -> `execute` (the only side effects). A job is never told why it runs: it looks at
//! the server as it is now and makes it right, so running it twice is harmless.
//! The runner (not the jobs) times runs, records outcomes, guards against overlap,
//! backs off failing servers and hands findings on; a job's metric facts come back in
//! its result and the metrics observer alone turns them into series.

mod backoff;
pub mod config_sync;
pub mod dataplane;
mod facts;
mod health;
pub mod maintenance;
mod metrics;
pub mod quota;
mod reality;
mod reality_v2;
mod restart;
pub mod runner;
mod sink;
mod xray;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::model::{Finding, FindingKind, RunOutcome, Severity};
use crate::server_api::ServerApi;
use crate::store::Store;

pub use crate::model::JobKind;
pub use backoff::{BACKOFF_BASE, Backoff};
pub use facts::{Fact, SyncResult};
pub use metrics::MetricsObserver;
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
    /// What the run tells the metrics.
    #[serde(skip)]
    pub facts: Vec<Fact>,
}

impl JobResult {
    pub fn with_finding(mut self, finding: Finding) -> JobResult {
        self.findings.push(finding);
        self
    }

    /// The run's outcome (pure): the worst finding; a run that could not observe its
    /// server is an error unless it found something critical.
    pub fn outcome(&self) -> RunOutcome {
        let worst = self.findings.iter().map(|f| f.severity).max();
        match (worst, &self.transport_failure) {
            (Some(Severity::Critical), _) => RunOutcome::Critical,
            (_, Some(_)) => RunOutcome::Error,
            (Some(Severity::Warning), None) => RunOutcome::Warning,
            _ => RunOutcome::Ok,
        }
    }
}

/// Why a job could not observe its server.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Api(#[from] crate::server_api::ApiError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A finding's summary stays one line, whatever a server put in the text it quotes
/// (errors, key names): control characters become spaces, and it is cut at 200 chars.
pub fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &flat[..cut]),
        None => flat,
    }
}

/// What a job's findings are about: the job, and the subject of their fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub job: JobKind,
    pub subject: &'static str,
}

impl About {
    /// A finding on `server`: the summary on one line, the details as Seen / Done / Next.
    pub fn finding(
        self,
        server: &str,
        kind: FindingKind,
        severity: Severity,
        summary: String,
        [seen, done, next]: [String; 3],
    ) -> Finding {
        Finding {
            server: server.to_string(),
            job: self.job,
            kind,
            subject: self.subject.to_string(),
            severity,
            summary: one_line(&summary),
            details: format!("Seen: {seen}\nDone: {done}\nNext: {next}"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome_of(result: &JobResult) -> RunOutcome {
        result.outcome()
    }

    #[test]
    fn summaries_stay_on_one_line() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = "x".repeat(300);
        assert_eq!(one_line(&long).chars().count(), 203);
    }

    #[test]
    fn outcomes_follow_the_worst_finding() {
        let finding = |severity| Finding {
            server: "s".into(),
            job: JobKind::Health,
            kind: FindingKind::ApiError,
            subject: String::new(),
            severity,
            summary: String::new(),
            details: String::new(),
        };
        let result = |severities: Vec<Severity>, failure: bool| JobResult {
            findings: severities.into_iter().map(finding).collect(),
            plan: vec![],
            transport_failure: failure.then(|| "down".to_string()),
            facts: vec![],
        };
        assert_eq!(outcome_of(&result(vec![], false)), RunOutcome::Ok);
        assert_eq!(
            outcome_of(&result(vec![Severity::Info], false)),
            RunOutcome::Ok
        );
        assert_eq!(
            outcome_of(&result(vec![Severity::Warning, Severity::Info], false)),
            RunOutcome::Warning
        );
        assert_eq!(
            outcome_of(&result(vec![Severity::Warning, Severity::Critical], false)),
            RunOutcome::Critical
        );
        assert_eq!(outcome_of(&result(vec![], true)), RunOutcome::Error);
        assert_eq!(
            outcome_of(&result(vec![Severity::Warning], true)),
            RunOutcome::Error
        );
        assert_eq!(
            outcome_of(&result(vec![Severity::Critical], true)),
            RunOutcome::Critical
        );
    }
}
