//! The demo's readable, timestamped timeline: what keywarden saw, decided and did, and
//! which alerts it sent. A `FindingSink` that prints each run's plan and findings, in
//! front of the real alert pipeline.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Severity;
use crate::jobs::runner::{FindingSink, RunReport};
use crate::store::FindingChanges;

/// Prints lines as `[+12.3s] who        text`.
#[derive(Clone)]
pub struct Timeline {
    started: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            started: Instant::now(),
            lines: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Timeline {
    pub fn say(&self, who: &str, text: &str) {
        let line = format!(
            "[+{:5.1}s] {who:<10} {text}",
            self.started.elapsed().as_secs_f64()
        );
        // A closed stdout stops the printing, not the demo; other errors are not ours
        // to handle in a timeline.
        let _ = crate::outln!("{line}");
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Everything printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|line| line.contains(needle))
    }
}

/// Prints what each run decided and found, then passes the run on to `next`.
pub struct TimelineSink {
    pub timeline: Timeline,
    pub next: Arc<dyn FindingSink>,
}

impl FindingSink for TimelineSink {
    fn deliver(&self, report: &RunReport, changes: &FindingChanges) {
        // Runs that found nothing and changed nothing would drown the story.
        let eventful =
            !report.findings.is_empty() || !changes.resolved.is_empty() || report.error.is_some();
        if eventful {
            for line in &report.plan {
                let text = format!("{} {}: {line}", report.server, report.job.as_str());
                self.timeline.say("keywarden", &text);
            }
        }
        for finding in &report.findings {
            if changes.opened.contains(&finding.fingerprint()) {
                let severity = match finding.severity {
                    Severity::Critical => "CRITICAL",
                    Severity::Warning => "WARNING",
                    Severity::Info => "info",
                };
                self.timeline.say(
                    "finding",
                    &format!("{severity} {} ({})", finding.summary, finding.kind.as_str()),
                );
            }
        }
        // One-shot notices (a quota warning) "resolve" by design at the next run.
        let one_shot =
            |kind: &str| crate::finding::FindingKind::parse(kind).is_some_and(|k| k.is_one_shot());
        for resolved in changes.resolved.iter().filter(|r| !one_shot(&r.kind)) {
            self.timeline.say(
                "finding",
                &format!("resolved: {} ({})", resolved.summary, resolved.kind),
            );
        }
        self.next.deliver(report, changes);
    }
}
