//! Typed answers of the VPN Key Management API, as the rest of keywarden sees them.
//! Wire quirks (number encodings, nesting, field variants) are resolved in `wire.rs`;
//! nothing here knows about JSON.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Server generation, from the version GET /api/ reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generation {
    /// 1.x: keys.json, bulk traffic estimates, no validate-sync.
    V1,
    /// 2.x: SQLite key store, per-key cumulative counters, validate-sync, rate limits.
    V2,
    /// A version we do not recognise; features are detected by probing.
    Unknown,
}

impl Generation {
    /// Generation from a version string such as "1.0.0" or "2.3.6".
    pub fn from_version(version: &str) -> Generation {
        match version.trim().trim_start_matches('v').split('.').next() {
            Some("1") => Generation::V1,
            Some("2") => Generation::V2,
            _ => Generation::Unknown,
        }
    }
}

/// GET /api/.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiStatus {
    pub message: String,
    pub version: String,
    pub status: String,
}

/// What this server can do, detected (never configured).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    pub version: String,
    pub generation: Generation,
    /// GET /api/traffic/exact, /api/traffic/status and /api/keys/{id}/traffic/exact exist (1.x).
    pub bulk_traffic: bool,
    /// GET /api/system/xray/validate-sync exists (2.x).
    pub validate_sync: bool,
}

/// One key of the key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VpnKey {
    /// The key's own id (what per-key calls should use).
    pub id: String,
    /// The VLESS client id, as it appears in config.json.
    pub uuid: String,
    pub name: String,
    pub created_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    /// 2.x only.
    pub port: Option<u16>,
    /// 2.x only: the key's Reality short id.
    pub short_id: Option<String>,
}

impl VpnKey {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef::both(&self.id, &self.uuid)
    }
}

/// How to address a key in per-key calls: by id when known (2.x matches only ids on
/// some endpoints), by uuid as the fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRef {
    pub id: Option<String>,
    pub uuid: Option<String>,
}

impl KeyRef {
    pub fn both(id: &str, uuid: &str) -> KeyRef {
        KeyRef {
            id: Some(id.to_string()),
            uuid: Some(uuid.to_string()),
        }
    }
    pub fn by_id(id: &str) -> KeyRef {
        KeyRef {
            id: Some(id.to_string()),
            uuid: None,
        }
    }
    pub fn by_uuid(uuid: &str) -> KeyRef {
        KeyRef {
            id: None,
            uuid: Some(uuid.to_string()),
        }
    }
    /// The identifiers to try, in order: id first, then uuid (deduplicated).
    pub fn candidates(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::with_capacity(2);
        for value in [self.id.as_deref(), self.uuid.as_deref()]
            .into_iter()
            .flatten()
        {
            if !value.is_empty() && !out.contains(&value) {
                out.push(value);
            }
        }
        out
    }
}

/// 1.x TrafficStats, with the integration's defaults for missing fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficStats {
    pub total_bytes: u64,
    pub total_formatted: String,
    pub total_mb: f64,
    pub connections: u64,
    pub connection_ratio: f64,
    pub connections_count: u64,
    pub source: String,
    pub method: String,
    pub timestamp: Option<DateTime<Utc>>,
}

/// One key's traffic counter, from whichever endpoint the server has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyTraffic {
    pub key_id: Option<String>,
    pub uuid: Option<String>,
    /// Cumulative bytes since creation or the last reset (1.x: an estimate).
    pub total_bytes: u64,
    pub upload: Option<u64>,
    pub download: Option<u64>,
    pub connections: Option<u64>,
    pub source: String,
    pub read_at: Option<DateTime<Utc>>,
}

/// One entry of the 1.x bulk answer. Idle keys are absent; strangers' uuids may appear.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkTrafficEntry {
    pub uuid: String,
    pub connections: u64,
    pub total_bytes: u64,
    pub total_mb: f64,
    pub connection_ratio: f64,
}

/// GET /api/traffic/exact (1.x).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BulkTraffic {
    pub source: String,
    pub total_keys: u64,
    pub active_keys: u64,
    pub entries: Vec<BulkTrafficEntry>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// One key of GET /api/traffic/status (1.x).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorKey {
    pub key_id: String,
    pub key_name: String,
    pub uuid: String,
    pub traffic: TrafficStats,
    pub has_traffic_data: bool,
}

/// GET /api/traffic/status (1.x).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorStatus {
    pub total_keys: u64,
    pub active_keys: u64,
    pub precise_monitor_available: bool,
    pub keys: Vec<MonitorKey>,
}

/// A reset the server confirmed (a confirmation is not proof: read the counter back).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResetConfirmation {
    pub message: String,
    pub key_id: Option<String>,
    pub uuid: Option<String>,
    pub previous_total: Option<u64>,
}

/// GET /api/system/config-status. On 2.x it may come from a stale cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigStatus {
    pub synchronized: bool,
    pub key_store_count: u64,
    pub config_count: u64,
    pub key_store_uuids: Vec<String>,
    pub config_uuids: Vec<String>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// The 2.x `validation` object (validate-sync, and inside a sync answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncValidation {
    pub synced: bool,
    pub uuid_synced: bool,
    pub short_id_synced: bool,
    pub keys_count: u64,
    pub config_count: u64,
    pub missing_in_config: Vec<String>,
    pub extra_in_config: Vec<String>,
    /// Each mismatch as the server describes it (a uuid, or a JSON object as text).
    pub short_id_mismatches: Vec<String>,
    pub short_id_mismatches_count: u64,
}

/// A sync the server said it performed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncOutcome {
    pub message: String,
    pub status: String,
    /// 2.x: the server's own check after the sync (may say `synced: false`).
    pub validation: Option<SyncValidation>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// A Reality verification the server said succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealityOutcome {
    pub message: String,
    pub status: String,
}

/// What a delete achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    Deleted,
    /// 404 by id and by uuid: nothing left to delete.
    AlreadyGone,
}
