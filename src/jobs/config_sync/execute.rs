//! The side effects of config_sync: the drift streak in the store, audit entries, the sync
//! itself (recorded before the POST), the read-back and the Reality check after a sync.

use chrono::{DateTime, Utc};

use super::drift::Drift;
use super::plan::{Blocker, Observed, Plan, remember};
use super::{read, report};
use crate::jobs::reality;
use crate::jobs::{Fact, JobContext, JobResult, SyncResult};
use crate::model::{
    AttemptKind, AuditAction, AuditEntry, AuditResult, DriftMemory, Finding, JobKind,
    SyncAttemptOutcome,
};
use crate::server_api::{ApiError, ApiErrorKind, SyncOutcome, SyncValidation};

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
                audit(ctx, now, AuditResult::DryRun, &drift.audit_text()).await;
            }
        }
        Plan::Sync { drift, .. } => return sync(ctx, observed, plan, drift, now).await,
    }
    save_memory(ctx, &remember(observed, plan, now), now).await;
    result.facts.push(budget_left(ctx, observed, false));
    result
}

/// Syncs left in the budget's window after this run (`spent`: this run made an attempt
/// that counts).
fn budget_left(ctx: &JobContext<'_>, observed: &Observed, spent: bool) -> Fact {
    let used = observed.sync_attempts.len() + usize::from(spent);
    let max = ctx.config.jobs.config_sync.max_syncs_per_hour;
    Fact::SyncBudgetLeft(max.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX)))
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
    let attempt = match ctx
        .store
        .sync()
        .record_attempt(server, AttemptKind::Sync, now)
        .await
    {
        Ok(attempt) => attempt,
        Err(error) => {
            // Without the record the hourly budget cannot hold: no sync.
            tracing::error!(server, error = %error, "config_sync: cannot record the sync attempt");
            return JobResult {
                transport_failure: Some(format!("config_sync did not sync: {error}")),
                ..JobResult::default()
            };
        }
    };
    audit(ctx, now, AuditResult::Started, &drift.audit_text()).await;
    tracing::info!(server, drift = %drift.describe(false), "config_sync: syncing");
    let answer = ctx.api.sync_config().await;
    if let Err(error) = &answer
        && matches!(error.kind, ApiErrorKind::RateLimited { .. })
    {
        finish_attempt(ctx, attempt, SyncAttemptOutcome::Deferred).await;
        return deferred(ctx, observed, plan, drift, error, now).await;
    }
    finish_attempt(ctx, attempt, SyncAttemptOutcome::Completed).await;
    let outcome = judge(ctx, observed.validate_sync, answer).await;
    let mut result = report_outcome(ctx, drift, &outcome).await;
    result.facts.push(budget_left(ctx, observed, true));
    if let Some(note) = pre_read.loss_note() {
        for finding in &mut result.findings {
            finding.details.push('\n');
            finding.details.push_str(&note);
        }
    }
    if outcome.server_synced() {
        verify_reality(ctx, &mut result).await;
    }
    save_memory(ctx, &outcome.memory(now), ctx.clock.now()).await;
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
async fn report_outcome(ctx: &JobContext<'_>, before: &Drift, outcome: &Outcome) -> JobResult {
    let server = ctx.server.name.as_str();
    let (result, line, finding) = describe(server, before, outcome);
    tracing::info!(
        server,
        result = result.as_str(),
        "config_sync: sync finished"
    );
    let detail = match outcome {
        Outcome::Failed { error, .. } => format!("{error}; {}", before.audit_text()),
        _ => before.audit_text(),
    };
    audit(ctx, ctx.clock.now(), result, &detail).await;
    let synced = match outcome {
        Outcome::Repaired { .. } => Some(SyncResult::Repaired),
        Outcome::Persists { .. } => Some(SyncResult::Persists),
        Outcome::Failed { .. } => Some(SyncResult::Failed),
        Outcome::Unconfirmed { .. } => None,
    };
    JobResult {
        findings: vec![finding],
        plan: vec![line],
        transport_failure: None,
        facts: synced.map(Fact::Sync).into_iter().collect(),
    }
}

/// The audit result, the plan line and the finding of an outcome.
fn describe(server: &str, before: &Drift, outcome: &Outcome) -> (AuditResult, String, Finding) {
    match outcome {
        Outcome::Repaired { misreported: None } => (
            AuditResult::Ok,
            format!("synced {server}: repaired, {}", before.describe(true)),
            report::repaired(server, before, None),
        ),
        Outcome::Repaired {
            misreported: Some(detail),
        } => (
            AuditResult::Misreported,
            format!("synced {server}: repaired, although the server answered 500 \"{detail}\""),
            report::repaired(server, before, Some(detail)),
        ),
        Outcome::Persists { after, server_said } => (
            AuditResult::Persists,
            format!("synced {server}: drift persists, {}", after.describe(false)),
            report::persists(server, before, after, server_said.as_ref()),
        ),
        Outcome::Unconfirmed { error } => (
            AuditResult::Unconfirmed,
            format!("synced {server}: the status could not be read back ({error})"),
            report::unconfirmed(server, before, error),
        ),
        Outcome::Failed { error, after } => (
            AuditResult::Failed,
            format!("sync of {server} failed: {error}"),
            report::failed(server, before, error, after),
        ),
    }
}

/// The server refused the sync with 429: it did not run (its attempt, recorded as
/// deferred, does not count against the budget); the streak is kept for the next run.
async fn deferred(
    ctx: &JobContext<'_>,
    observed: &Observed,
    plan: &Plan,
    drift: &Drift,
    error: &ApiError,
    now: DateTime<Utc>,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let detail = format!("{error}; {}", drift.audit_text());
    audit(ctx, now, AuditResult::Deferred, &detail).await;
    save_memory(ctx, &remember(observed, plan, now), now).await;
    let in_a_row = observed.deferrals.saturating_add(1);
    tracing::info!(server, in_a_row, "config_sync: sync deferred (429)");
    let mut facts = vec![budget_left(ctx, observed, false)];
    if in_a_row >= report::DEFERRALS_BEFORE_ALERT {
        // Refused again and again: counted as a failed sync (docs/metrics.md).
        facts.push(Fact::Sync(SyncResult::Failed));
    }
    JobResult {
        findings: report::deferred(server, drift, error, in_a_row),
        plan: vec![format!(
            "sync of {server} deferred: rate limited ({in_a_row} in a row), retrying next run"
        )],
        transport_failure: None,
        facts,
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

/// Record how a sync attempt ended. If that fails the attempt stays pending, which
/// counts against the budget: the next sync may come later, never sooner.
async fn finish_attempt(ctx: &JobContext<'_>, attempt: i64, outcome: SyncAttemptOutcome) {
    if let Err(error) = ctx.store.sync().finish_attempt(attempt, outcome).await {
        tracing::error!(server = %ctx.server.name, error = %error, "config_sync: cannot record how the sync attempt ended");
    }
}

async fn save_memory(ctx: &JobContext<'_>, memory: &DriftMemory, now: DateTime<Utc>) {
    let saved = ctx.store.sync().save_drift(&ctx.server.name, memory, now);
    if let Err(error) = saved.await {
        // The next run then starts a new streak: it syncs later, never sooner.
        tracing::error!(server = %ctx.server.name, error = %error, "config_sync: cannot save the drift streak");
    }
}

async fn audit(ctx: &JobContext<'_>, at: DateTime<Utc>, result: AuditResult, detail: &str) {
    let entry = AuditEntry {
        at,
        server: ctx.server.name.clone(),
        action: AuditAction::Sync,
        target: report::SUBJECT.to_string(),
        result,
        detail: detail.to_string(),
    };
    if let Err(error) = ctx.store.audit().append(&entry).await {
        tracing::error!(server = %ctx.server.name, result = result.as_str(), error = %error, "config_sync: cannot write the audit log");
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
