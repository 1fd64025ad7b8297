//! The reality job: are the server's Reality settings valid? On 1.x: ask the server to
//! verify (and fix) them with `POST verify-reality`; quiet on success, a failure is
//! critical with the server's own words. On 2.x that endpoint reads only the first
//! inbound, which on the usual layout (`api_inbound: true`) is Xray's API inbound, so it
//! can only fail there: 2.x is checked read-only per inbound instead (`reality_v2.rs`),
//! and verify-reality is used only on layouts without the API inbound.

use crate::config::{JobKind, Severity};
use crate::finding::{Finding, FindingKind};
use crate::server_api::{ApiError, ApiErrorKind, Generation};
use crate::store::AuditEntry;

use super::{JobContext, JobResult};

/// What verifying Reality came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Verified,
    Unconfirmed {
        snippet: String,
    },
    Failed {
        detail: String,
        generation: Generation,
    },
    /// The server could not be asked (unreachable, timeout, proxy page).
    NoAnswer {
        error: String,
    },
}

/// Interpret the answer of verify-reality (pure). Only an answer that says the
/// settings are invalid is `Failed`: the API's error answer (500, or a 400/422 refusal)
/// with its own `detail`. Anything else (a redirect, an unknown status such as 999, a
/// proxy page, a timeout, 401/403/404/429, 502/503/504) is an error of the call, not
/// news about Reality.
pub fn verdict(answer: &Result<(), ApiError>, generation: Generation) -> Verdict {
    match answer {
        Ok(()) => Verdict::Verified,
        Err(ApiError {
            kind: ApiErrorKind::Unconfirmed { snippet },
            ..
        }) => Verdict::Unconfirmed {
            snippet: snippet.clone(),
        },
        Err(ApiError {
            kind:
                ApiErrorKind::ServerError {
                    status: 500,
                    detail,
                }
                | ApiErrorKind::Rejected {
                    status: 400 | 422,
                    detail,
                },
            ..
        }) => Verdict::Failed {
            detail: detail.clone(),
            generation,
        },
        Err(error) => Verdict::NoAnswer {
            error: error.to_string(),
        },
    }
}

/// The finding for a verdict, if any (pure). `job` is the job that asked.
pub fn finding_for(server: &str, job: JobKind, verdict: &Verdict) -> Option<Finding> {
    let finding = |kind, severity, summary: String, details: String| Finding {
        server: server.to_string(),
        job,
        kind,
        // Distinct from the reality job's own finding, so neither job resolves the other's.
        subject: if job == JobKind::Reality {
            "reality".into()
        } else {
            "reality (after sync)".into()
        },
        severity,
        summary,
        details,
    };
    match verdict {
        Verdict::Verified | Verdict::NoAnswer { .. } => None,
        Verdict::Unconfirmed { snippet } => Some(finding(
            FindingKind::RealityUnconfirmed,
            Severity::Warning,
            format!("{server}: Reality verification was not confirmed"),
            format!(
                "Seen: verify-reality answered 200 without saying it verified: {snippet:?}\nDone: nothing more.\nNext: check the Reality settings of the server's inbounds by hand."
            ),
        )),
        Verdict::Failed { detail, generation } => {
            // keywarden calls verify-reality on 2.x only where config-status says there
            // is no API inbound, so a failure there is real.
            let hint = if *generation == Generation::V2 {
                "\nNote: on 2.x this endpoint checks only the first inbound; the reality job also checks every inbound through the inbound listing.".to_string()
            } else {
                String::new()
            };
            Some(finding(
                FindingKind::RealityInvalid,
                Severity::Critical,
                format!("{server}: Reality settings are invalid"),
                format!(
                    "Seen: verify-reality failed: {detail}\nDone: nothing; the server could not fix them itself.\n\
                     Next: check dest, serverNames, privateKey and shortIds of the server's Reality inbound.{hint}"
                ),
            ))
        }
    }
}

/// Verify Reality now (a POST that may rewrite maxTimeDiff), with audit entries.
/// Shared by this job and by config_sync after a sync.
pub async fn verify(ctx: &JobContext<'_>, job: JobKind) -> (Verdict, Option<Finding>) {
    let generation = match ctx.api.capabilities().await {
        Ok(capabilities) => capabilities.generation,
        Err(_) => Generation::Unknown,
    };
    audit(ctx, "started", "");
    let answer = ctx.api.verify_reality().await.map(|_| ());
    let verdict = verdict(&answer, generation);
    let (result, detail) = match &verdict {
        Verdict::Verified => ("ok", String::new()),
        Verdict::Unconfirmed { snippet } => ("unconfirmed", snippet.clone()),
        Verdict::Failed { detail, .. } => ("failed", detail.clone()),
        Verdict::NoAnswer { error } => ("no_answer", error.clone()),
    };
    audit(ctx, result, &detail);
    let finding = finding_for(&ctx.server.name, job, &verdict);
    (verdict, finding)
}

fn audit(ctx: &JobContext<'_>, result: &str, detail: &str) {
    let entry = AuditEntry {
        at: ctx.clock.now(),
        server: ctx.server.name.clone(),
        action: "verify_reality".into(),
        target: "reality".into(),
        result: result.into(),
        detail: detail.into(),
    };
    if let Err(error) = ctx.store.append_audit(&entry) {
        tracing::error!(server = %ctx.server.name, %error, "cannot write the audit log");
    }
}

/// How Reality is checked on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// 1.x (and unknown versions without the 2.x listing): POST verify-reality.
    Verify,
    /// 2.x: the inbound listing, read-only; `also_verify` on layouts without the API
    /// inbound, where verify-reality works.
    Inbounds { also_verify: bool },
}

/// Which method this server needs: 2.x's `xray/config-status` tells the layout.
pub async fn method(ctx: &JobContext<'_>) -> Result<Method, ApiError> {
    let generation = ctx.api.capabilities().await?.generation;
    if generation == Generation::V1 {
        return Ok(Method::Verify);
    }
    match ctx.api.xray_layout().await {
        Ok(layout) => Ok(Method::Inbounds {
            also_verify: layout.api_inbound == Some(false),
        }),
        // Without the layout call: a 2.x server still lists its inbounds; an unknown
        // version is treated like 1.x.
        Err(error) if error.is_not_found() => Ok(match generation {
            Generation::V2 => Method::Inbounds { also_verify: false },
            _ => Method::Verify,
        }),
        Err(error) => Err(error),
    }
}

/// The Reality check right after a sync: a plan line and the finding, if any.
pub async fn check_after_sync(ctx: &JobContext<'_>) -> (String, Option<Finding>) {
    let server = &ctx.server.name;
    match method(ctx).await {
        Ok(Method::Inbounds { also_verify }) => {
            super::reality_v2::check_after_sync(ctx, also_verify).await
        }
        Ok(Method::Verify) => {
            let (verdict, finding) = verify(ctx, JobKind::ConfigSync).await;
            let line = match verdict {
                Verdict::Verified => format!("verified Reality on {server} after the sync"),
                _ => format!("Reality check on {server} after the sync failed"),
            };
            (line, finding)
        }
        Err(error) => (
            format!("Reality not checked on {server} after the sync: {error}"),
            None,
        ),
    }
}

pub async fn run(ctx: &JobContext<'_>) -> JobResult {
    let name = &ctx.server.name;
    match method(ctx).await {
        Ok(Method::Inbounds { also_verify }) => {
            return super::reality_v2::run(ctx, also_verify).await;
        }
        Ok(Method::Verify) => {}
        Err(error) if error.is_transient() => {
            return JobResult {
                transport_failure: Some(error.to_string()),
                ..JobResult::default()
            };
        }
        Err(error) => {
            return JobResult::default().with_finding(Finding {
                server: name.clone(),
                job: JobKind::Reality,
                kind: FindingKind::ApiError,
                subject: "reality".into(),
                severity: Severity::Warning,
                summary: format!("{name}: how to check Reality could not be read: {}", error.kind),
                details: format!("Seen: {error}\nDone: nothing.\nNext: check the API key and version (keywarden probe)."),
            });
        }
    }
    if ctx.dry_run {
        audit(
            ctx,
            "dry_run",
            "verify-reality is a POST that may rewrite settings",
        );
        return JobResult {
            plan: vec![format!("would verify Reality settings on {name}")],
            ..JobResult::default()
        };
    }
    let (verdict, finding) = verify(ctx, JobKind::Reality).await;
    let mut result = JobResult::default();
    match &verdict {
        Verdict::Verified => {
            tracing::debug!(server = %name, "Reality settings verified");
            result
                .plan
                .push(format!("verified Reality settings on {name}"));
        }
        Verdict::NoAnswer { error } => result.transport_failure = Some(error.clone()),
        _ => result
            .plan
            .push(format!("Reality verification on {name} failed")),
    }
    result.findings.extend(finding);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: ApiErrorKind) -> Result<(), ApiError> {
        Err(ApiError::new("POST /api/system/verify-reality", kind))
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&Ok(()), Generation::V1), Verdict::Verified);
        let failed = verdict(
            &err(ApiErrorKind::ServerError {
                status: 500,
                detail: "missing dest".into(),
            }),
            Generation::V2,
        );
        assert_eq!(
            failed,
            Verdict::Failed {
                detail: "missing dest".into(),
                generation: Generation::V2
            }
        );
        let finding = finding_for("ams-2", JobKind::Reality, &failed).unwrap();
        assert_eq!(
            (finding.kind, finding.severity),
            (FindingKind::RealityInvalid, Severity::Critical)
        );
        assert!(
            !finding.details.contains("skip_jobs"),
            "2.x is never told to skip the job: keywarden checks it read-only"
        );
        let v1 = finding_for(
            "fra-1",
            JobKind::Reality,
            &Verdict::Failed {
                detail: "x".into(),
                generation: Generation::V1,
            },
        )
        .unwrap();
        assert!(!v1.details.contains("skip_jobs"));
        let unconfirmed = verdict(
            &err(ApiErrorKind::Unconfirmed {
                snippet: "{}".into(),
            }),
            Generation::V1,
        );
        assert_eq!(
            finding_for("fra-1", JobKind::Reality, &unconfirmed)
                .unwrap()
                .severity,
            Severity::Warning
        );
        let timeout = verdict(
            &err(ApiErrorKind::Timeout {
                after: std::time::Duration::from_secs(1),
            }),
            Generation::V1,
        );
        assert!(matches!(timeout, Verdict::NoAnswer { .. }));
        assert_eq!(finding_for("fra-1", JobKind::Reality, &timeout), None);
    }
}
