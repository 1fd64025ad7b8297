//! `keywarden check`: run the chosen jobs once now, with the same runner and job code
//! as the daemon, print a report, and exit like a Nagios plugin.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::alert::flush_right::FlushRight;
use crate::alert::pipeline::CHECK_NOTIFY_DEADLINE;
use crate::alert::{DispatchOptions, FlushReport, Pipeline, Sink, SinkOptions};
use crate::clock::{Clock, SystemClock};
use crate::jobs::runner::{RunOptions, RunReport, Runner, Target};
use crate::jobs::{AlertSink, FindingSink, LogSink, RunMode};
use crate::model::{JobKind, RunOutcome, Severity};
use crate::terminal::Shown;

/// Nagios exit codes.
pub const OK: u8 = 0;
pub const WARNING: u8 = 1;
pub const CRITICAL: u8 = 2;
pub const UNKNOWN: u8 = 3;

/// How far apart `check` re-reads the sync status to gather confirmations.
pub const CHECK_REREAD_INTERVAL: Duration = Duration::from_secs(1);

pub struct CheckArgs {
    pub jobs: Vec<JobKind>,
    pub server: Option<String>,
    pub dry_run: bool,
    pub notify: bool,
    pub json: bool,
}

/// The whole check, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// OK | WARNING | CRITICAL | UNKNOWN
    pub status: &'static str,
    pub exit_code: u8,
    pub dry_run: bool,
    pub runs: Vec<RunReport>,
    /// With `--notify`: what was delivered and what stays queued for the daemon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<FlushReport>,
}

/// The exit code for a set of runs (pure): the worst finding, and a run that could
/// not reach its server counts as critical.
pub fn exit_code(runs: &[RunReport]) -> u8 {
    runs.iter()
        .map(|run| match run.outcome {
            RunOutcome::Critical | RunOutcome::Error => CRITICAL,
            RunOutcome::Warning => WARNING,
            RunOutcome::Ok | RunOutcome::Skipped => OK,
        })
        .max()
        .unwrap_or(OK)
}

pub fn status_name(code: u8) -> &'static str {
    match code {
        OK => "OK",
        WARNING => "WARNING",
        CRITICAL => "CRITICAL",
        _ => "UNKNOWN",
    }
}

pub async fn run(path: &Path, args: &CheckArgs) -> anyhow::Result<u8> {
    crate::logging::init(crate::logging::LogFormat::Auto, "warn");
    let loaded = match crate::app::load_config(path) {
        Ok(loaded) => loaded,
        Err(report) => {
            eprint!("{report}");
            crate::outln!("UNKNOWN: the configuration is invalid")?;
            return Ok(UNKNOWN);
        }
    };
    let config = Arc::new(loaded.config);
    let prepared = match crate::app::open_store(&config).await {
        Ok(store) => crate::app::targets(&config, args.server.as_deref()).map(|t| (store, t)),
        Err(error) => Err(error),
    };
    let (store, targets) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            eprintln!("keywarden check: {error:#}");
            crate::outln!("UNKNOWN: {error:#}")?;
            return Ok(UNKNOWN);
        }
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Without --notify, findings are only recorded (and logged): the alert state is
    // left alone, so the daemon still announces them.
    let notify = if args.notify {
        match Sink::build_all(
            &config.alerts,
            config.agent.timezone,
            &SinkOptions::default(),
        ) {
            Ok(sinks) => {
                let pipeline = Pipeline::new(store.clone(), clock.clone(), &config.alerts);
                Some((Arc::new(pipeline.without_group_wait()), sinks))
            }
            Err(error) => {
                eprintln!("keywarden check: {error}");
                crate::outln!("UNKNOWN: {error}")?;
                return Ok(UNKNOWN);
            }
        }
    } else {
        None
    };
    let sink: Arc<dyn FindingSink> = match &notify {
        Some((pipeline, _)) => Arc::new(AlertSink(pipeline.clone())),
        None => Arc::new(LogSink),
    };
    let runner = Runner::new(store, clock, sink, config.agent.max_concurrent_runs)
        .with_holder("keywarden check");
    let runner = Arc::new(runner);
    let options = RunOptions {
        dry_run: args.dry_run,
        mode: RunMode::Check {
            reread_interval: CHECK_REREAD_INTERVAL,
        },
        respect_backoff: false,
    };
    let runs = run_all(&runner, targets, &args.jobs, options).await;
    let code = exit_code(&runs);
    let notifications = match notify {
        // Delivered here only while no daemon delivers the same outbox (else each
        // notice would go out twice): see alert::flush_right.
        Some((pipeline, sinks)) => Some(match crate::alert::flush_right::claim(&config).await {
            FlushRight::Granted(_right) => {
                crate::alert::flush(
                    pipeline,
                    sinks,
                    DispatchOptions::new(config.alerts.max_age),
                    CHECK_NOTIFY_DEADLINE,
                )
                .await
            }
            FlushRight::Elsewhere(holder) => {
                crate::alert::left_queued(&pipeline, &sinks, holder).await
            }
        }),
        None => None,
    };
    let report = CheckReport {
        status: status_name(code),
        exit_code: code,
        dry_run: args.dry_run || config.agent.dry_run,
        runs,
        notifications,
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::output::print(&render_text(&report))?;
    }
    Ok(code)
}

/// Servers run concurrently; each server's jobs run in order (health first).
pub async fn run_all(
    runner: &Arc<Runner>,
    targets: Vec<Target>,
    jobs: &[JobKind],
    options: RunOptions,
) -> Vec<RunReport> {
    let mut tasks = Vec::new();
    for target in targets {
        let runner = runner.clone();
        let jobs: Vec<JobKind> = jobs
            .iter()
            .copied()
            .filter(|job| target.server.runs(*job))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut reports = Vec::new();
            for job in jobs {
                reports.push(runner.run(&target, job, options).await);
            }
            reports
        }));
    }
    let mut runs = Vec::new();
    for task in tasks {
        match task.await {
            Ok(reports) => runs.extend(reports),
            Err(error) => tracing::error!(%error, "a server's checks panicked"),
        }
    }
    runs
}

/// The text report (pure). Text that came from servers is escaped for the terminal.
pub fn render_text(report: &CheckReport) -> String {
    let mut out = String::new();
    let dry = if report.dry_run {
        " (dry run: nothing was changed)"
    } else {
        ""
    };
    let findings: usize = report.runs.iter().map(|r| r.findings.len()).sum();
    let _ = writeln!(
        out,
        "{}: {} runs, {findings} findings{dry}",
        report.status,
        report.runs.len()
    );
    for run in &report.runs {
        let _ = writeln!(
            out,
            "\n{} {}: {} ({} ms)",
            run.server,
            run.job.as_str(),
            run.outcome.as_str().to_uppercase(),
            run.duration_ms
        );
        for line in &run.plan {
            let _ = writeln!(out, "  - {}", Shown(line));
        }
        if let Some(error) = &run.error {
            let label = match run.outcome {
                RunOutcome::Skipped => "skipped",
                _ => "error",
            };
            let _ = writeln!(out, "  {label}: {}", Shown(error));
        }
        for finding in &run.findings {
            let severity = match finding.severity {
                Severity::Critical => "CRITICAL",
                Severity::Warning => "WARNING",
                Severity::Info => "INFO",
            };
            let _ = writeln!(
                out,
                "  [{severity}] {} ({})",
                Shown(&finding.summary),
                finding.kind.as_str()
            );
            for line in finding.details.lines() {
                let _ = writeln!(out, "      {}", Shown(line));
            }
        }
    }
    if let Some(notifications) = &report.notifications {
        let _ = writeln!(
            out,
            "\nnotifications: {} delivered",
            notifications.delivered
        );
        if let Some(holder) = &notifications.left_for {
            let _ = writeln!(
                out,
                "  not delivered here: {} delivers this outbox",
                Shown(holder)
            );
        }
        let for_whom = match notifications.left_for {
            Some(_) => "left queued for it",
            None => "left queued for the daemon",
        };
        for left in &notifications.undelivered {
            let _ = writeln!(
                out,
                "  {}: {} not delivered, {for_whom} (last error: {})",
                left.sink,
                left.pending,
                Shown(left.last_error.as_deref().unwrap_or("none yet"))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: RunOutcome) -> RunReport {
        RunReport {
            server: "fra-1".into(),
            job: JobKind::Health,
            started_at: chrono::Utc::now(),
            duration_ms: 1,
            outcome,
            findings: vec![],
            plan: vec![],
            error: None,
            facts: vec![],
        }
    }

    #[test]
    fn exit_codes_follow_the_worst_run() {
        assert_eq!(exit_code(&[]), OK);
        assert_eq!(
            exit_code(&[run(RunOutcome::Ok), run(RunOutcome::Skipped)]),
            OK
        );
        assert_eq!(
            exit_code(&[run(RunOutcome::Ok), run(RunOutcome::Warning)]),
            WARNING
        );
        assert_eq!(
            exit_code(&[run(RunOutcome::Warning), run(RunOutcome::Critical)]),
            CRITICAL
        );
        assert_eq!(
            exit_code(&[run(RunOutcome::Error)]),
            CRITICAL,
            "an unreachable server is critical"
        );
    }
}
