//! The config_sync job: finds drift between a server's key store and Xray's config.json
//! and, once confirmed and within budget, repairs it with a sync. It owns the drift
//! streak (`DriftMemory`), the sync budget and the sync audit entries; it must not touch
//! keys, traffic or Reality settings (it only asks for a Reality check after a sync).
//!
//! `observe` (read-only: server answers + store) -> `plan` (pure) -> `execute`.
//!
//! Design decisions (see the issue):
//! - 2.x: validate-sync is the witness (it reads config.json fresh); config-status is
//!   read too but only described, since its cache is stale in both directions.
//! - Any drift counts towards the streak whatever its uuids; the signature only
//!   describes it.
//! - A 429 on the sync defers it to the next run and does not spend budget: the attempt
//!   is recorded (started) before the POST, so a crash still counts, and is marked
//!   deferred after the 429, which takes it out of the budget again. The audit log is
//!   written for people only; nothing here reads it.

mod drift;
mod execute;
mod plan;
mod report;

pub use drift::{Drift, Read, Witness};
pub use execute::execute;
pub use plan::{
    Blocker, Observed, Plan, SYNC_WINDOW, budget_spent, counted_attempts, deferrals_in_a_row,
    last_restart, plan, remember, streak,
};
pub use report::SUBJECT;

pub use super::ObserveError;
use super::{Fact, JobContext, JobResult, RunMode};
use crate::server_api::{ApiError, ServerApi};

/// Run the job once on `ctx.server`.
pub async fn run(ctx: &JobContext<'_>) -> JobResult {
    let settings = &ctx.config.jobs.config_sync;
    let observed = match observe(ctx).await {
        Ok(observed) => observed,
        Err(error) => return observe_failed(ctx, error),
    };
    let now = ctx.clock.now();
    let plan = plan(&observed, settings, ctx.dry_run, now);
    tracing::debug!(server = %ctx.server.name, ?plan, "config_sync plan");
    let mut result = execute(ctx, &observed, &plan, now).await;
    if plan.drift().is_some() {
        result.facts.push(Fact::DriftDetected);
    }
    result
}

/// Transient trouble (unreachable, timeout, 5xx, a proxy's page) is the runner's to back
/// off; an answer keywarden cannot use (401, wrong shape) is a finding.
fn observe_failed(ctx: &JobContext<'_>, error: ObserveError) -> JobResult {
    let server = &ctx.server.name;
    match error {
        ObserveError::Api(error) if !error.is_transient() => {
            tracing::warn!(server = %server, error = %error, "config_sync: status unreadable");
            JobResult::default().with_finding(report::api_error(server, &error))
        }
        ObserveError::Api(error) => JobResult {
            transport_failure: Some(error.to_string()),
            ..JobResult::default()
        },
        // The store is local; without it no streak or budget holds, so do nothing.
        ObserveError::Store(error) => JobResult {
            transport_failure: Some(format!("config_sync not run: {error}")),
            ..JobResult::default()
        },
    }
}

/// Read the server (once; in check mode again while drifted, up to `confirmations`
/// reads) and what the store remembers.
pub async fn observe(ctx: &JobContext<'_>) -> Result<Observed, ObserveError> {
    let server = &ctx.server.name;
    let now = ctx.clock.now();
    let validate_sync = ctx.api.capabilities().await?.validate_sync;
    let memory = ctx.store.sync().drift(server).await?;
    // The budget's window, and the drift streak for the 429 deferrals.
    let since = (now - SYNC_WINDOW).min(memory.first_seen.unwrap_or(now));
    let attempts = ctx.store.sync().attempts_since(server, since).await?;
    let sync_attempts = counted_attempts(&attempts, now);
    let deferrals = deferrals_in_a_row(&attempts, &memory);
    let mut reads = vec![read(ctx.api, validate_sync).await?];
    if let RunMode::Check { reread_interval } = ctx.mode {
        let wanted = ctx.config.jobs.config_sync.confirmations.max(1) as usize;
        while reads.len() < wanted && reads.last().and_then(Drift::of).is_some() {
            // Jobs do not sleep, except here: `check` gathers its confirmations within
            // one run by contract (RunMode::Check).
            tokio::time::sleep(reread_interval).await;
            reads.push(read(ctx.api, validate_sync).await?);
        }
    }
    Ok(Observed {
        server: server.clone(),
        reads,
        memory,
        sync_attempts,
        deferrals,
        validate_sync,
    })
}

/// One read: config-status, and on 2.x validate-sync.
pub async fn read(api: &ServerApi, validate_sync: bool) -> Result<Read, ApiError> {
    let status = api.config_status().await?;
    let validation = match validate_sync {
        true => Some(api.validate_sync().await?),
        false => None,
    };
    Ok(Read { status, validation })
}
