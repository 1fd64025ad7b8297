//! `keywarden run`: the daemon. Loads the configuration (refusing to start on any
//! problem), opens the store, serves /metrics and /healthz, schedules every job for
//! every server, and then waits for signals: SIGHUP re-reads the configuration (a
//! broken one is logged and the old one kept), SIGTERM/SIGINT stop scheduling, let
//! in-flight runs finish within the deadline, cancel the rest, and exit 0.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::EXIT_PROBLEMS;
use crate::alert::{AlertSink, DispatchOptions, Dispatcher, Pipeline, Sink, SinkOptions};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, JobKind};
use crate::http::HttpState;
use crate::jobs::RunMode;
use crate::jobs::runner::{DEFAULT_MAX_CONCURRENT_RUNS, RunOptions, Runner};
use crate::metrics::Metrics;
use crate::scheduler::{ScheduledTask, Scheduler};

/// How long in-flight runs may take to finish after SIGTERM.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How often the daemon refreshes its liveness flag and checks the heartbeat cycle.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(5);

/// How long notification sends in flight may take to finish after the scheduler stopped.
pub const DISPATCH_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

const SCHEDULED: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: true,
};

/// One scheduled task per (server, job) the server runs.
pub fn tasks(
    config: &Arc<Config>,
    runner: &Arc<Runner>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Vec<ScheduledTask>> {
    let mut tasks = Vec::new();
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

pub async fn run(path: &Path) -> anyhow::Result<u8> {
    let loaded = match crate::app::load_config(path) {
        Ok(loaded) => loaded,
        Err(report) => {
            eprint!("{report}");
            eprintln!("keywarden run: refusing to start with an invalid configuration");
            return Ok(EXIT_PROBLEMS);
        }
    };
    crate::logging::init(
        loaded.config.agent.log_format,
        crate::logging::DEFAULT_FILTER,
    );
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut config = Arc::new(loaded.config);
    let store = crate::app::open_store(&config)?;
    let metrics = Arc::new(Metrics::new(config.agent.metrics_per_key));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sinks = Sink::build_all(
        &config.alerts,
        config.agent.timezone,
        &SinkOptions::default(),
    )?;
    let pipeline =
        Pipeline::new(store.clone(), clock.clone(), &config.alerts).with_metrics(metrics.clone());
    let pipeline = Arc::new(pipeline);
    let dispatcher = Dispatcher::start(
        pipeline.clone(),
        sinks,
        DispatchOptions::new(config.alerts.max_age),
    );
    let runner = Runner::new(
        store.clone(),
        clock.clone(),
        Arc::new(AlertSink(pipeline)),
        DEFAULT_MAX_CONCURRENT_RUNS,
    )
    .with_metrics(metrics.clone());
    let runner = Arc::new(runner);
    let alive = Arc::new(AtomicBool::new(false));
    let stop_http = CancellationToken::new();
    let http_state = HttpState {
        metrics: metrics.clone(),
        store: store.clone(),
        scheduler_alive: alive.clone(),
    };
    let http = start_http(&config, http_state, stop_http.clone()).await?;
    let initial = tasks(&config, &runner, &metrics)?;
    let task_count = initial.len();
    let scheduler = Scheduler::start(config.agent.timezone, initial)
        .await
        .context("starting the scheduler")?;
    alive.store(true, Ordering::Relaxed);
    tracing::info!(config = %path.display(), servers = config.servers.len(), tasks = task_count, dry_run = config.agent.dry_run, "keywarden running");

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut tick = tokio::time::interval(LIVENESS_INTERVAL);
    let heartbeat_client = reqwest::Client::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                alive.store(scheduler.is_alive(), Ordering::Relaxed);
                outbox_gauges(&store, &metrics, clock.now());
                heartbeat(&config, &runner, &heartbeat_client).await;
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hangup.recv() => {
                if let Some(reloaded) = reload(path, &config, &runner, &metrics, &scheduler).await {
                    config = reloaded;
                }
            }
        }
    }
    alive.store(false, Ordering::Relaxed);
    let report = scheduler.shutdown(SHUTDOWN_DEADLINE).await;
    stop_http.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    if report.finished_in_time {
        tracing::info!(
            in_flight = report.in_flight_at_stop,
            "stopped; every run finished"
        );
    } else {
        tracing::warn!(
            in_flight = report.in_flight_at_stop,
            cancelled = report.cancelled,
            abandoned = report.abandoned,
            "stopped after the deadline; unfinished runs were cancelled"
        );
    }
    // After the scheduler: the last runs' notices are queued by now.
    if dispatcher.shutdown(DISPATCH_SHUTDOWN_DEADLINE).await {
        tracing::info!("alert dispatcher stopped; undelivered notifications stay queued");
    }
    Ok(super::EXIT_OK)
}

/// SIGHUP: swap in a valid new configuration, or keep the old one and say why.
async fn reload(
    path: &Path,
    current: &Arc<Config>,
    runner: &Arc<Runner>,
    metrics: &Arc<Metrics>,
    scheduler: &Scheduler,
) -> Option<Arc<Config>> {
    let loaded = match crate::config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for problem in &errors.problems {
                tracing::error!("{problem}");
            }
            tracing::error!(
                problems = errors.problems.len(),
                "SIGHUP: the new configuration is invalid; still running on the old one"
            );
            return None;
        }
    };
    let new_agent = &loaded.config.agent;
    let old_agent = &current.agent;
    if (
        &new_agent.state_dir,
        new_agent.listen,
        new_agent.metrics_per_key,
    ) != (
        &old_agent.state_dir,
        old_agent.listen,
        old_agent.metrics_per_key,
    ) {
        tracing::warn!(
            "SIGHUP: [agent] state_dir, listen and metrics_per_key take effect after a restart"
        );
    }
    if loaded.config.alerts != current.alerts {
        tracing::warn!(
            "SIGHUP: [alerts] changed; the new alert settings and sinks apply after a restart"
        );
    }
    let config = Arc::new(loaded.config);
    let swapped = match tasks(&config, runner, metrics) {
        Ok(tasks) => scheduler
            .replace(config.agent.timezone, tasks)
            .await
            .map_err(anyhow::Error::from),
        Err(error) => Err(error),
    };
    match swapped {
        Ok(()) => {
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            tracing::info!(
                servers = config.servers.len(),
                "SIGHUP: configuration reloaded"
            );
            Some(config)
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "SIGHUP: cannot apply the new configuration; still running on the old one");
            None
        }
    }
}

/// Outbox depth and the age of its oldest undelivered notification.
fn outbox_gauges(
    store: &crate::store::Store,
    metrics: &Metrics,
    now: chrono::DateTime<chrono::Utc>,
) {
    if let Ok(counts) = store.outbox_counts() {
        metrics
            .outbox_depth
            .set(counts.iter().map(|c| c.pending as i64).sum());
    }
    if let Ok(oldest) = store.oldest_pending_outbox() {
        let age = oldest
            .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics.outbox_oldest_age_seconds.set(age);
    }
}

/// Bind `[agent].listen` and serve /metrics and /healthz on it.
async fn start_http(
    config: &Config,
    state: HttpState,
    stop: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = config.agent.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (set [agent].listen, or \"\" to disable it)")
    })?;
    // Log the bound address: with port 0 (tests) that is the only way to find it.
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    tracing::info!(addr = %bound, "serving /metrics and /healthz");
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = crate::http::serve(listener, state, stop).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    })))
}

/// GET the heartbeat URL when every scheduled (server, job) ran since the last one.
async fn heartbeat(config: &Config, runner: &Runner, client: &reqwest::Client) {
    let Some(url) = &config.alerts.heartbeat_url else {
        return;
    };
    let expected: Vec<(String, JobKind)> = config
        .servers
        .iter()
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
