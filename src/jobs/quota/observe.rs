//! What the quota job reads: what the store remembers (the ledger, the server's memory,
//! when config_sync last synced, which reset digests were raised), then the key list and
//! each key's counter (the 1.x bulk answer when the server has it, else per-key reads with
//! at most `concurrency` in flight). Read-only.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::jobs::JobContext;
pub use crate::jobs::ObserveError;
use crate::model::FindingKind;
use crate::model::quota::ServerMemory;
use crate::quota::Reading;
use crate::quota::identity::{self, Ambiguity};
use crate::quota::plan::{Ledger, Observed, ObservedKey};
use crate::server_api::{ApiError, ApiErrorKind, KeyTraffic, ServerApi, VpnKey};
use crate::store::StoreError;

/// What the store remembers of a server for the quota job.
#[derive(Debug, Clone)]
pub struct Remembered {
    /// The ledger by uuid (keys gone from the server included).
    pub ledger: Ledger,
    /// The job's memory, with `sync_noted_at` taken from config_sync's attempts.
    pub memory: ServerMemory,
    /// The periods whose `reset_not_applied` digest was already raised.
    pub digests: HashSet<String>,
}

/// Read what the store remembers of `ctx.server`.
pub async fn remembered(ctx: &JobContext<'_>) -> Result<Remembered, StoreError> {
    let server = &ctx.server.name;
    let quota = ctx.store.quota();
    let ledger = quota
        .ledger(server)
        .await?
        .into_iter()
        .map(|entry| (entry.uuid.clone(), entry))
        .collect();
    let mut memory = quota.memory(server).await?;
    // A sync restarts Xray, which may zero the counters: a drop across it is expected.
    memory.sync_noted_at = ctx.store.sync().last_sync(server).await?;
    let digests = quota
        .notices(server, FindingKind::ResetNotApplied)
        .await?
        .into_iter()
        .collect();
    Ok(Remembered {
        ledger,
        memory,
        digests,
    })
}

/// Read `ctx.server` and put it together with what the store remembers.
pub async fn observe(
    ctx: &JobContext<'_>,
    ledger: Ledger,
    memory: ServerMemory,
) -> Result<Observed, ApiError> {
    let capabilities = ctx.api.capabilities().await?;
    // `counter_resets = "auto"` tries resets again when the version changes: a status
    // read within the last half minute (the health job reads it every run) is fresh enough.
    let version = ctx.api.recent_api_status().await?.version;
    let keys = ctx.api.list_keys().await?;
    // Keys that share an id or a uuid are not read at all: a read "of" one may be the
    // other's (see `quota::identity`).
    let ambiguity = identity::ambiguity(keys.iter().map(|k| (k.id.as_str(), k.uuid.as_str())));
    let readings = match capabilities.bulk_traffic {
        true => bulk_readings(ctx.api, &keys, &ambiguity).await?,
        false => per_key_readings(ctx.api, &keys, &ambiguity).await?,
    };
    let keys = keys
        .iter()
        .zip(readings)
        .map(|(key, reading)| observed_key(key, reading))
        .collect();
    Ok(Observed {
        server: ctx.server.name.clone(),
        api_version: version,
        keys,
        ledger,
        memory,
    })
}

fn observed_key(key: &VpnKey, reading: Reading) -> ObservedKey {
    ObservedKey {
        id: key.id.clone(),
        uuid: key.uuid.clone(),
        name: key.name.clone(),
        active: key.is_active,
        created_at: key.created_at,
        reading,
    }
}

/// 1.x: one request for every key. Keys absent from it had no connections: no new
/// traffic (not zero). Uuids that are no key (Xray's access log) are ignored.
async fn bulk_readings(
    api: &ServerApi,
    keys: &[VpnKey],
    ambiguity: &Ambiguity,
) -> Result<Vec<Reading>, ApiError> {
    let bulk = api.bulk_traffic().await?;
    let mut by_uuid: foldhash::HashMap<&str, (u64, u64)> =
        foldhash::HashMap::with_capacity_and_hasher(bulk.entries.len(), Default::default());
    by_uuid.extend(
        bulk.entries
            .iter()
            .map(|e| (e.uuid.as_str(), (e.total_bytes, e.connections))),
    );
    Ok(keys
        .iter()
        .enumerate()
        .map(|(index, key)| match by_uuid.get(key.uuid.as_str()) {
            _ if ambiguity.involves(index) => Reading::Ambiguous,
            Some(&(bytes, connections)) => Reading::Counter {
                bytes,
                connections: Some(connections),
            },
            None => Reading::Idle,
        })
        .collect())
}

/// 2.x: one request per key. A failed read leaves that key alone; when every read failed
/// the server could not be observed.
async fn per_key_readings(
    api: &ServerApi,
    keys: &[VpnKey],
    ambiguity: &Ambiguity,
) -> Result<Vec<Reading>, ApiError> {
    let readable: Vec<usize> = (0..keys.len())
        .filter(|index| !ambiguity.involves(*index))
        .collect();
    let refs: Vec<_> = readable.iter().map(|&i| keys[i].key_ref()).collect();
    let mut results = api.key_traffic_many(&refs).await.into_iter();
    let mut first_error = None;
    let readings: Vec<Reading> = (0..keys.len())
        .map(|index| match ambiguity.involves(index) {
            true => None,
            false => results.next().map(|(_, result)| result),
        })
        .map(|result| match result {
            None => Reading::Ambiguous,
            Some(Ok(traffic)) => counter(&traffic),
            // 1.x without the bulk route: an inactive key's counter does not move.
            Some(Err(error)) if matches!(error.kind, ApiErrorKind::KeyInactive { .. }) => {
                Reading::Idle
            }
            Some(Err(error)) => {
                tracing::debug!(server = %api.name(), %error, "quota: a key's traffic read failed");
                first_error.get_or_insert(error);
                Reading::Failed
            }
        })
        .collect();
    let all_failed = !readable.is_empty()
        && readings
            .iter()
            .all(|r| matches!(r, Reading::Failed | Reading::Ambiguous));
    match (all_failed, first_error) {
        (true, Some(error)) => Err(error),
        _ => Ok(readings),
    }
}

fn counter(traffic: &KeyTraffic) -> Reading {
    Reading::Counter {
        bytes: traffic.total_bytes,
        connections: traffic.connections,
    }
}

/// One key's counter now (to verify a reset).
pub async fn read_counter(api: &ServerApi, id: &str, uuid: &str) -> Result<u64, ApiError> {
    let key = crate::server_api::KeyRef::both(id, uuid);
    api.key_traffic(&key).await.map(|t| t.total_bytes)
}

/// Whether counters froze: no key's counter changed for `STALE_AFTER` while the server
/// reports open connections.
pub fn frozen(changed_at: Option<DateTime<Utc>>, connections: bool, now: DateTime<Utc>) -> bool {
    connections && changed_at.is_some_and(|at| now - at >= STALE_AFTER)
}

/// Counters unchanged this long with connections open: stale.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::hours(24);
