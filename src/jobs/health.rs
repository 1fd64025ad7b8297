//! The health job: is the server there, does it accept our key, is its traffic monitor
//! on? It reads GET /api/ (version, latency), asks for a key that cannot exist (404
//! means the API key is accepted, 401 that it is not), and on 1.x the traffic monitor
//! status. It owns the
//! server's up/down memory (`ServerState`): observe reads it, `remember` decides the next
//! one, and the run writes it. Longer than 400 lines on purpose: the pure decisions'
//! table tests sit next to them.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::model::dataplane::XrayState;
use crate::model::report::{AvailabilitySample, AvailabilitySeries};
use crate::model::{Finding, FindingKind, JobKind, ServerState, Severity};
use crate::server_api::{ApiError, ApiErrorKind, Generation};

use super::{Fact, JobContext, JobResult};

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
        /// Consecutive failed checks, this one included (the remembered ones survive
        /// restarts, so a restart does not hide an outage).
        consecutive_failures: u32,
    },
}

/// Whether an error means "the server is not there" (as opposed to "it answered").
pub fn is_outage(error: &ApiError) -> bool {
    error.is_transient() && !matches!(error.kind, ApiErrorKind::RateLimited { .. })
}

/// What the store remembers of the server (nothing yet on its first check, or if the
/// store cannot be read: the streak then starts again, which alerts later, never sooner).
async fn remembered(ctx: &JobContext<'_>) -> ServerState {
    let server = &ctx.server.name;
    match ctx.store.servers().state(server).await {
        Ok(state) => state.unwrap_or_else(|| ServerState {
            server: server.clone(),
            ..ServerState::default()
        }),
        Err(error) => {
            tracing::error!(server = %server, %error, "cannot read what the store remembers of the server");
            ServerState {
                server: server.clone(),
                ..ServerState::default()
            }
        }
    }
}

/// Read the server, and the failed checks in a row before this one from `previous`.
async fn observe(ctx: &JobContext<'_>, previous: &ServerState) -> Result<Observed, ApiError> {
    let started = Instant::now();
    let status = match ctx.api.api_status().await {
        Ok(status) => status,
        Err(error) if is_outage(&error) => {
            return Ok(Observed::Down {
                error: error.to_string(),
                consecutive_failures: previous.consecutive_failures.saturating_add(1),
            });
        }
        Err(error) => return Err(error),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    // Not the key list: at 200 000 keys that is megabytes every 30 s for one bit.
    let auth_error = match ctx.api.check_api_key().await {
        Ok(()) => None,
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
async fn record_availability(ctx: &JobContext<'_>, now: DateTime<Utc>, up: bool) {
    let sample = AvailabilitySample {
        series: AvailabilitySeries::Api,
        up,
    };
    let report = ctx.store.report();
    let recorded = report.record_availability(&ctx.server.name, now, &[sample]);
    if let Err(error) = recorded.await {
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
                    format!("{server}: the API key could not be checked"),
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

/// What to remember of the server after this check (pure): an answer clears the streak
/// and notes the version, a failure extends it; the rest is kept.
pub fn remember(previous: &ServerState, observed: &Observed, now: DateTime<Utc>) -> ServerState {
    match observed {
        Observed::Up { version, .. } => ServerState {
            version: Some(version.clone()),
            last_up_at: Some(now),
            consecutive_failures: 0,
            last_error: None,
            ..previous.clone()
        },
        Observed::Down {
            error,
            consecutive_failures,
        } => ServerState {
            last_down_at: Some(now),
            consecutive_failures: *consecutive_failures,
            last_error: Some(error.clone()),
            ..previous.clone()
        },
    }
}

/// How old "last seen up" may get before an otherwise unchanged state is written again:
/// a healthy server's row is not rewritten every check for that one time alone (issue 11:
/// write what changed). `status` shows it to within this.
pub const LAST_UP_REFRESH: chrono::Duration = chrono::Duration::minutes(5);

/// Whether the state after a check must be written (pure): something besides the time of
/// the last answer changed, or that time is `LAST_UP_REFRESH` past the stored one.
pub fn must_save(previous: &ServerState, next: &ServerState) -> bool {
    let only_the_time = ServerState {
        last_up_at: previous.last_up_at,
        ..next.clone()
    } == *previous;
    match (only_the_time, previous.last_up_at, next.last_up_at) {
        (true, Some(stored), Some(seen)) => seen - stored >= LAST_UP_REFRESH,
        (true, _, None) => false,
        _ => true,
    }
}

pub async fn run(ctx: &JobContext<'_>) -> JobResult {
    let failures_before_alert = ctx.config.jobs.health.failures_before_alert;
    let previous = remembered(ctx).await;
    let now = ctx.clock.now();
    match observe(ctx, &previous).await {
        Ok(observed) => {
            let state = remember(&previous, &observed, now);
            if must_save(&previous, &state)
                && let Err(error) = ctx.store.servers().save(&state, now).await
            {
                tracing::error!(server = %ctx.server.name, %error, "cannot record the health check");
            }
            let up = matches!(observed, Observed::Up { .. });
            record_availability(ctx, now, up).await;
            let mut result = JobResult {
                findings: assess(&ctx.server.name, &observed, failures_before_alert),
                facts: vec![Fact::ServerUp(matches!(observed, Observed::Up { .. }))],
                ..JobResult::default()
            };
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
                        if xray.error.is_some() {
                            result.transport_failure = xray.error;
                        }
                        if let Some(state) = xray.state {
                            result.facts.push(Fact::XrayUp(state == XrayState::Running));
                        }
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
        // It answered, though not as the API does.
        Err(error) => JobResult {
            facts: vec![Fact::ServerUp(true)],
            ..JobResult::default()
        }
        .with_finding(Finding {
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
    fn the_memory_counts_failures_and_an_answer_clears_them() {
        let at =
            |minute| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 28, 10, minute, 0).unwrap();
        let up = Observed::Up {
            version: "1.0.0".into(),
            latency_ms: 5,
            auth_error: None,
            precise_monitor: None,
        };
        let down = |n| Observed::Down {
            error: "refused".into(),
            consecutive_failures: n,
        };
        let start = ServerState {
            server: "fra-1".into(),
            ..ServerState::default()
        };
        let one = remember(&start, &down(1), at(0));
        assert_eq!(
            (
                one.consecutive_failures,
                one.last_down_at,
                one.version.clone()
            ),
            (1, Some(at(0)), None)
        );
        let back = remember(&one, &up, at(1));
        assert_eq!(
            back,
            ServerState {
                server: "fra-1".into(),
                version: Some("1.0.0".into()),
                last_up_at: Some(at(1)),
                last_down_at: Some(at(0)),
                consecutive_failures: 0,
                last_error: None,
            }
        );
        let again = remember(&back, &down(1), at(2));
        assert_eq!(
            (again.version.as_deref(), again.last_error.as_deref()),
            (Some("1.0.0"), Some("refused"))
        );
    }

    #[test]
    fn an_unchanged_state_is_written_again_only_when_last_up_is_stale() {
        let at =
            |minute| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 28, 10, minute, 0).unwrap();
        let down = |n| Observed::Down {
            error: "refused".into(),
            consecutive_failures: n,
        };
        let up = Observed::Up {
            version: "1.0.0".into(),
            latency_ms: 3,
            auth_error: None,
            precise_monitor: None,
        };
        let fresh = ServerState {
            server: "fra-1".into(),
            ..ServerState::default()
        };
        let first = remember(&fresh, &up, at(0));
        assert!(must_save(&fresh, &first), "the first answer is news");
        let half_minute = remember(&first, &up, at(0) + chrono::Duration::seconds(30));
        assert!(!must_save(&first, &half_minute), "only last_up_at moved");
        let later = remember(&first, &up, at(0) + LAST_UP_REFRESH);
        assert!(
            must_save(&first, &later),
            "last seen up is kept to within 5 minutes"
        );
        let upgraded = Observed::Up {
            version: "1.1.0".into(),
            latency_ms: 3,
            auth_error: None,
            precise_monitor: None,
        };
        let changed = remember(&first, &upgraded, at(1));
        assert!(
            must_save(&first, &changed),
            "a new version is written at once"
        );
        let failed = remember(&first, &down(1), at(1));
        assert!(
            must_save(&first, &failed),
            "every failure counts (restarts keep the streak)"
        );
        let again = remember(&failed, &down(2), at(2));
        assert!(must_save(&failed, &again));
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
