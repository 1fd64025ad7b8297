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
//!   is recorded before the POST (a crash still counts), and its `deferred` audit entry,
//!   stamped with the attempt's time, takes it out of the window again.

mod drift;
mod execute;
mod plan;
pub(crate) mod report;

use chrono::{DateTime, Utc};

pub use drift::{Drift, Read, Witness};
pub use execute::execute;
pub use plan::{Blocker, Observed, Plan, SYNC_WINDOW, budget_spent, plan, remember, streak};
pub use report::SUBJECT;

use super::{JobContext, JobResult, RunMode};
use crate::server_api::{ApiError, ServerApi};
use crate::store::{AuditEntry, DriftMemory, Store, StoreError};

/// The audit action and target of a sync.
pub const SYNC_ACTION: &str = "sync";

/// Why a server could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    execute(ctx, &observed, &plan, now).await
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
    let memory = ctx.store.drift(server)?;
    let sync_attempts = counted_attempts(ctx.store, server, now)?;
    let deferrals = deferrals_in_a_row(ctx.store, server, &memory)?;
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

/// This job's sync entries in the audit log since `since`, newest first.
fn sync_entries(
    store: &Store,
    server: &str,
    since: DateTime<Utc>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut entries = store.audit_since(server, since)?;
    entries.retain(|e| e.action == SYNC_ACTION && e.target == SUBJECT);
    Ok(entries)
}

/// Sync attempts of the last hour, minus those the server deferred with 429 (matched by
/// their timestamp: a `deferred` entry carries its attempt's time).
fn counted_attempts(
    store: &Store,
    server: &str,
    now: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let since = now - SYNC_WINDOW;
    let mut attempts = store.sync_attempts_since(server, since)?;
    if attempts.is_empty() {
        return Ok(attempts);
    }
    for entry in sync_entries(store, server, since)? {
        if entry.result == execute::DEFERRED
            && let Some(at) = attempts.iter().position(|a| *a == entry.at)
        {
            attempts.remove(at);
        }
    }
    Ok(attempts)
}

/// Deferred syncs in a row within the current drift streak.
fn deferrals_in_a_row(
    store: &Store,
    server: &str,
    memory: &DriftMemory,
) -> Result<u32, StoreError> {
    let Some(since) = memory.first_seen.filter(|_| memory.confirmations > 0) else {
        return Ok(0);
    };
    let in_a_row = sync_entries(store, server, since)?
        .iter()
        .filter(|e| e.result != execute::STARTED)
        .take_while(|e| e.result == execute::DEFERRED)
        .count();
    Ok(u32::try_from(in_a_row).unwrap_or(u32::MAX))
}
