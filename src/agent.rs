//! The running agent: store, metrics, alert pipeline and dispatcher, runner, scheduler
//! and the /metrics endpoint, started and stopped as one. `keywarden run` drives it
//! from signals; `keywarden demo` drives the very same agent against the simulator.
//!
//! Longer than 400 lines on purpose: the daemon's whole wiring (store, leadership, runner,
//! scheduled tasks, listener, shutdown) in the order it starts, read top to bottom.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::alert::{DispatchOptions, Dispatcher, Pipeline, Sink, SinkOptions};
use crate::clock::Clock;
use crate::config::{Config, JobKind};
use crate::http::HttpState;
use crate::jobs::runner::{RunOptions, Runner};
use crate::jobs::{AlertSink, FindingSink, RunMode};
use crate::lead::Leadership;
use crate::metrics::Metrics;
use crate::report::job::ReportJob;
use crate::scheduler::{ScheduledTask, Scheduler, ShutdownReport};
use crate::store::Store;

/// How long notification sends in flight may take to finish after the scheduler stopped.
pub const DISPATCH_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// How long leaving the fleet (deleting our row, closing the lock connection) may take.
pub const LEADER_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Upkeep ([`Agent::tick`]) follows completed runs; with no run for this long it happens
/// anyway, so liveness and the outbox age gauge are never older than this while idle.
pub const UPKEEP_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// Resolves when upkeep is worth doing: a run completed, or `UPKEEP_AT_LEAST_EVERY`
/// passed. The daemon waits on this instead of a short timer, so an idle agent does not
/// wake up for nothing.
pub async fn upkeep_due(runner: &Runner) {
    tokio::select! {
        () = runner.cycle().next_completion() => {}
        () = tokio::time::sleep(UPKEEP_AT_LEAST_EVERY) => {}
    }
}

const SCHEDULED: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: true,
};

/// Wraps the alert sink, e.g. to print a timeline in front of it (the demo).
pub type SinkWrapper = Box<dyn FnOnce(Arc<dyn FindingSink>) -> Arc<dyn FindingSink> + Send>;

/// How to start an agent beyond its configuration.
pub struct AgentOptions {
    pub clock: Arc<dyn Clock>,
    pub sinks: SinkOptions,
    /// Where the scheduled report's Slack uploads go (tests: a loopback receiver).
    pub report_delivery: crate::report::deliver::DeliveryOptions,
    pub dispatch: DispatchOptions,
    pub wrap_sink: Option<SinkWrapper>,
    /// Who leads what; `None`: decided by `[agent] store` (solo with SQLite).
    pub leadership: Option<Leadership>,
}

impl AgentOptions {
    pub fn new(clock: Arc<dyn Clock>, config: &Config) -> AgentOptions {
        AgentOptions {
            clock,
            sinks: SinkOptions::default(),
            report_delivery: Default::default(),
            dispatch: DispatchOptions::for_daemon(
                config.alerts.max_age,
                config.store.postgres().is_some(),
            ),
            wrap_sink: None,
            leadership: None,
        }
    }
}

/// A started agent.
pub struct Agent {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub runner: Arc<Runner>,
    pub clock: Arc<dyn Clock>,
    /// Which servers this agent acts on (all of them, unless the fleet is shared).
    pub leadership: Leadership,
    /// The scheduled usage report (its tasks exist only when `[reports].sinks` is set).
    pub reports: Arc<ReportJob>,
    scheduler: Scheduler,
    dispatcher: Dispatcher,
    /// The leader task (PostgreSQL store only).
    leader: Option<crate::lead::postgres::Leader>,
    /// SQLite store: the right to deliver the outbox, held for the agent's life so that
    /// `check --notify` beside it leaves the notices to this dispatcher.
    _dispatch_right: Option<crate::store::DispatchLock>,
    alive: Arc<AtomicBool>,
    stop_http: CancellationToken,
    http: Option<tokio::task::JoinHandle<()>>,
    /// Where /metrics and /healthz are served, when enabled.
    pub http_addr: Option<std::net::SocketAddr>,
    heartbeat_client: reqwest::Client,
}

impl Agent {
    pub async fn start(config: Arc<Config>, options: AgentOptions) -> anyhow::Result<Agent> {
        let store = crate::app::open_store(&config).await?;
        let metrics = Arc::new(Metrics::new(config.agent.metrics_per_key));
        let clock = options.clock;
        let sinks = Sink::build_all(&config.alerts, config.agent.timezone, &options.sinks)?;
        // The webhook sinks' client: one connection pool and root store for both.
        let heartbeat_client = options
            .sinks
            .http
            .notifications()
            .map_err(|error| anyhow::anyhow!("heartbeat HTTP client: {error}"))?;
        let reports = Arc::new(ReportJob {
            store: store.clone(),
            clock: clock.clone(),
            sinks: options.sinks.clone(),
            delivery: options.report_delivery.clone(),
            metrics: Some(metrics.clone()),
        });
        let pipeline = Pipeline::new(store.clone(), clock.clone(), &config.alerts)
            .with_metrics(metrics.clone());
        let pipeline = Arc::new(pipeline);
        let mut dispatch_right = None;
        let (leadership, leader) = match (options.leadership, config.store.postgres()) {
            (Some(given), _) => (given, None),
            (None, None) => {
                dispatch_right = Some(dispatch_right_waiting(&config.agent.state_dir).await?);
                (Leadership::solo(), None)
            }
            (None, Some(pg)) => {
                let (leadership, leader) = start_leader(&config, pg, &metrics)?;
                (leadership, Some(leader))
            }
        };
        crate::lead::set_gauges(&metrics, &leadership.snapshot(), config.servers.len());
        let dispatcher = Dispatcher::start_led(
            pipeline.clone(),
            sinks,
            options.dispatch,
            leadership.clone(),
        );
        let mut sink: Arc<dyn FindingSink> = Arc::new(AlertSink(pipeline));
        if let Some(wrap) = options.wrap_sink {
            sink = wrap(sink);
        }
        let runner = Runner::new(
            store.clone(),
            clock.clone(),
            sink,
            config.agent.max_concurrent_runs,
        )
        .with_holder(&match config.store.postgres() {
            Some(pg) => Runner::shared_daemon_role(&pg.agent_name),
            None => "keywarden run".to_string(),
        })
        .with_metrics(metrics.clone())
        .with_leadership(leadership.clone());
        let runner = Arc::new(runner);
        let alive = Arc::new(AtomicBool::new(false));
        let stop_http = CancellationToken::new();
        let http_state = HttpState {
            metrics: metrics.clone(),
            store: store.clone(),
            scheduler_alive: alive.clone(),
        };
        let (http, http_addr) =
            start_http(&config, http_state, leadership.clone(), stop_http.clone()).await?;
        let scheduler = Scheduler::start(
            config.agent.timezone,
            tasks(&config, &runner, &metrics, &reports)?,
        )
        .await
        .context("starting the scheduler")?;
        alive.store(true, Ordering::Relaxed);
        Ok(Agent {
            config,
            store,
            metrics,
            runner,
            clock,
            leadership,
            reports,
            scheduler,
            dispatcher,
            leader,
            _dispatch_right: dispatch_right,
            alive,
            stop_http,
            http,
            http_addr,
            heartbeat_client,
        })
    }

    /// Swap in a new configuration's servers and schedules. [agent] and [alerts]
    /// settings apply after a restart.
    pub async fn reload(&mut self, config: Arc<Config>) -> anyhow::Result<()> {
        let tasks = tasks(&config, &self.runner, &self.metrics, &self.reports)?;
        self.scheduler.replace(config.agent.timezone, tasks).await?;
        if let Some(leader) = &self.leader {
            leader.set_servers(config.servers.iter().map(|s| s.name.clone()).collect());
        }
        if self.leadership.mode() == crate::lead::Mode::Solo {
            let snapshot = self.leadership.snapshot();
            crate::lead::set_gauges(&self.metrics, &snapshot, config.servers.len());
        }
        self.config = config;
        Ok(())
    }

    /// Periodic upkeep: the store still the one opened (else `runner.store_lost()`
    /// fires), liveness for /healthz, outbox gauges, the heartbeat. (The memory runs
    /// freed goes back to the system when the last run in flight ends: the runner.)
    pub async fn tick(&self) {
        let _ = self.runner.check_store().await;
        self.alive
            .store(self.scheduler.is_alive(), Ordering::Relaxed);
        outbox_gauges(&self.store, &self.metrics, self.clock.now()).await;
        heartbeat(&self.config, &self.runner, &self.heartbeat_client).await;
    }

    /// Stop scheduling, let runs in flight finish within `deadline`, then stop the
    /// dispatcher (undelivered notifications stay queued) and the HTTP endpoint.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.alive.store(false, Ordering::Relaxed);
        let report = self.scheduler.shutdown(deadline).await;
        // After the scheduler: the last runs' notices are queued by now.
        if self.dispatcher.shutdown(DISPATCH_SHUTDOWN_DEADLINE).await {
            tracing::info!("alert dispatcher stopped; undelivered notifications stay queued");
        }
        // Last: the runs and sends above were allowed to finish under our locks.
        if let Some(leader) = self.leader {
            leader.shutdown(LEADER_SHUTDOWN_DEADLINE).await;
            tracing::info!("left the fleet: locks released for the other agents");
        }
        self.stop_http.cancel();
        if let Some(http) = self.http {
            let _ = http.await;
        }
        report
    }
}

/// One scheduled task per (server, job) the server runs, and the report's two tasks (its
/// schedule, and the hourly retry / catch-up) when `[reports].sinks` is set. With a
/// shared fleet the report is sent by the agent leading the alert dispatcher only.
pub fn tasks(
    config: &Arc<Config>,
    runner: &Arc<Runner>,
    metrics: &Arc<Metrics>,
    reports: &Arc<ReportJob>,
) -> anyhow::Result<Vec<ScheduledTask>> {
    let mut tasks = Vec::new();
    if !config.reports.sinks.is_empty() {
        let retry = crate::config::Schedule::parse(crate::report::job::RETRY_SCHEDULE)
            .map_err(anyhow::Error::msg)?;
        for (id, schedule) in [
            ("reports", config.reports.schedule.clone()),
            ("reports/retry", retry),
        ] {
            let (reports, config) = (reports.clone(), config.clone());
            let leadership = runner.leadership().clone();
            tasks.push(ScheduledTask::new(id, schedule, move |cancelled| {
                let (reports, config) = (reports.clone(), config.clone());
                let leads = leadership.leads_dispatcher();
                async move {
                    if !leads {
                        tracing::debug!(
                            "scheduled report skipped: another agent leads the alert dispatcher"
                        );
                        return;
                    }
                    tokio::select! {
                        _ = cancelled.cancelled() => tracing::warn!("report cancelled at shutdown"),
                        _ = reports.run_due(&config) => {}
                    }
                }
            }));
        }
    }
    tasks.push(maintenance_task(config, reports));
    for target in crate::app::targets_with_metrics(config, None, Some(metrics.clone()))? {
        for job in JobKind::ALL
            .into_iter()
            .filter(|job| target.server.runs(*job))
        {
            let runner = runner.clone();
            let target = target.clone();
            let id = format!("{}/{}", target.server.name, job.as_str());
            let schedule = config.jobs.schedule(job).clone();
            tasks.push(ScheduledTask::new(id, schedule, move |cancelled| {
                let runner = runner.clone();
                let target = target.clone();
                async move {
                    tokio::select! {
                        _ = cancelled.cancelled() => {
                            tracing::warn!(server = %target.server.name, job = job.as_str(), "run cancelled at shutdown");
                        }
                        _ = runner.run(&target, job, SCHEDULED) => {}
                    }
                }
            }));
        }
    }
    Ok(tasks)
}

/// The SQLite store's right to deliver the outbox (`store::DispatchLock`). A `check
/// --notify` holds it for at most its flush deadline: wait that long (and a little),
/// then refuse to start, loudly, rather than deliver every notice twice.
async fn dispatch_right_waiting(
    state_dir: &std::path::Path,
) -> anyhow::Result<crate::store::DispatchLock> {
    use crate::store::{DispatchLock, LockError};
    let patience = crate::alert::CHECK_NOTIFY_DEADLINE + Duration::from_secs(15);
    let started = tokio::time::Instant::now();
    let mut said = false;
    loop {
        match DispatchLock::acquire(state_dir) {
            Ok(right) => return Ok(right),
            Err(LockError::Held { holder, .. }) if started.elapsed() < patience => {
                if !said {
                    tracing::info!(%holder, "waiting for `keywarden check --notify` to finish delivering before this dispatcher starts");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(LockError::Held { holder, .. }) => {
                return Err(anyhow::anyhow!(
                    "the alert outbox's delivery right is still held after {}s ({holder}); stop that process (a stuck `keywarden check --notify` or another agent on this state directory)",
                    patience.as_secs()
                ));
            }
            Err(error) => return Err(anyhow::anyhow!("alert outbox delivery right: {error}")),
        }
    }
}

/// With the PostgreSQL store: the leader task on its own dedicated connection.
fn start_leader(
    config: &Config,
    pg: &crate::config::PgConfig,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Leadership, crate::lead::postgres::Leader)> {
    use crate::lead::postgres::{Leader, LeaderOptions};
    let connector = crate::store::postgres::PgConnector::from_config(pg)
        .context("preparing the PostgreSQL leadership connection")?;
    let servers = config.servers.iter().map(|s| s.name.clone()).collect();
    tracing::info!(agent = %pg.agent_name, store = %connector.location(), "sharing the fleet: acting only on servers this agent leads");
    Ok(Leader::start(
        LeaderOptions::from_config(pg),
        servers,
        connector,
        Some(metrics.clone()),
    ))
}

/// The daily store maintenance (`[retention]`), on the report job's store and clock.
fn maintenance_task(config: &Arc<Config>, reports: &Arc<ReportJob>) -> ScheduledTask {
    let (store, clock) = (reports.store.clone(), reports.clock.clone());
    let retention = config.retention.clone();
    let schedule = retention.schedule.clone();
    ScheduledTask::new(
        crate::jobs::maintenance::TASK_ID,
        schedule,
        move |cancelled| {
            let (store, clock, retention) = (store.clone(), clock.clone(), retention.clone());
            async move {
                let run = crate::jobs::maintenance::run(&store, &retention, clock.now());
                tokio::select! {
                    _ = cancelled.cancelled() => tracing::warn!("store maintenance cancelled at shutdown"),
                    result = run => if let Err(error) = result {
                        tracing::error!(%error, "store maintenance failed; it runs again tomorrow");
                    }
                }
            }
        },
    )
}

type HttpTask = (
    Option<tokio::task::JoinHandle<()>>,
    Option<std::net::SocketAddr>,
);

/// Bind `[agent].listen` and serve /metrics and /healthz on it.
async fn start_http(
    config: &Config,
    state: HttpState,
    leadership: Leadership,
    stop: CancellationToken,
) -> anyhow::Result<HttpTask> {
    let Some(addr) = config.agent.listen else {
        return Ok((None, None));
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (set [agent].listen, or \"\" to disable it)")
    })?;
    let bound = listener.local_addr().ok();
    // Log the bound address: with port 0 (tests) that is the only way to find it.
    tracing::info!(addr = %bound.unwrap_or(addr), "serving /metrics and /healthz");
    let task = tokio::spawn(async move {
        if let Err(error) = crate::http::serve_led(listener, state, leadership, stop).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok((Some(task), bound))
}

/// Outbox depth and the age of its oldest undelivered notification.
async fn outbox_gauges(store: &Store, metrics: &Metrics, now: chrono::DateTime<chrono::Utc>) {
    if let Ok(counts) = store.alerts().counts().await {
        metrics
            .outbox_depth
            .set(counts.iter().map(|c| c.pending as i64).sum());
    }
    if let Ok(oldest) = store.alerts().oldest_pending().await {
        let age = oldest
            .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics.outbox_oldest_age_seconds.set(age);
    }
}

/// GET the heartbeat URL when every scheduled (server, job) ran since the last one. With
/// a shared fleet: every (server, job) of the servers this agent leads; an agent leading
/// nothing (a standby, or disconnected) vouches for nothing and sends none.
async fn heartbeat(config: &Config, runner: &Runner, client: &reqwest::Client) {
    let Some(url) = &config.alerts.heartbeat_url else {
        return;
    };
    let leadership = runner.leadership();
    let expected: Vec<(String, JobKind)> = config
        .servers
        .iter()
        .filter(|server| leadership.leads(&server.name))
        .flat_map(|server| {
            JobKind::ALL
                .into_iter()
                .filter(|job| server.runs(*job))
                .map(|job| (server.name.clone(), job))
        })
        .collect();
    if !runner.cycle().take_if_complete(&expected) {
        return;
    }
    match crate::heartbeat::ping(client, url).await {
        Ok(()) => tracing::debug!("heartbeat sent"),
        Err(error) => tracing::warn!(%error, "heartbeat failed"),
    }
}
