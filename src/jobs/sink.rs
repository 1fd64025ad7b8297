//! Where each run's findings go after the runner recorded them: the alert pipeline
//! (`AlertSink`), the log (`LogSink`), or a wrapper (the demo's timeline). A sink must
//! not hold the runner up for long: it is awaited on the job's task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::runner::RunReport;
use crate::alert::Pipeline;
use crate::alert::pipeline::observations;
use crate::model::{FindingChanges, Severity};

/// What `FindingSink::deliver` returns.
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where findings go after a run.
pub trait FindingSink: Send + Sync {
    fn deliver<'a>(&'a self, report: &'a RunReport, changes: &'a FindingChanges) -> SinkFuture<'a>;
}

/// Logs findings as they open and resolve.
#[derive(Debug, Default)]
pub struct LogSink;

impl LogSink {
    fn log(report: &RunReport, changes: &FindingChanges) {
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

impl FindingSink for LogSink {
    fn deliver<'a>(&'a self, report: &'a RunReport, changes: &'a FindingChanges) -> SinkFuture<'a> {
        LogSink::log(report, changes);
        Box::pin(std::future::ready(()))
    }
}

/// Logs the findings, then hands them to the alert pipeline (which only writes to the
/// store; the dispatcher does the sending).
#[derive(Debug, Clone)]
pub struct AlertSink(pub Arc<Pipeline>);

impl FindingSink for AlertSink {
    fn deliver<'a>(&'a self, report: &'a RunReport, changes: &'a FindingChanges) -> SinkFuture<'a> {
        Box::pin(async move {
            LogSink::log(report, changes);
            let observations = observations(&report.findings, &changes.resolved);
            if let Err(error) = self.0.observe(&report.server, &observations).await {
                tracing::error!(%error, server = %report.server, "cannot record alerts");
            }
        })
    }
}
