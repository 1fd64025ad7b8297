//! The health job: is the server there, does it accept our key, is its traffic monitor
//! on? It reads GET /api/ (version, latency) and the key list (an authenticated call,
//! shared through the client's cache), and on 1.x the traffic monitor status.

use std::time::Instant;

use crate::config::{JobKind, Severity};
use crate::finding::{Finding, FindingKind};
use crate::server_api::{ApiError, ApiErrorKind, Generation};
use crate::store::{AvailabilitySample, AvailabilitySeries};

use super::{JobContext, JobResult};

/// What one health check saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Up {
        version: String,
        latency_ms: u64,
        /// None when the authenticated read worked; the error otherwise.
        auth_error: Option<ApiErrorKind>,
        /// 1.x only: whether the precise traffic monitor is available.
        precise_monitor: Option<bool>,
    },
    Down {
        error: String,
        /// Consecutive failed checks, this one included (kept in the store).
        consecutive_failures: u32,
    },
}

/// Whether an error means "the server is not there" (as opposed to "it answered").
pub fn is_outage(error: &ApiError) -> bool {
    error.is_transient() && !matches!(error.kind, ApiErrorKind::RateLimited { .. })
}

async fn observe(ctx: &JobContext<'_>) -> Result<Observed, ApiError> {
    let started = Instant::now();
    let now = ctx.clock.now();
    let status = match ctx.api.api_status().await {
        Ok(status) => status,
        Err(error) if is_outage(&error) => {
            let consecutive_failures = ctx
                .store
                .note_server_down(&ctx.server.name, &error.to_string(), now)
                .unwrap_or_else(|store_error| {
                    tracing::error!(server = %ctx.server.name, error = %store_error, "cannot record the failed health check");
                    1
                });
            record_availability(ctx, now, false);
            return Ok(Observed::Down {
                error: error.to_string(),
                consecutive_failures,
            });
        }
        Err(error) => return Err(error),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    record_availability(ctx, now, true);
    if let Err(error) = ctx
        .store
        .note_server_up(&ctx.server.name, &status.version, now)
    {
        tracing::error!(server = %ctx.server.name, %error, "cannot record the health check");
    }
    let auth_error = match ctx.api.list_keys().await {
        Ok(_) => None,
        Err(error) => Some(error.kind),
    };
    let precise_monitor = match Generation::from_version(&status.version) {
        Generation::V1 if auth_error.is_none() => ctx
            .api
            .monitor_status()
            .await
            .ok()
            .map(|s| s.precise_monitor_available),
        _ => None,
    };
    Ok(Observed::Up {
        version: status.version,
        latency_ms,
        auth_error,
        precise_monitor,
    })
}

/// One `api` availability sample for the usage report.
fn record_availability(ctx: &JobContext<'_>, now: chrono::DateTime<chrono::Utc>, up: bool) {
    let sample = AvailabilitySample {
        series: AvailabilitySeries::Api,
        up,
    };
    if let Err(error) = ctx
        .store
        .record_availability(&ctx.server.name, now, &[sample])
    {
        tracing::error!(server = %ctx.server.name, %error, "cannot record the availability sample");
    }
}

/// Pure: what the observation means.
pub fn assess(server: &str, observed: &Observed, failures_before_alert: u32) -> Vec<Finding> {
    let finding = |kind, severity, summary: String, details: String| Finding {
        server: server.to_string(),
        job: JobKind::Health,
        kind,
        subject: String::new(),
        severity,
        summary,
        details,
    };
    let mut findings = Vec::new();
    match observed {
        Observed::Down {
            error,
            consecutive_failures,
        } if *consecutive_failures >= failures_before_alert => {
            findings.push(finding(
                FindingKind::ServerUnreachable,
                Severity::Critical,
                format!("{server} is unreachable ({consecutive_failures} failed checks in a row)"),
                format!(
                    "Seen: {error}\nDone: nothing; keywarden keeps checking and will say when it answers again.\n\
                     Next: check that the server, its API service and the network path are up."
                ),
            ));
        }
        Observed::Down { .. } => {}
        Observed::Up {
            auth_error,
            precise_monitor,
            version,
            ..
        } => {
            if let Some(ApiErrorKind::Unauthorized) = auth_error {
                findings.push(finding(
                    FindingKind::AuthFailed,
                    Severity::Critical,
                    format!("{server} refuses keywarden's API key (401)"),
                    "Seen: the API answered 401 to an authenticated call.\nDone: nothing can be checked or repaired on this server until the key works.\n\
                     Next: compare the server's API key with this server's api_key setting, then `systemctl reload keywarden`."
                        .to_string(),
                ));
            } else if let Some(other) = auth_error {
                findings.push(finding(
                    FindingKind::ApiError,
                    Severity::Warning,
                    format!("{server}: the key list could not be read"),
                    format!("Seen: {other}\nDone: nothing.\nNext: run `keywarden probe --server {server}` to see the answer."),
                ));
            }
            if *precise_monitor == Some(false) {
                findings.push(finding(
                    FindingKind::TrafficMonitorUnavailable,
                    Severity::Warning,
                    format!("{server}: the precise traffic monitor is unavailable"),
                    format!(
                        "Seen: API {version} reports precise_monitor_available = false; traffic figures are estimates.\n\
                         Done: nothing.\nNext: check the Xray stats API on the server."
                    ),
                ));
            }
        }
    }
    findings
}

pub async fn run(ctx: &JobContext<'_>) -> JobResult {
    let failures_before_alert = ctx.config.jobs.health.failures_before_alert;
    match observe(ctx).await {
        Ok(observed) => {
            let mut result = JobResult { findings: assess(&ctx.server.name, &observed, failures_before_alert), ..JobResult::default() };
            match &observed {
                Observed::Up { version, latency_ms, .. } => {
                    result.plan.push(format!("{} answered in {latency_ms} ms (API {version})", ctx.server.name));
                    // 2.x: is Xray itself running? (1.x has no /health: the dataplane
                    // job's outside view is the witness there.)
                    if Generation::from_version(version) != Generation::V1
                        && let Some(xray) = super::xray::run(ctx).await
                    {
                        result.findings.extend(xray.findings);
                        result.plan.extend(xray.plan);
                        result.xray = xray.state;
                    }
                }
                Observed::Down { error, consecutive_failures } => {
                    result.plan.push(format!(
                        "{} did not answer ({consecutive_failures} of {failures_before_alert} before alerting)",
                        ctx.server.name
                    ));
                    result.transport_failure = Some(error.clone());
                }
            }
            result
        }
        Err(error) => JobResult::default().with_finding(Finding {
            server: ctx.server.name.clone(),
            job: JobKind::Health,
            kind: FindingKind::ApiError,
            subject: String::new(),
            severity: Severity::Warning,
            summary: format!("{}: unexpected answer from GET /api/", ctx.server.name),
            details: format!("Seen: {error}\nDone: nothing.\nNext: check that the url points at the API (it should end in /api)."),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(findings: &[Finding]) -> Vec<(FindingKind, Severity)> {
        findings.iter().map(|f| (f.kind, f.severity)).collect()
    }

    #[test]
    fn assessment_table() {
        let up = |auth_error, precise_monitor| Observed::Up {
            version: "1.0.0".into(),
            latency_ms: 5,
            auth_error,
            precise_monitor,
        };
        let down = |n| Observed::Down {
            error: "GET /api/: no answer within 15s".into(),
            consecutive_failures: n,
        };
        let cases: Vec<(Observed, Vec<(FindingKind, Severity)>)> = vec![
            (up(None, Some(true)), vec![]),
            (up(None, None), vec![]),
            (
                up(Some(ApiErrorKind::Unauthorized), None),
                vec![(FindingKind::AuthFailed, Severity::Critical)],
            ),
            (
                up(None, Some(false)),
                vec![(FindingKind::TrafficMonitorUnavailable, Severity::Warning)],
            ),
            (
                up(Some(ApiErrorKind::Decode { reason: "x".into() }), None),
                vec![(FindingKind::ApiError, Severity::Warning)],
            ),
            (down(1), vec![]),
            (down(2), vec![]),
            (
                down(3),
                vec![(FindingKind::ServerUnreachable, Severity::Critical)],
            ),
            (
                down(10),
                vec![(FindingKind::ServerUnreachable, Severity::Critical)],
            ),
        ];
        for (observed, expected) in cases {
            assert_eq!(
                kinds(&assess("fra-1", &observed, 3)),
                expected,
                "{observed:?}"
            );
        }
    }

    #[test]
    fn unreachable_keeps_one_fingerprint() {
        let first = assess(
            "fra-1",
            &Observed::Down {
                error: "e".into(),
                consecutive_failures: 3,
            },
            3,
        );
        let later = assess(
            "fra-1",
            &Observed::Down {
                error: "other".into(),
                consecutive_failures: 9,
            },
            3,
        );
        assert_eq!(first[0].fingerprint(), later[0].fingerprint());
    }
}
