//! What the quota job reads: the key list, each key's counter (the 1.x bulk answer when
//! the server has it, else per-key reads with at most `concurrency` in flight), and what
//! the store remembers (ledger, server memory). Read-only.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::jobs::JobContext;
use crate::quota::Reading;
use crate::quota::identity::{self, Ambiguity};
use crate::quota::plan::{Observed, ObservedKey};
use crate::server_api::{ApiError, ApiErrorKind, KeyTraffic, ServerApi, VpnKey};
use crate::store::StoreError;

/// Why a server could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Observe `ctx.server`.
pub async fn observe(ctx: &JobContext<'_>) -> Result<Observed, ObserveError> {
    let server = &ctx.server.name;
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
    let ledger = ctx
        .store
        .quota_ledger(server)?
        .into_iter()
        .map(|entry| (entry.uuid.clone(), entry))
        .collect();
    let memory = ctx.store.quota_memory(server)?;
    let keys = keys
        .iter()
        .zip(readings)
        .map(|(key, reading)| observed_key(key, reading))
        .collect();
    Ok(Observed {
        server: server.clone(),
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
    let by_uuid: HashMap<&str, (u64, u64)> = bulk
        .entries
        .iter()
        .map(|e| (e.uuid.as_str(), (e.total_bytes, e.connections)))
        .collect();
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
