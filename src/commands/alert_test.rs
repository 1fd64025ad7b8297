//! `keywarden alert-test`: send a test notification to each sink (or one) right now,
//! bypassing the outbox's schedule but not its bookkeeping, and print per sink
//! "delivered" or the error. Exit 0 if every sink delivered, 2 otherwise.

use std::path::Path;
use std::sync::Arc;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::alert::{Pipeline, Sink, SinkOptions, send_test};
use crate::clock::SystemClock;

pub async fn run(path: &Path, only: Option<&str>) -> anyhow::Result<u8> {
    crate::logging::init(crate::logging::LogFormat::Auto, "warn");
    let config = match crate::app::load_config(path) {
        Ok(loaded) => loaded.config,
        Err(report) => {
            eprint!("{report}");
            return Ok(EXIT_PROBLEMS);
        }
    };
    run_with(&config, only, &SinkOptions::default()).await
}

/// The command on a loaded configuration (tests pass their own sink options).
pub async fn run_with(
    config: &crate::config::Config,
    only: Option<&str>,
    options: &SinkOptions,
) -> anyhow::Result<u8> {
    let sinks = match Sink::build_all(&config.alerts, config.agent.timezone, options) {
        Ok(sinks) => sinks,
        Err(error) => {
            crate::outln!("{error}")?;
            return Ok(EXIT_PROBLEMS);
        }
    };
    let names: Vec<String> = sinks.iter().map(|s| s.name().to_string()).collect();
    let chosen: Vec<&Sink> = sinks
        .iter()
        .filter(|sink| only.is_none_or(|name| sink.name() == name))
        .collect();
    if chosen.is_empty() {
        match only {
            Some(name) if !names.is_empty() => {
                crate::outln!("no sink named {name:?} (configured: {})", names.join(", "))?
            }
            _ => crate::outln!("no alert sinks configured ([[alerts.email]], [[alerts.webhook]])")?,
        }
        return Ok(EXIT_PROBLEMS);
    }
    let store = crate::app::open_store(config)?;
    let pipeline = Pipeline::new(store, Arc::new(SystemClock), &config.alerts);
    // All sinks at once: a slow one does not hold up the others' verdicts.
    let results = futures_join(chosen.iter().map(|sink| send_test(&pipeline, sink))).await;
    let mut all_delivered = true;
    for (sink, result) in chosen.iter().zip(results) {
        match result {
            Ok(()) => crate::outln!("{}: delivered", sink.name())?,
            Err(error) => {
                all_delivered = false;
                crate::outln!(
                    "{}: FAILED: {}",
                    sink.name(),
                    crate::terminal::escape(&error)
                )?;
            }
        }
    }
    Ok(if all_delivered {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    })
}

/// Await all futures concurrently, results in order.
async fn futures_join<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.map(Box::pin).map(Some).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => {
                        *result = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}
