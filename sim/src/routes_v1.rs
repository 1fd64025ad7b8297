//! Routes only the 1.x API has: the bulk and per-key traffic estimates and the monitor
//! status. Thin, like `routes.rs`.

use axum::Json;
use axum::extract::{Path, State};

use super::handle::SimHandle;
use super::routes::{Answer, Authorized, view};
use super::traffic;
use super::wire::*;

pub async fn bulk_traffic(_: Authorized, State(handle): State<SimHandle>) -> Json<BulkTraffic> {
    handle.with_state(|s| {
        let now = s.now();
        let total = s.total_connections();
        let keys = s.keys();
        // Idle keys are absent; uuids that are no key (from Xray's log) can appear.
        let mut stats: Vec<KeyStat> = keys
            .iter()
            .filter(|k| k.is_active && k.connections > 0)
            .map(|k| traffic::key_stat(&k.uuid, k.total_bytes, k.connections, total))
            .collect();
        stats.extend(
            s.strangers()
                .iter()
                .filter(|x| x.connections > 0)
                .map(|x| traffic::key_stat(&x.uuid, x.bytes, x.connections, total)),
        );
        let bytes: u64 = stats.iter().map(|k| k.total_bytes).sum();
        Json(BulkTraffic {
            total_keys: keys.len(),
            active_keys: keys.iter().filter(|k| k.is_active).count(),
            traffic_stats: BulkInner {
                total_keys: stats.len(),
                active_keys: stats.len(),
                total_traffic: traffic::format_bytes(bytes),
                traffic_stats: KeysStats { keys_stats: stats },
                source: "alternative_monitor",
                timestamp: now.unix,
            },
            source: "xray_api",
        })
    })
}

pub async fn key_traffic(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Answer<KeyTrafficV1> {
    handle.with_state(|s| {
        let key = s.active_key(&id)?;
        let stats = traffic::stats(
            key.total_bytes,
            key.connections,
            s.total_connections(),
            s.now().unix,
        );
        Ok(Json(KeyTrafficV1 {
            key: view(&key),
            traffic_bytes: stats,
            source: "precise_monitor",
        }))
    })
}

pub async fn traffic_status(_: Authorized, State(handle): State<SimHandle>) -> Json<TrafficStatus> {
    handle.with_state(|s| {
        let (now, total, keys) = (s.now(), s.total_connections(), s.keys());
        let entries = keys
            .iter()
            .filter(|k| k.is_active)
            .map(|k| StatusEntry {
                key_id: k.id.clone(),
                key_name: k.name.clone(),
                uuid: k.uuid.clone(),
                exact_traffic: traffic::stats(k.total_bytes, k.connections, total, now.unix),
                has_traffic_data: true,
            })
            .collect::<Vec<_>>();
        Json(TrafficStatus {
            total_keys: keys.len(),
            active_keys: entries.len(),
            precise_monitor_available: s.switches.precise_monitor_available,
            traffic_stats: entries,
        })
    })
}
