//! The side effects of config_sync: the drift streak in the store, audit entries, the sync
//! itself (recorded before the POST), the read-back and the Reality check after a sync.

use chrono::{DateTime, Utc};

use super::drift::Drift;
use super::plan::{Blocker, Observed, Plan, remember};
use super::{SYNC_ACTION, read, report};
use crate::config::JobKind;
use crate::finding::Finding;
use crate::jobs::reality;
use crate::jobs::{JobContext, JobResult};
use crate::server_api::{ApiError, ApiErrorKind, SyncOutcome, SyncValidation};
use crate::store::{AuditEntry, DriftMemory};

pub(super) const STARTED: &str = "started";
pub(super) const DEFERRED: &str = "deferred";

/// How a sync the server accepted (or refused) ended, judged by a fresh read.
#[derive(Debug)]
enum Outcome {
    /// In sync afterwards; `misreported` holds the 500 text a 2.x server answered anyway.
    Repaired { misreported: Option<String> },
    /// The server answered 200, the drift is still there.
    Persists {
        after: Drift,
        server_said: Option<SyncValidation>,
    },
    /// The server answered 200; reading the status back failed.
    Unconfirmed { error: ApiError },
    /// The server answered an error (not 429).
    Failed {
        error: ApiError,
        after: Result<Option<Drift>, ApiError>,
    },
}

/// Carry out `plan` on `ctx.server`.
pub async fn execute(
    ctx: &JobContext<'_>,
    observed: &Observed,
    plan: &Plan,
    now: DateTime<Utc>,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let mut result = JobResult::default();
    match plan {
        Plan::InSync => {
            result
                .plan
                .push(format!("{server}: config.json matches the key store"));
        }
        Plan::WaitForConfirmation { drift, n, of } => {
            result.plan.push(format!(
                "{server}: config drift, confirmation {n} of {of}, not syncing yet: {}",
                drift.describe(false)
            ));
            result
                .findings
                .push(report::waiting(server, drift, *n, *of));
        }
        Plan::Blocked { drift, reason } => {
            result
                .plan
                .push(report::blocked_line(server, drift, reason));
            result.findings.push(report::blocked(server, drift, reason));
            if *reason == Blocker::DryRun {
                audit(ctx, now, SYNC_ACTION, "dry_run", &drift.audit_text());
            }
        }
        Plan::Sync { drift, .. } => return sync(ctx, observed, plan, drift, now).await,
    }
    save_memory(ctx, &remember(observed, plan, now), now);
    result
}

async fn sync(
    ctx: &JobContext<'_>,
    observed: &Observed,
    plan: &Plan,
    drift: &Drift,
    now: DateTime<Utc>,
) -> JobResult {
    let server = ctx.server.name.as_str();
    // The sync restarts Xray, which may zero the traffic counters: read them in first.
    let pre_read = crate::jobs::quota::account_before_restart(ctx).await;
    if let Err(error) = ctx.store.record_sync_attempt(server, now) {
        // Without the record the hourly budget cannot hold: no sync.
        tracing::error!(server, error = %error, "config_sync: cannot record the sync attempt");
        return JobResult {
            transport_failure: Some(format!("config_sync did not sync: {error}")),
            ..JobResult::default()
        };
    }
    audit(ctx, now, SYNC_ACTION, STARTED, &drift.audit_text());
    tracing::info!(server, drift = %drift.describe(false), "config_sync: syncing");
    crate::jobs::quota::note_sync_pending(ctx.store, server, now);
    let answer = ctx.api.sync_config().await;
    if let Err(error) = &answer
        && matches!(error.kind, ApiErrorKind::RateLimited { .. })
    {
        return deferred(ctx, observed, plan, drift, error, now);
    }
    let outcome = judge(ctx, observed.validate_sync, answer).await;
    let mut result = report_outcome(ctx, drift, &outcome);
    if let Some(note) = pre_read.loss_note() {
        for finding in &mut result.findings {
            finding.details.push('\n');
            finding.details.push_str(&note);
        }
    }
    if let Some(note) = pre_read.loss_note() {
        for finding in &mut result.findings {
            finding.details.push('\n');
            finding.details.push_str(&note);
        }
    }
    if outcome.server_synced() {
        verify_reality(ctx, &mut result).await;
    }
    save_memory(ctx, &outcome.memory(now), ctx.clock.now());
    result
}

impl Outcome {
    /// The server ran the sync (Xray restarted), whatever the drift afterwards.
    fn server_synced(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }

    /// A sync starts a new streak: the read-back, when drifted, is its first read.
    fn memory(&self, now: DateTime<Utc>) -> DriftMemory {
        match self {
            Outcome::Persists { after, .. }
            | Outcome::Failed {
                after: Ok(Some(after)),
                ..
            } => DriftMemory {
                confirmations: 1,
                first_seen: Some(now),
                signature: after.signature(),
            },
            _ => DriftMemory::default(),
        }
    }
}

/// Read the status back and decide what the sync achieved.
async fn judge(
    ctx: &JobContext<'_>,
    validate_sync: bool,
    answer: Result<SyncOutcome, ApiError>,
) -> Outcome {
    let after = read(ctx.api, validate_sync)
        .await
        .map(|read| Drift::of(&read));
    match (answer, after) {
        (Ok(_), Ok(None)) => Outcome::Repaired { misreported: None },
        (Ok(outcome), Ok(Some(after))) => Outcome::Persists {
            after,
            server_said: outcome.validation,
        },
        (Ok(_), Err(error)) => Outcome::Unconfirmed { error },
        // 2.x checks its sync against the stale cache and answers 500 although the
        // file was repaired; validate-sync (read fresh) is the better witness.
        (Err(error), Ok(None)) if validate_sync && is_stale_verification(&error) => {
            Outcome::Repaired {
                misreported: error.server_detail().map(str::to_string),
            }
        }
        (Err(error), after) => Outcome::Failed { error, after },
    }
}

fn is_stale_verification(error: &ApiError) -> bool {
    matches!(error.kind, ApiErrorKind::ServerError { status: 500, .. })
        && error
            .server_detail()
            .is_some_and(|d| d.to_ascii_lowercase().contains("verification failed"))
}

/// Audit the outcome and turn it into a plan line and a finding.
fn report_outcome(ctx: &JobContext<'_>, before: &Drift, outcome: &Outcome) -> JobResult {
    let server = ctx.server.name.as_str();
    let (result, line, finding) = describe(server, before, outcome);
    tracing::info!(server, result, "config_sync: sync finished");
    let detail = match outcome {
        Outcome::Failed { error, .. } => format!("{error}; {}", before.audit_text()),
        _ => before.audit_text(),
    };
    audit(ctx, ctx.clock.now(), SYNC_ACTION, result, &detail);
    JobResult {
        findings: vec![finding],
        plan: vec![line],
        ..JobResult::default()
    }
}

/// The audit result, the plan line and the finding of an outcome.
fn describe(server: &str, before: &Drift, outcome: &Outcome) -> (&'static str, String, Finding) {
    match outcome {
        Outcome::Repaired { misreported: None } => (
            "ok",
            format!("synced {server}: repaired, {}", before.describe(true)),
            report::repaired(server, before, None),
        ),
        Outcome::Repaired {
            misreported: Some(detail),
        } => (
            "misreported",
            format!("synced {server}: repaired, although the server answered 500 \"{detail}\""),
            report::repaired(server, before, Some(detail)),
        ),
        Outcome::Persists { after, server_said } => (
            "persists",
            format!("synced {server}: drift persists, {}", after.describe(false)),
            report::persists(server, before, after, server_said.as_ref()),
        ),
        Outcome::Unconfirmed { error } => (
            "unconfirmed",
            format!("synced {server}: the status could not be read back ({error})"),
            report::unconfirmed(server, before, error),
        ),
        Outcome::Failed { error, after } => (
            "failed",
            format!("sync of {server} failed: {error}"),
            report::failed(server, before, error, after),
        ),
    }
}

/// The server refused the sync with 429: it did not run. The entry carries the
/// attempt's time so the budget can leave it out; the streak is kept for the next run.
fn deferred(
    ctx: &JobContext<'_>,
    observed: &Observed,
    plan: &Plan,
    drift: &Drift,
    error: &ApiError,
    now: DateTime<Utc>,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let detail = format!("{error}; {}", drift.audit_text());
    audit(ctx, now, SYNC_ACTION, DEFERRED, &detail);
    if let Err(error) = ctx.store.mark_attempt_deferred(server, now) {
        tracing::error!(server, %error, "config_sync: cannot take the deferred sync out of the budget");
    }
    save_memory(ctx, &remember(observed, plan, now), now);
    let in_a_row = observed.deferrals.saturating_add(1);
    tracing::info!(server, in_a_row, "config_sync: sync deferred (429)");
    JobResult {
        findings: report::deferred(server, drift, error, in_a_row),
        plan: vec![format!(
            "sync of {server} deferred: rate limited ({in_a_row} in a row), retrying next run"
        )],
        ..JobResult::default()
    }
}

/// After a sync, when configured and the server runs the reality job: the same
/// verification the reality job does (audit entries included).
async fn verify_reality(ctx: &JobContext<'_>, result: &mut JobResult) {
    let settings = &ctx.config.jobs.config_sync;
    if !settings.verify_reality_after_sync || !ctx.server.runs(JobKind::Reality) {
        return;
    }
    // 2.x: read-only, per inbound (verify-reality fails on its usual layout).
    let (line, finding) = reality::check_after_sync(ctx).await;
    result.plan.push(line);
    result.findings.extend(finding);
}

fn save_memory(ctx: &JobContext<'_>, memory: &DriftMemory, now: DateTime<Utc>) {
    if let Err(error) = ctx.store.save_drift(&ctx.server.name, memory, now) {
        // The next run then starts a new streak: it syncs later, never sooner.
        tracing::error!(server = %ctx.server.name, error = %error, "config_sync: cannot save the drift streak");
    }
}

fn audit(ctx: &JobContext<'_>, at: DateTime<Utc>, action: &str, result: &str, detail: &str) {
    let entry = AuditEntry {
        at,
        server: ctx.server.name.clone(),
        action: action.to_string(),
        target: report::SUBJECT.to_string(),
        result: result.to_string(),
        detail: detail.to_string(),
    };
    if let Err(error) = ctx.store.append_audit(&entry) {
        tracing::error!(server = %ctx.server.name, action, result, error = %error, "config_sync: cannot write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stale_verification_500_is_rechecked() {
        let error = |kind| ApiError::new("POST /api/system/sync-config", kind);
        let stale = error(ApiErrorKind::ServerError {
            status: 500,
            detail: "Configuration sync verification failed".into(),
        });
        let restart = error(ApiErrorKind::ServerError {
            status: 500,
            detail: "Failed to restart Xray".into(),
        });
        let timeout = error(ApiErrorKind::Timeout {
            after: std::time::Duration::from_secs(1),
        });
        assert!(is_stale_verification(&stale));
        assert!(!is_stale_verification(&restart));
        assert!(!is_stale_verification(&timeout));
    }
}
