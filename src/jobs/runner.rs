//! The runner: runs one job on one server and does everything around it that jobs
//! must not do themselves: the overlap guard, the global cap on concurrent runs,
//! backoff after consecutive transport failures, timing, recording the outcome and
//! findings in the store, and handing findings on to the alert pipeline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::{JobContext, JobKind, JobResult, RunMode, run_job};
use crate::clock::Clock;
use crate::config::{Config, ServerConfig, Severity};
use crate::finding::Finding;
use crate::metrics::Metrics;
use crate::server_api::ServerApi;
use crate::store::{FindingChanges, RunOutcome, RunRecord, Store};

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
    #[serde(serialize_with = "job_name")]
    pub job: JobKind,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub outcome: RunOutcome,
    pub findings: Vec<Finding>,
    pub plan: Vec<String>,
    /// Why the run could not complete, or why it was skipped.
    pub error: Option<String>,
}

fn job_name<S: serde::Serializer>(job: &JobKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(job.as_str())
}

/// Where findings go after a run. The alert engine implements this; until then they
/// are logged. It must not block: it is called on the job's task.
pub trait FindingSink: Send + Sync {
    fn deliver(&self, report: &RunReport, changes: &FindingChanges);
}

/// Logs findings as they open and resolve.
#[derive(Debug, Default)]
pub struct LogSink;

impl FindingSink for LogSink {
    fn deliver(&self, report: &RunReport, changes: &FindingChanges) {
        for finding in &report.findings {
            let new = changes.opened.contains(&finding.fingerprint());
            match finding.severity {
                Severity::Critical => {
                    tracing::error!(server = %finding.server, kind = finding.kind.as_str(), new, "{}", finding.summary)
                }
                Severity::Warning => {
                    tracing::warn!(server = %finding.server, kind = finding.kind.as_str(), new, "{}", finding.summary)
                }
                Severity::Info => {
                    tracing::info!(server = %finding.server, kind = finding.kind.as_str(), new, "{}", finding.summary)
                }
            }
        }
        for resolved in &changes.resolved {
            tracing::info!(server = %resolved.server, kind = %resolved.kind, "resolved: {}", resolved.summary);
        }
    }
}

/// Backoff of one server after consecutive transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    pub failures: u32,
    pub not_before: Option<DateTime<Utc>>,
}

/// The first backoff step; it doubles per failure, capped at the job's interval.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);

impl Backoff {
    /// The state after a run (pure): failures count up and push `not_before` out by
    /// min(BACKOFF_BASE * 2^(n-1), interval); a completed run clears it.
    pub fn after_run(
        self,
        transport_failure: bool,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> Backoff {
        if !transport_failure {
            return Backoff::default();
        }
        let failures = self.failures.saturating_add(1);
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << (failures - 1).min(20))
            .min(interval);
        Backoff {
            failures,
            not_before: Some(crate::clock::later(now, step)),
        }
    }

    pub fn blocks(&self, now: DateTime<Utc>) -> bool {
        self.not_before.is_some_and(|not_before| now < not_before)
    }
}

/// The outcome of a completed run from its findings (pure).
pub fn outcome_of(result: &JobResult) -> RunOutcome {
    let worst = result.findings.iter().map(|f| f.severity).max();
    match (worst, &result.transport_failure) {
        (Some(Severity::Critical), _) => RunOutcome::Critical,
        (_, Some(_)) => RunOutcome::Error,
        (Some(Severity::Warning), None) => RunOutcome::Warning,
        _ => RunOutcome::Ok,
    }
}

/// Counters the runner keeps (for status and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerStats {
    pub skipped_overlap: u64,
    pub skipped_backoff: u64,
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
    metrics: Option<Arc<Metrics>>,
    cycle: crate::heartbeat::Cycle,
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
            metrics: None,
            cycle: crate::heartbeat::Cycle::default(),
        }
    }

    /// Count runs, skips, server state and open findings in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Runner {
        self.metrics = Some(metrics);
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

    fn skipped(&self, target: &Target, job: JobKind, reason: String) -> RunReport {
        let now = self.clock.now();
        tracing::info!(server = %target.server.name, job = job.as_str(), %reason, "run skipped");
        let report = RunReport {
            server: target.server.name.clone(),
            job,
            started_at: now,
            duration_ms: 0,
            outcome: RunOutcome::Skipped,
            findings: Vec::new(),
            plan: Vec::new(),
            error: Some(reason.clone()),
        };
        self.record(&report);
        report
    }

    /// Run `job` on `target` once, unless it is already running there (skipped and
    /// counted) or the server is backed off (scheduled runs only).
    pub async fn run(&self, target: &Target, job: JobKind, options: RunOptions) -> RunReport {
        let name = target.server.name.clone();
        let Ok(_running) = self.guard(&name, job).try_lock_owned() else {
            lock(&self.stats).skipped_overlap += 1;
            if let Some(metrics) = &self.metrics {
                metrics.job_skipped(&name, job.as_str(), "overlap");
            }
            return self.skipped(target, job, "the previous run is still going".into());
        };
        // Health is exempt: it is what notices the server is back.
        if options.respect_backoff && job != JobKind::Health {
            let backoff = lock(&self.backoff).get(&name).copied().unwrap_or_default();
            if backoff.blocks(self.clock.now()) {
                lock(&self.stats).skipped_backoff += 1;
                if let Some(metrics) = &self.metrics {
                    metrics.job_skipped(&name, job.as_str(), "backoff");
                }
                return self.skipped(
                    target,
                    job,
                    format!("backing off after {} failed runs", backoff.failures),
                );
            }
        }
        let _permit = self.permits.clone().acquire_owned().await.ok();
        let started_at = self.clock.now();
        let started = Instant::now();
        let result = self.run_isolated(target, job, options).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let measured = (result.xray, result.ports.clone());
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
            outcome: outcome_of(&result),
            error: result.transport_failure.clone(),
            findings: result.findings,
            plan: result.plan,
        };
        lock(&self.stats).runs += 1;
        self.cycle.completed(&report.server, job);
        let changes = self.record(&report);
        if let Some(metrics) = &self.metrics {
            self.count(metrics, target, &report);
            count_dataplane(metrics, &report.server, measured);
        }
        self.sink.deliver(&report, &changes);
        report
    }

    /// Run the job on its own task, so a panic becomes an error outcome instead of
    /// taking the caller (the scheduler tick, `check`) down with it.
    async fn run_isolated(&self, target: &Target, job: JobKind, options: RunOptions) -> JobResult {
        let target = target.clone();
        let store = self.store.clone();
        let clock = self.clock.clone();
        let task = tokio::spawn(async move {
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
        match task.await {
            Ok(result) => result,
            Err(error) => {
                lock(&self.stats).panics += 1;
                tracing::error!(job = job.as_str(), %error, "job panicked");
                JobResult {
                    transport_failure: Some(format!("internal error: the job panicked ({error})")),
                    ..JobResult::default()
                }
            }
        }
    }

    /// Metrics derived from a finished run.
    fn count(&self, metrics: &Metrics, target: &Target, report: &RunReport) {
        let server = report.server.as_str();
        let took = Duration::from_millis(report.duration_ms);
        metrics.job_run(server, report.job.as_str(), report.outcome.as_str(), took);
        if report.job == JobKind::Health {
            metrics.set_server_up(server, report.error.is_none());
        }
        if report.job == JobKind::ConfigSync {
            self.count_sync(metrics, target, report);
        }
        if report.job == JobKind::Quota {
            self.count_quota(metrics, target, report);
        }
        if let Ok(open) = self.store.open_findings(None) {
            let count =
                |severity: &str| open.iter().filter(|f| f.severity == severity).count() as i64;
            metrics.set_alerts_firing(&[
                ("critical", count("critical")),
                ("warning", count("warning")),
                ("info", count("info")),
            ]);
        }
    }

    fn count_sync(&self, metrics: &Metrics, target: &Target, report: &RunReport) {
        use crate::finding::FindingKind as Kind;
        use crate::metrics::{ResultLabels, ServerLabels};
        let server = report.server.as_str();
        let labels = ServerLabels {
            server: server.to_string(),
        };
        let kinds: Vec<Kind> = report.findings.iter().map(|f| f.kind).collect();
        let drift_kinds = [
            Kind::ConfigDrift,
            Kind::ConfigDriftRepaired,
            Kind::ConfigDriftPersists,
            Kind::AutoSyncSuspended,
            Kind::SyncFailed,
        ];
        if kinds.iter().any(|k| drift_kinds.contains(k)) {
            metrics.drift_detected.get_or_create(&labels).inc();
        }
        for (kind, result) in [
            (Kind::ConfigDriftRepaired, "repaired"),
            (Kind::ConfigDriftPersists, "persists"),
            (Kind::SyncFailed, "failed"),
        ] {
            if kinds.contains(&kind) {
                let labels = ResultLabels {
                    server: server.to_string(),
                    result: result.to_string(),
                };
                metrics.syncs.get_or_create(&labels).inc();
            }
        }
        let since = self.clock.now() - chrono::Duration::hours(1);
        if let Ok(recent) = self.store.sync_attempts_since(server, since) {
            let max = i64::from(target.config.jobs.config_sync.max_syncs_per_hour);
            metrics
                .sync_budget_left
                .get_or_create(&labels)
                .set((max - recent.len() as i64).max(0));
        }
    }

    /// Resets and deletes of this run (from the audit log it wrote), and per-key usage
    /// when per-key series are on.
    fn count_quota(&self, metrics: &Metrics, target: &Target, report: &RunReport) {
        use crate::metrics::{KeyLabels, ResultLabels};
        let server = report.server.as_str();
        if let Ok(entries) = self.store.audit_since(server, report.started_at) {
            for entry in &entries {
                let family = match entry.action.as_str() {
                    "quota_reset" => &metrics.resets,
                    "quota_delete" => &metrics.deletes,
                    _ => continue,
                };
                let labels = ResultLabels {
                    server: server.to_string(),
                    result: entry.result.clone(),
                };
                family.get_or_create(&labels).inc();
            }
        }
        if !metrics.per_key {
            return;
        }
        let Ok(usage) = self.store.quota_usage(Some(server)) else {
            return;
        };
        for (_, entry) in usage {
            let labels = KeyLabels {
                server: server.to_string(),
                key: entry.uuid.clone(),
            };
            metrics
                .key_used_bytes
                .get_or_create(&labels)
                .set(entry.used);
            let policy =
                target
                    .config
                    .quotas
                    .policy_for(server, &entry.key_id, &entry.uuid, &entry.name);
            if let Some(limit) = policy.limit_bytes.filter(|limit| *limit > 0) {
                metrics
                    .key_quota_ratio
                    .get_or_create(&labels)
                    .set(entry.used as f64 / limit as f64);
            }
        }
    }

    fn record(&self, report: &RunReport) -> FindingChanges {
        let detail = report
            .error
            .clone()
            .unwrap_or_else(|| report.plan.join("; "));
        let run = RunRecord {
            server: report.server.clone(),
            job: report.job.as_str().to_string(),
            started_at: report.started_at,
            duration_ms: report.duration_ms,
            outcome: report.outcome,
            detail,
        };
        if let Err(error) = self.store.record_run(&run) {
            tracing::error!(%error, "cannot record the run");
        }
        if report.outcome == RunOutcome::Skipped {
            return FindingChanges::default();
        }
        // A run that could not observe keeps the previous findings open: absence of
        // evidence is not a resolution. Health is the exception: its findings are
        // about the failure itself.
        if report.error.is_some() && report.job != JobKind::Health && report.findings.is_empty() {
            return FindingChanges::default();
        }
        match self.store.record_findings(
            &report.server,
            report.job,
            &report.findings,
            self.clock.now(),
        ) {
            Ok(changes) => changes,
            Err(error) => {
                tracing::error!(%error, "cannot record findings");
                FindingChanges::default()
            }
        }
    }
}

/// Xray's state (health, 2.x) and the VLESS ports (dataplane) of a finished run.
fn count_dataplane(
    metrics: &Metrics,
    server: &str,
    (xray, ports): (
        Option<crate::store::XrayState>,
        Option<super::dataplane::PortsMeasured>,
    ),
) {
    if let Some(state) = xray {
        metrics.set_xray_up(server, state == crate::store::XrayState::Running);
    }
    if let Some(ports) = ports {
        metrics.vless_ports(server, ports.probed, ports.open, &ports.latencies);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::finding::FindingKind;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, second).unwrap()
    }

    #[test]
    fn backoff_doubles_up_to_the_interval_and_clears_on_success() {
        let interval = Duration::from_secs(30);
        let one = Backoff::default().after_run(true, at(0), interval);
        assert_eq!(
            one,
            Backoff {
                failures: 1,
                not_before: Some(at(5))
            }
        );
        let two = one.after_run(true, at(10), interval);
        assert_eq!(two.not_before, Some(at(20)));
        let many = (0..10).fold(two, |b, _| b.after_run(true, at(30), interval));
        assert_eq!(
            many.not_before,
            Some(at(30) + chrono::Duration::seconds(30)),
            "capped at the interval"
        );
        assert!(many.blocks(at(40)));
        assert!(!many.blocks(at(0) + chrono::Duration::seconds(60)));
        assert_eq!(many.after_run(false, at(50), interval), Backoff::default());
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
            ..JobResult::default()
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
