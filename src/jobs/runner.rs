//! The runner: runs one job on one server and does everything around it that jobs
//! must not do themselves: the overlap guard, the global cap on concurrent runs,
//! backoff after consecutive transport failures, timing, recording the outcome and
//! findings in the store, handing findings on to the sink, and the run to the metrics
//! observer. With a shared fleet (PostgreSQL store) it runs a job only on a server this
//! agent leads, and stops a run whose server it stops leading. It knows no job's rules: what a run found and measured comes back in its
//! `JobResult`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::facts::Fact;
use super::metrics::MetricsObserver;
use super::sink::FindingSink;
use super::{Backoff, JobContext, JobKind, JobResult, RunMode, run_job};
use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::lead::Leadership;
use crate::metrics::Metrics;
use crate::model::{Finding, FindingChanges, RunOutcome, RunRecord};
use crate::server_api::ServerApi;
use crate::store::Store;

/// One server as the runner sees it: its config and its client.
#[derive(Clone, Debug)]
pub struct Target {
    pub config: Arc<Config>,
    pub server: ServerConfig,
    pub api: ServerApi,
    /// The TLS probe of its VLESS ports (shared by servers trusting the same roots).
    pub prober: Arc<super::dataplane::Prober>,
}

/// How to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub dry_run: bool,
    pub mode: RunMode,
    /// Scheduled runs respect the backoff; `check` runs regardless.
    pub respect_backoff: bool,
}

/// What one run came to. Serialized by `check --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub server: String,
    pub job: JobKind,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    pub findings: Vec<Finding>,
    pub plan: Vec<String>,
    /// Why the run could not complete, or why it was skipped.
    pub error: Option<String>,
    /// What the run tells the metrics.
    #[serde(skip)]
    pub facts: Vec<Fact>,
}

/// Counters the runner keeps (for status and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerStats {
    pub skipped_overlap: u64,
    pub skipped_backoff: u64,
    /// Ticks not run because another agent leads the server (or none: disconnected).
    pub skipped_not_leading: u64,
    /// Runs stopped because this agent stopped leading their server mid-run.
    pub stopped_not_leading: u64,
    pub runs: u64,
    pub panics: u64,
}

/// Held while a job runs on a server; a tick that cannot take it is skipped.
type RunGuard = Arc<tokio::sync::Mutex<()>>;

/// Runs jobs. Cheap to share behind an `Arc`.
pub struct Runner {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn FindingSink>,
    permits: Arc<Semaphore>,
    guards: Mutex<HashMap<(String, JobKind), RunGuard>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    stats: Mutex<RunnerStats>,
    observer: Option<MetricsObserver>,
    cycle: crate::heartbeat::Cycle,
    leadership: Leadership,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Runner {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn FindingSink>,
        max_concurrent: usize,
    ) -> Runner {
        Runner {
            store,
            clock,
            sink,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            guards: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            stats: Mutex::new(RunnerStats::default()),
            observer: None,
            cycle: crate::heartbeat::Cycle::default(),
            leadership: Leadership::solo(),
        }
    }

    /// Run jobs only on the servers `leadership` says this agent leads (default: solo,
    /// every server).
    pub fn with_leadership(mut self, leadership: Leadership) -> Runner {
        self.leadership = leadership;
        self
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Record runs, skips and what runs report in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Runner {
        self.observer = Some(MetricsObserver::new(metrics));
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Which (server, job) pairs completed since the last heartbeat.
    pub fn cycle(&self) -> &crate::heartbeat::Cycle {
        &self.cycle
    }

    pub fn stats(&self) -> RunnerStats {
        lock(&self.stats).clone()
    }

    fn guard(&self, server: &str, job: JobKind) -> RunGuard {
        lock(&self.guards)
            .entry((server.to_string(), job))
            .or_default()
            .clone()
    }

    /// A tick not run (`reason`: overlap, backoff), recorded and counted.
    async fn skipped(&self, target: &Target, job: JobKind, reason: &str, why: String) -> RunReport {
        let name = target.server.name.clone();
        tracing::info!(server = %name, job = job.as_str(), reason = %why, "run skipped");
        if let Some(observer) = &self.observer {
            observer.skipped(&name, job, reason);
        }
        let report = RunReport {
            server: name,
            job,
            started_at: self.clock.now(),
            duration_ms: 0,
            outcome: RunOutcome::Skipped,
            findings: Vec::new(),
            plan: Vec::new(),
            error: Some(why),
            facts: Vec::new(),
        };
        self.record(&report).await;
        report
    }

    /// A tick on a server another agent leads: counted and logged at debug, nothing
    /// written (the leader's runs are the record), no finding.
    fn not_leading(&self, target: &Target, job: JobKind, why: &str) -> RunReport {
        let name = target.server.name.clone();
        tracing::debug!(server = %name, job = job.as_str(), reason = why, "run skipped: not leading this server");
        if let Some(observer) = &self.observer {
            observer.skipped(&name, job, "not_leading");
        }
        RunReport {
            server: name,
            job,
            started_at: self.clock.now(),
            duration_ms: 0,
            outcome: RunOutcome::Skipped,
            findings: Vec::new(),
            plan: Vec::new(),
            error: Some(why.to_string()),
            facts: Vec::new(),
        }
    }

    /// Run `job` on `target` once, unless this agent does not lead the server (skipped,
    /// counted, nothing recorded), it is already running there (skipped and counted) or
    /// the server is backed off (scheduled runs only).
    pub async fn run(&self, target: &Target, job: JobKind, options: RunOptions) -> RunReport {
        let name = target.server.name.clone();
        if !self.leadership.leads(&name) {
            lock(&self.stats).skipped_not_leading += 1;
            return self.not_leading(target, job, "another agent leads this server");
        }
        let Ok(_running) = self.guard(&name, job).try_lock_owned() else {
            lock(&self.stats).skipped_overlap += 1;
            let why = "the previous run is still going".to_string();
            return self.skipped(target, job, "overlap", why).await;
        };
        // Health is exempt: it is what notices the server is back.
        if options.respect_backoff && job != JobKind::Health {
            let backoff = lock(&self.backoff).get(&name).copied().unwrap_or_default();
            if backoff.blocks(self.clock.now()) {
                lock(&self.stats).skipped_backoff += 1;
                let why = format!("backing off after {} failed runs", backoff.failures);
                return self.skipped(target, job, "backoff", why).await;
            }
        }
        let _permit = self.permits.clone().acquire_owned().await.ok();
        let started_at = self.clock.now();
        let started = Instant::now();
        let Some(result) = self.run_isolated(target, job, options).await else {
            lock(&self.stats).stopped_not_leading += 1;
            tracing::warn!(server = %name, job = job.as_str(), "run stopped: this agent no longer leads the server (the PostgreSQL connection or its lock was lost)");
            return self.not_leading(target, job, "stopped: leadership lost mid-run");
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let interval = target
            .config
            .jobs
            .schedule(job)
            .interval(target.config.agent.timezone, started_at);
        if job != JobKind::Health || result.transport_failure.is_none() {
            let mut backoff = lock(&self.backoff);
            let entry = backoff.entry(name.clone()).or_default();
            *entry = entry.after_run(
                result.transport_failure.is_some(),
                self.clock.now(),
                interval,
            );
        }
        let report = RunReport {
            server: name,
            job,
            started_at,
            duration_ms,
            outcome: result.outcome(),
            error: result.transport_failure,
            findings: result.findings,
            plan: result.plan,
            facts: result.facts,
        };
        lock(&self.stats).runs += 1;
        self.cycle.completed(&report.server, job);
        let changes = self.record(&report).await;
        if let Some(observer) = &self.observer {
            observer.finished(&report, changes.as_ref());
        }
        self.sink
            .deliver(&report, &changes.unwrap_or_default())
            .await;
        report
    }

    /// Run the job on its own task, so a panic becomes an error outcome instead of
    /// taking the caller (the scheduler tick, `check`) down with it. `None`: this agent
    /// stopped leading the server mid-run, and the job was aborted where it was (as if
    /// the process had been killed there: intents are written before remote calls, so
    /// the new leader settles them), so two agents never act on one server at once.
    async fn run_isolated(
        &self,
        target: &Target,
        job: JobKind,
        options: RunOptions,
    ) -> Option<JobResult> {
        let target = target.clone();
        let store = self.store.clone();
        let clock = self.clock.clone();
        let server = target.server.name.clone();
        let mut task = tokio::spawn(async move {
            let ctx = JobContext {
                config: &target.config,
                server: &target.server,
                api: &target.api,
                store: &store,
                clock: clock.as_ref(),
                dry_run: options.dry_run || target.config.agent.dry_run,
                mode: options.mode,
                prober: &target.prober,
            };
            run_job(job, &ctx).await
        });
        let joined = tokio::select! {
            joined = &mut task => joined,
            () = self.leadership.lost(&server) => {
                task.abort();
                return None;
            }
        };
        Some(match joined {
            Ok(result) => result,
            Err(error) => {
                lock(&self.stats).panics += 1;
                tracing::error!(job = job.as_str(), %error, "job panicked");
                JobResult {
                    transport_failure: Some(format!("internal error: the job panicked ({error})")),
                    ..JobResult::default()
                }
            }
        })
    }

    /// Record the run and its findings; `None` when the findings were not recorded.
    async fn record(&self, report: &RunReport) -> Option<FindingChanges> {
        let detail = report
            .error
            .clone()
            .unwrap_or_else(|| report.plan.join("; "));
        let run = RunRecord {
            server: report.server.clone(),
            job: report.job,
            started_at: report.started_at,
            duration_ms: report.duration_ms,
            outcome: report.outcome,
            detail,
        };
        if let Err(error) = self.store.runs().record(&run).await {
            tracing::error!(%error, "cannot record the run");
        }
        if report.outcome == RunOutcome::Skipped {
            return None;
        }
        // A run that could not observe keeps the previous findings open: absence of
        // evidence is not a resolution. Health is the exception: its findings are
        // about the failure itself.
        if report.error.is_some() && report.job != JobKind::Health && report.findings.is_empty() {
            return None;
        }
        let findings = self.store.findings();
        let now = self.clock.now();
        match findings
            .record(&report.server, report.job, &report.findings, now)
            .await
        {
            Ok(changes) => Some(changes),
            Err(error) => {
                tracing::error!(%error, "cannot record findings");
                None
            }
        }
    }
}
