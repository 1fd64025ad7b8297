//! The metrics observer: the one place that turns finished runs (their outcome, duration
//! and typed facts, and the open findings the runner recorded) into Prometheus series.
//! It reads nothing and decides nothing.

use std::sync::Arc;
use std::time::Duration;

use super::facts::Fact;
use super::runner::RunReport;
use crate::metrics::{KeyLabels, Metrics, ResultLabels, ServerLabels};
use crate::model::quota::ActionKind;
use crate::model::{FindingChanges, JobKind, RunOutcome, Severity};

/// Records runs in `metrics`.
#[derive(Debug, Clone)]
pub struct MetricsObserver {
    metrics: Arc<Metrics>,
}

impl MetricsObserver {
    pub fn new(metrics: Arc<Metrics>) -> MetricsObserver {
        MetricsObserver { metrics }
    }

    /// A tick that did not run (`reason`: overlap, lease, backoff).
    pub fn skipped(&self, server: &str, job: JobKind, reason: &str) {
        self.metrics.job_skipped(server, job.as_str(), reason);
    }

    /// A run that finished, with what recording its findings changed (`None`: they were
    /// not recorded, so the open findings are as they were).
    pub fn finished(&self, report: &RunReport, changes: Option<&FindingChanges>) {
        let metrics = &self.metrics;
        let server = report.server.as_str();
        let took = Duration::from_millis(report.duration_ms);
        metrics.job_run(server, report.job.as_str(), report.outcome.as_str(), took);
        if report.outcome == RunOutcome::Skipped {
            return;
        }
        for fact in &report.facts {
            self.fact(server, fact);
        }
        if let Some(changes) = changes {
            let open = |severity| i64::try_from(changes.open.count(severity)).unwrap_or(i64::MAX);
            metrics.set_alerts_firing(&[
                ("critical", open(Severity::Critical)),
                ("warning", open(Severity::Warning)),
                ("info", open(Severity::Info)),
            ]);
        }
    }

    fn fact(&self, server: &str, fact: &Fact) {
        let metrics = &self.metrics;
        let by_server = || ServerLabels {
            server: server.to_string(),
        };
        let by_result = |result: &str| ResultLabels {
            server: server.to_string(),
            result: result.to_string(),
        };
        match fact {
            Fact::ServerUp(up) => metrics.set_server_up(server, *up),
            Fact::DriftDetected => {
                metrics.drift_detected.get_or_create(&by_server()).inc();
            }
            Fact::Sync(result) => {
                metrics
                    .syncs
                    .get_or_create(&by_result(result.as_str()))
                    .inc();
            }
            Fact::SyncBudgetLeft(left) => {
                let gauge = metrics.sync_budget_left.get_or_create(&by_server());
                gauge.set(i64::from(*left));
            }
            Fact::QuotaAction { kind, outcome } => {
                let family = match kind {
                    ActionKind::Reset => &metrics.resets,
                    ActionKind::Delete => &metrics.deletes,
                };
                family.get_or_create(&by_result(outcome.as_str())).inc();
            }
            Fact::XrayUp(up) => metrics.set_xray_up(server, *up),
            Fact::VlessPorts {
                probed,
                open,
                latencies,
            } => metrics.vless_ports(server, *probed, *open, latencies),
            Fact::KeyUsage { uuid, used, limit } if metrics.per_key => {
                let labels = KeyLabels {
                    server: server.to_string(),
                    key: uuid.clone(),
                };
                metrics.key_used_bytes.get_or_create(&labels).set(*used);
                if let Some(limit) = limit.filter(|limit| *limit > 0) {
                    metrics
                        .key_quota_ratio
                        .get_or_create(&labels)
                        .set(*used as f64 / limit as f64);
                }
            }
            Fact::KeyUsage { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::jobs::facts::SyncResult;
    use crate::model::OpenFindings;
    use crate::model::quota::IntentOutcome;

    fn report(job: JobKind, facts: Vec<Fact>) -> RunReport {
        RunReport {
            server: "fra-1".into(),
            job,
            started_at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
                .unwrap(),
            duration_ms: 20,
            outcome: RunOutcome::Ok,
            findings: vec![],
            plan: vec![],
            error: None,
            facts,
        }
    }

    #[test]
    fn facts_become_series() {
        let metrics = Arc::new(Metrics::new(true));
        let observer = MetricsObserver::new(metrics.clone());
        let changes = FindingChanges {
            open: OpenFindings {
                info: 0,
                warning: 2,
                critical: 1,
            },
            ..FindingChanges::default()
        };
        let health = vec![Fact::ServerUp(false), Fact::XrayUp(true)];
        observer.finished(&report(JobKind::Health, health), None);
        let ports = Fact::VlessPorts {
            probed: 3,
            open: 2,
            latencies: vec![Duration::from_millis(2), Duration::from_millis(3)],
        };
        observer.finished(&report(JobKind::Dataplane, vec![ports]), None);
        let sync = vec![
            Fact::DriftDetected,
            Fact::Sync(SyncResult::Repaired),
            Fact::SyncBudgetLeft(3),
        ];
        observer.finished(&report(JobKind::ConfigSync, sync), Some(&changes));
        let quota = vec![
            Fact::QuotaAction {
                kind: ActionKind::Reset,
                outcome: IntentOutcome::NotApplied,
            },
            Fact::QuotaAction {
                kind: ActionKind::Delete,
                outcome: IntentOutcome::AlreadyGone,
            },
            Fact::KeyUsage {
                uuid: "u1".into(),
                used: 512,
                limit: Some(1024),
            },
            Fact::KeyUsage {
                uuid: "u2".into(),
                used: 7,
                limit: None,
            },
        ];
        observer.finished(&report(JobKind::Quota, quota), None);
        observer.skipped("fra-1", JobKind::Reality, "overlap");
        let text = metrics.encode();
        for expected in [
            "keywarden_server_up{server=\"fra-1\"} 0",
            "keywarden_xray_up{server=\"fra-1\"} 1",
            "keywarden_vless_ports_probed{server=\"fra-1\"} 3",
            "keywarden_vless_ports_up{server=\"fra-1\"} 2",
            "keywarden_vless_handshake_duration_seconds_count{server=\"fra-1\"} 2",
            "keywarden_drift_detected_total{server=\"fra-1\"} 1",
            "keywarden_syncs_total{server=\"fra-1\",result=\"repaired\"} 1",
            "keywarden_sync_budget_left{server=\"fra-1\"} 3",
            "keywarden_resets_total{server=\"fra-1\",result=\"not_applied\"} 1",
            "keywarden_deletes_total{server=\"fra-1\",result=\"already_gone\"} 1",
            "keywarden_key_used_bytes{server=\"fra-1\",key=\"u1\"} 512",
            "keywarden_key_quota_ratio{server=\"fra-1\",key=\"u1\"} 0.5",
            "keywarden_key_used_bytes{server=\"fra-1\",key=\"u2\"} 7",
            "keywarden_alerts_firing{severity=\"critical\"} 1",
            "keywarden_alerts_firing{severity=\"warning\"} 2",
            "keywarden_job_runs_total{server=\"fra-1\",job=\"quota\",outcome=\"ok\"} 1",
            "keywarden_job_skipped_total{server=\"fra-1\",job=\"reality\",outcome=\"overlap\"} 1",
        ] {
            assert!(text.contains(expected), "missing {expected} in\n{text}");
        }
        assert!(
            !text.contains("keywarden_key_quota_ratio{server=\"fra-1\",key=\"u2\"}"),
            "no ratio without a limit"
        );
    }
}
