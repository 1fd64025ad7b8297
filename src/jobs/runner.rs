//! The runner: runs one job on one server and does everything around it that jobs
//! must not do themselves: the overlap guard, the global cap on concurrent runs,
//! backoff after consecutive transport failures, timing, recording the outcome and
//! findings in the store, handing findings on to the sink, and the run to the metrics
//! observer. With a shared fleet (PostgreSQL store) it runs a job only on a server this
//! agent leads, and stops a run whose server it stops leading. It knows no job's rules: what a run found and measured comes back in its
//! `JobResult`.
//!
//! Longer than 400 lines on purpose: every guard around a run (the in-memory overlap
//! guard, the store's lease across processes, the lost-store check, backoff) sits in the
//! one place that decides whether a run happens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::facts::Fact;
use super::metrics::MetricsObserver;
use super::sink::FindingSink;
use super::{Backoff, JobContext, JobKind, JobResult, RunMode, run_job};
use crate::clock::Clock;
use crate::config::{Config, ServerConfig};
use crate::lead::{Leadership, Mode};
use crate::metrics::Metrics;
use crate::model::{Finding, FindingChanges, Lease, RunOutcome, RunRecord};
use crate::server_api::ServerApi;
use crate::store::{LeaseGrant, Store, StoreError};

/// How long a run's lease holds unless renewed. A process killed mid-run leaves its
/// lease behind: others may take the job over this long after its last renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(90);

/// How often a run in progress renews its lease (well within `LEASE_TTL`).
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(30);

/// Runners made in this process, to tell their leases apart.
static RUNNERS: AtomicU64 = AtomicU64::new(0);

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
    /// Not run: another process held the (server, job) lease.
    pub skipped_lease: u64,
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
    /// Who holds this runner's leases ("keywarden run, pid 4242, runner 1").
    holder: String,
    /// Cancelled once the store was found deleted or replaced: the daemon stops.
    store_lost: CancellationToken,
    leadership: Leadership,
    /// Runs between their permit and their end: the last one to end hands the memory
    /// freed meanwhile back to the system.
    in_flight: std::sync::atomic::AtomicUsize,
    last_release: Mutex<Option<Instant>>,
}

/// Memory freed by runs is given back to the system at most this often (when the last
/// run in flight ends): a wave of runs builds and drops large answers and key lists.
const RELEASE_MEMORY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The lease holder name of a daemon sharing its fleet: its leases are taken over by
/// the agent that leads the server now (the holder lost it: it crashed, or was cut off
/// and stopped its runs).
const SHARED_DAEMON: &str = "keywarden run (agent ";

/// A lease holder's name: the role, this process and which of its runners.
fn holder_name(role: &str) -> String {
    let n = RUNNERS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{role}, pid {}, runner {n}", std::process::id())
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
            holder: holder_name("keywarden"),
            store_lost: CancellationToken::new(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last_release: Mutex::new(None),
        }
    }

    /// After a run on `target`: the server's key list is no longer held for the next
    /// run (`ServerApi::release_key_list`), and when no other run is in flight the
    /// allocator returns what the wave of runs freed (at most once a second).
    async fn after_run(&self, target: &Target) {
        target.api.release_key_list().await;
        use std::sync::atomic::Ordering::AcqRel;
        if self.in_flight.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        let due = {
            let mut last = lock(&self.last_release);
            let due = last.is_none_or(|at| at.elapsed() >= RELEASE_MEMORY_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            crate::process::release_free_memory();
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

    /// The lease holder name of a daemon of agent `agent` sharing a fleet.
    pub fn shared_daemon_role(agent: &str) -> String {
        format!("{SHARED_DAEMON}{agent})")
    }

    /// Name the process in this runner's leases (`keywarden run`, `keywarden check`), so
    /// a run skipped for a lease says who holds it.
    pub fn with_holder(mut self, role: &str) -> Runner {
        self.holder = holder_name(role);
        self
    }

    /// Who holds this runner's leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Cancelled when the store was found deleted or replaced (see `check_store`).
    pub fn store_lost(&self) -> &CancellationToken {
        &self.store_lost
    }

    /// Whether the store is still the one opened; when not, say so (critical) once and
    /// cancel `store_lost`. Checked before every run and by the daemon's upkeep.
    pub async fn check_store(&self) -> Result<(), StoreError> {
        let checked = self.store.check_intact().await;
        if let Err(error) = &checked
            && error.is_lost()
            && !self.store_lost.is_cancelled()
        {
            tracing::error!(severity = "critical", %error, "CRITICAL: the state store is gone");
            self.store_lost.cancel();
        }
        checked
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
    /// counted, nothing recorded), it is already running there (skipped and counted), in
    /// this process or (by its lease in the store) in another, or the server is backed
    /// off (scheduled runs only). Nothing runs on a store that is gone.
    pub async fn run(&self, target: &Target, job: JobKind, options: RunOptions) -> RunReport {
        let name = target.server.name.clone();
        if !self.leadership.leads(&name) {
            lock(&self.stats).skipped_not_leading += 1;
            return self.not_leading(target, job, "another agent leads this server");
        }
        if let Err(error) = self.check_store().await
            && error.is_lost()
        {
            return self.not_run(target, job, error.to_string());
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
        match self.lease_as_leader(&name, job).await {
            Ok(LeaseGrant::Granted) => {}
            Ok(LeaseGrant::HeldBy(lease)) => {
                lock(&self.stats).skipped_lease += 1;
                let why = format!(
                    "{name} {job} is running in another process ({}, lease until {})",
                    lease.holder,
                    crate::model::stamp(lease.expires_at)
                );
                return self.skipped(target, job, "lease", why).await;
            }
            Err(error) => {
                tracing::error!(server = %name, job = job.as_str(), %error, "cannot take the run's lease; not running");
                return self.not_run(target, job, format!("cannot take the run's lease: {error}"));
            }
        }
        let started_at = self.clock.now();
        let started = Instant::now();
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let result = self.run_renewing(target, job, options).await;
        self.after_run(target).await;
        let Some(result) = result else {
            self.release(&name, job).await;
            lock(&self.stats).stopped_not_leading += 1;
            tracing::warn!(server = %name, job = job.as_str(), "run stopped: this agent no longer leads the server (the PostgreSQL connection or its lock was lost)");
            return self.not_leading(target, job, "stopped: leadership lost mid-run");
        };
        self.release(&name, job).await;
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

    /// A run that did not start (the store is gone, or it would not give the lease): an
    /// error, recorded nowhere (the store is what failed), and not counted as a run.
    fn not_run(&self, target: &Target, job: JobKind, why: String) -> RunReport {
        RunReport {
            server: target.server.name.clone(),
            job,
            started_at: self.clock.now(),
            duration_ms: 0,
            outcome: RunOutcome::Error,
            findings: Vec::new(),
            plan: Vec::new(),
            error: Some(why),
            facts: Vec::new(),
        }
    }

    /// The lease this runner wants on (server, job) from now.
    fn wanted(&self, server: &str, job: JobKind) -> Lease {
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(LEASE_TTL).unwrap_or(chrono::Duration::MAX);
        Lease {
            server: server.to_string(),
            job,
            holder: self.holder.clone(),
            acquired_at: now,
            expires_at: now.checked_add_signed(ttl).unwrap_or(now),
        }
    }

    async fn lease(&self, server: &str, job: JobKind) -> Result<LeaseGrant, StoreError> {
        self.store.leases().acquire(&self.wanted(server, job)).await
    }

    /// The lease; with a shared fleet, one left by another agent's daemon is taken over
    /// when this agent leads the server: holding its advisory lock means that agent's
    /// session is gone, and with it that agent's runs there (a crash leaves its lease
    /// behind for `LEASE_TTL`, which would hold the takeover up). A `check`'s lease is
    /// respected.
    async fn lease_as_leader(&self, server: &str, job: JobKind) -> Result<LeaseGrant, StoreError> {
        let grant = self.lease(server, job).await?;
        if let LeaseGrant::HeldBy(lease) = &grant
            && self.leadership.mode() == Mode::Shared
            && self.leadership.leads(server)
            && lease.holder.starts_with(SHARED_DAEMON)
            && lease.holder != self.holder
        {
            tracing::info!(server, job = job.as_str(), previous = %lease.holder, "taking over the run's lease from an agent that no longer leads this server");
            self.store
                .leases()
                .release(server, job, &lease.holder)
                .await?;
            return self.lease(server, job).await;
        }
        Ok(grant)
    }

    async fn release(&self, server: &str, job: JobKind) {
        let released = self.store.leases().release(server, job, &self.holder);
        if let Err(error) = released.await {
            // It expires by itself within LEASE_TTL.
            tracing::warn!(server, job = job.as_str(), %error, "cannot give the run's lease back");
        }
    }

    /// Run the job, renewing its lease every `LEASE_RENEW_EVERY` while it goes on (a job
    /// has no overall deadline: 10 000 keys take a while).
    async fn run_renewing(
        &self,
        target: &Target,
        job: JobKind,
        options: RunOptions,
    ) -> Option<JobResult> {
        let name = target.server.name.as_str();
        let run = self.run_isolated(target, job, options);
        tokio::pin!(run);
        let first = tokio::time::Instant::now() + LEASE_RENEW_EVERY;
        let mut renew = tokio::time::interval_at(first, LEASE_RENEW_EVERY);
        loop {
            tokio::select! {
                result = &mut run => return result,
                _ = renew.tick() => match self.lease(name, job).await {
                    Ok(LeaseGrant::Granted) => {}
                    Ok(LeaseGrant::HeldBy(lease)) => tracing::error!(server = name, job = job.as_str(), holder = %lease.holder, "the run's lease was taken over"),
                    Err(error) => tracing::warn!(server = name, job = job.as_str(), %error, "cannot renew the run's lease"),
                },
            }
        }
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
        let server = target.server.name.clone();
        let target = target.clone();
        let store = self.store.clone();
        let clock = self.clock.clone();
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
