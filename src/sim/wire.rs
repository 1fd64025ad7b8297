//! The JSON shapes the simulator answers with, field for field as recorded from the real
//! servers (`tests/fixtures/api-samples/`). Plain data: no behaviour lives here.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// `GET /api/` and `GET /`.
#[derive(Debug, Clone, Serialize)]
pub struct RootInfo {
    pub message: &'static str,
    pub version: &'static str,
    pub status: &'static str,
}

/// A key as the API shows it (VPNKey); 2.x adds `port` and `short_id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub uuid: String,
    pub created_at: String,
    pub is_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_id: Option<String>,
}

/// `GET /api/keys/{id}/config`; 2.x adds `vless_url` and `short_id`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyConfig {
    pub key: KeyView,
    pub client_config: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vless_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_id: Option<String>,
}

/// `{"message": ...}` answers (delete).
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub message: &'static str,
}

/// 1.x TrafficStats. `total_mb` and `connection_ratio` are JSON numbers that the real
/// server writes as integer `0` for an idle key and as floats otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStats {
    pub total_bytes: u64,
    pub total_formatted: String,
    pub total_mb: Value,
    pub connections: u32,
    pub connection_ratio: Value,
    pub connections_count: u32,
    pub source: &'static str,
    pub method: &'static str,
    pub timestamp: i64,
}

/// One entry of the 1.x bulk `keys_stats`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStat {
    pub uuid: String,
    pub connections: u32,
    pub total_bytes: u64,
    pub total_formatted: String,
    pub total_mb: Value,
    pub connection_ratio: Value,
}

/// 1.x `GET /api/traffic/exact` (with `keys_stats` one level deeper than documented).
#[derive(Debug, Clone, Serialize)]
pub struct BulkTraffic {
    pub total_keys: usize,
    pub active_keys: usize,
    pub traffic_stats: BulkInner,
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct BulkInner {
    pub total_keys: usize,
    pub active_keys: usize,
    pub total_traffic: String,
    pub traffic_stats: KeysStats,
    pub source: &'static str,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeysStats {
    pub keys_stats: Vec<KeyStat>,
}

/// 1.x `GET /api/keys/{id}/traffic/exact`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyTrafficV1 {
    pub key: KeyView,
    pub traffic_bytes: TrafficStats,
    pub source: &'static str,
}

/// 1.x `GET /api/traffic/status`.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStatus {
    pub total_keys: usize,
    pub active_keys: usize,
    pub precise_monitor_available: bool,
    pub traffic_stats: Vec<StatusEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    pub key_id: String,
    pub key_name: String,
    pub uuid: String,
    pub exact_traffic: TrafficStats,
    pub has_traffic_data: bool,
}

/// 1.x `POST /api/keys/{id}/traffic/reset` (`key_id` echoes the path, id or uuid).
#[derive(Debug, Clone, Serialize)]
pub struct ResetV1 {
    pub message: &'static str,
    pub key_id: String,
    pub uuid: String,
    pub source: &'static str,
}

/// 2.x `GET /api/keys/{id}/traffic`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyTrafficV2 {
    pub status: &'static str,
    pub key_id: String,
    pub key_uuid: String,
    pub total_bytes: u64,
    pub timestamp: String,
}

/// 2.x `POST /api/keys/{id}/traffic/reset`.
#[derive(Debug, Clone, Serialize)]
pub struct ResetV2 {
    pub status: &'static str,
    pub message: &'static str,
    pub key_id: String,
    pub key_uuid: String,
    pub timestamp: String,
}

/// `POST /api/system/sync-config`; 2.x adds `validation`.
#[derive(Debug, Clone, Serialize)]
pub struct SyncAnswer {
    pub message: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    pub timestamp: i64,
}

/// `GET /api/system/config-status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigStatus {
    pub synchronized: bool,
    pub keys_json_count: usize,
    pub config_json_count: usize,
    pub keys_json_uuids: Vec<String>,
    pub config_json_uuids: Vec<String>,
    pub timestamp: i64,
}

/// 2.x sync check, in `validate-sync` and in the sync answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    pub synced: bool,
    pub uuid_synced: bool,
    pub short_id_synced: bool,
    pub keys_count: usize,
    pub config_count: usize,
    pub missing_in_config: Vec<String>,
    pub extra_in_config: Vec<String>,
    pub short_id_mismatches: Vec<ShortIdMismatch>,
    pub short_id_mismatches_count: usize,
}

/// One short_id that differs between the key store and config.json (2.x server's shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShortIdMismatch {
    pub uuid: String,
    pub name: String,
    pub db_short_id: String,
    pub config_short_id: Option<String>,
}

/// 2.x `GET /api/system/xray/validate-sync`.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateSync {
    pub validation: Validation,
    pub timestamp: i64,
}

/// `POST /api/system/verify-reality`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyAnswer {
    pub message: &'static str,
    pub status: &'static str,
    pub timestamp: i64,
}

/// 2.x `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub timestamp: String,
    pub version: &'static str,
    pub services: BTreeMap<&'static str, &'static str>,
    pub resources: Resources,
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub memory_usage_percent: f64,
    pub memory_available_mb: f64,
    pub disk_usage_percent: f64,
    pub disk_free_gb: f64,
    pub cpu_usage_percent: f64,
}

/// 2.x `GET /api/system/xray/inbounds`.
#[derive(Debug, Clone, Serialize)]
pub struct Inbounds {
    pub inbounds: Vec<InboundView>,
    pub timestamp: i64,
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboundView {
    pub tag: String,
    pub port: u16,
    pub client_count: usize,
    pub uuids: Vec<String>,
    pub short_ids: Vec<String>,
    pub dest: String,
    pub server_names: Vec<String>,
}

/// 2.x `GET /api/system/ports`.
#[derive(Debug, Clone, Serialize)]
pub struct Ports {
    pub port_assignments: PortBook,
    pub used_ports: usize,
    pub available_ports: usize,
    pub max_ports: usize,
    pub port_range: String,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortBook {
    pub used_ports: BTreeMap<String, PortUse>,
    pub port_assignments: BTreeMap<String, PortAssignment>,
    pub created_at: String,
    pub last_updated: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortUse {
    pub uuid: String,
    pub key_id: String,
    pub key_name: String,
    pub assigned_at: String,
    pub is_active: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortAssignment {
    pub port: u16,
    pub key_id: String,
    pub key_name: String,
    pub assigned_at: String,
}

/// 2.x `GET /api/system/xray/config-status`.
#[derive(Debug, Clone, Serialize)]
pub struct XrayConfigStatus {
    pub config_status: LayoutView,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayoutView {
    pub status: &'static str,
    pub total_inbounds: usize,
    pub vless_inbounds: usize,
    pub api_inbound: bool,
}

/// 2.x `GET /api/system/ports/status`.
#[derive(Debug, Clone, Serialize)]
pub struct PortsStatus {
    pub validation: PortsValidation,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortsValidation {
    pub valid: bool,
    pub issues: Vec<String>,
    pub total_assignments: usize,
    pub total_used_ports: usize,
}

/// 2.x `POST /api/system/fix-reality-keys`.
#[derive(Debug, Clone, Serialize)]
pub struct FixAnswer {
    pub status: &'static str,
    pub message: &'static str,
    pub timestamp: i64,
}
