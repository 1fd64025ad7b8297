//! `keywarden run`: the daemon. Loads the configuration (refusing to start on any
//! problem) and starts the agent, then waits for signals: SIGHUP re-reads the
//! configuration (a broken one is logged and the old one kept), SIGTERM/SIGINT stop
//! scheduling, let in-flight runs finish within the deadline, cancel the rest, and
//! exit 0. A second `run` on the same state directory exits 2 (see `store::lock`). A
//! state store deleted or replaced while it runs stops it the same way, with exit 3.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::EXIT_PROBLEMS;
use crate::agent::{Agent, AgentOptions};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::{LockError, StateDirLock};

/// How long in-flight runs may take to finish after SIGTERM.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

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
    // One daemon per state directory; held until this function returns.
    let _lock = match StateDirLock::acquire(&loaded.config.agent.state_dir) {
        Ok(lock) => lock,
        Err(error @ LockError::Held { .. }) => {
            eprintln!("keywarden run: {error}");
            return Ok(EXIT_PROBLEMS);
        }
        Err(error) => return Err(error.into()),
    };
    let config = Arc::new(loaded.config);
    let options = AgentOptions::new(Arc::new(SystemClock), &config);
    let mut agent = Agent::start(config.clone(), options).await?;
    tracing::info!(config = %path.display(), servers = config.servers.len(), dry_run = config.agent.dry_run, "keywarden running");

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // Liveness, gauges and the heartbeat after runs complete (and at least once a minute),
    // not on a short timer: an idle daemon sleeps.
    let runner = agent.runner.clone();
    let mut code = super::EXIT_OK;
    loop {
        tokio::select! {
            () = crate::agent::upkeep_due(&runner) => agent.tick().await,
            () = runner.store_lost().cancelled() => {
                tracing::error!(severity = "critical", "the state store was deleted or replaced: stopping (exit 3) so that a restart opens a store at its path");
                code = super::EXIT_STORE_LOST;
                break;
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hangup.recv() => reload(path, &mut agent).await,
        }
    }
    let report = agent.shutdown(SHUTDOWN_DEADLINE).await;
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
    Ok(code)
}

/// SIGHUP: swap in a valid new configuration, or keep the old one and say why.
async fn reload(path: &Path, agent: &mut Agent) {
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
            return;
        }
    };
    warn_about_restart_only_settings(&agent.config, &loaded.config);
    let config = Arc::new(loaded.config);
    match agent.reload(config.clone()).await {
        Ok(()) => {
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            tracing::info!(
                servers = config.servers.len(),
                "SIGHUP: configuration reloaded"
            );
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "SIGHUP: cannot apply the new configuration; still running on the old one");
        }
    }
}

fn warn_about_restart_only_settings(current: &Config, new: &Config) {
    let (old_agent, new_agent) = (&current.agent, &new.agent);
    if (
        &new_agent.state_dir,
        new_agent.listen,
        new_agent.metrics_per_key,
        new_agent.max_concurrent_runs,
    ) != (
        &old_agent.state_dir,
        old_agent.listen,
        old_agent.metrics_per_key,
        old_agent.max_concurrent_runs,
    ) {
        tracing::warn!(
            "SIGHUP: [agent] state_dir, listen, metrics_per_key and max_concurrent_runs take effect after a restart"
        );
    }
    if new.alerts != current.alerts {
        tracing::warn!(
            "SIGHUP: [alerts] changed; the new alert settings and sinks apply after a restart"
        );
    }
}
