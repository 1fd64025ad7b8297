//! Decoding of every answer the API gives into the typed models of `model.rs`.
//!
//! The answers that grow with the number of keys (key list, 1.x bulk traffic, 1.x traffic
//! status) are decoded by `typed.rs` straight from the bytes; the functions here for them
//! take the same route from a parsed value. The small answers go through
//! `serde_json::Value` on purpose: the servers in the field disagree
//! on nesting (`keys_stats` at two depths), field names (`total_bytes` / `total`,
//! `uuid` / `key_uuid`) and encodings (numbers as strings, two timestamp formats). A
//! missing field takes the integration's default (0, 0.0, "0 B", false, [],
//! `alternative_monitor`, `network_distribution`), except where a default would be a
//! lie that costs money: a traffic reading without any total is an error, not 0.
//!
//! Longer than 400 lines on purpose: one decoder per endpoint of both generations, kept
//! together so that these tolerance rules live in one place.

use serde_json::{Map, Value};

use super::lenient::{LenientBool, LenientU64, Timestamp};
use super::model::*;
use super::typed;

/// An answer that is JSON but not the shape we need.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

pub(super) type Decoded<T> = Result<T, DecodeError>;

const DEFAULT_SOURCE: &str = "alternative_monitor";

pub(super) fn object<'a>(value: &'a Value, what: &str) -> Decoded<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| {
        DecodeError(format!(
            "{what}: expected a JSON object, got {}",
            kind(value)
        ))
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first present, non-null field among `names`.
pub(super) fn field<'a>(map: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .filter_map(|name| map.get(*name))
        .find(|value| !value.is_null())
}

pub(super) fn u64_field(
    map: &Map<String, Value>,
    names: &[&str],
    what: &str,
) -> Decoded<Option<u64>> {
    match field(map, names) {
        None => Ok(None),
        Some(value) => serde_json::from_value::<LenientU64>(value.clone())
            .map(|n| Some(n.0))
            .map_err(|err| DecodeError(format!("{what}.{}: {err}", names[0]))),
    }
}

pub(super) fn bool_field(map: &Map<String, Value>, names: &[&str], what: &str) -> Decoded<bool> {
    match field(map, names) {
        None => Ok(false),
        Some(value) => serde_json::from_value::<LenientBool>(value.clone())
            .map(|b| b.0)
            .map_err(|err| DecodeError(format!("{what}.{}: {err}", names[0]))),
    }
}

/// Timestamps are informational: an unreadable one becomes None rather than failing
/// the whole answer.
pub(super) fn time_field(
    map: &Map<String, Value>,
    names: &[&str],
) -> Option<chrono::DateTime<chrono::Utc>> {
    field(map, names)
        .and_then(|value| serde_json::from_value::<Timestamp>(value.clone()).ok())
        .map(|t| t.0)
}

/// A textual field; numbers are accepted and printed (ids are sometimes numeric).
pub(super) fn text_field(map: &Map<String, Value>, names: &[&str]) -> Option<String> {
    match field(map, names)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

pub(super) fn text_or(map: &Map<String, Value>, names: &[&str], default: &str) -> String {
    text_field(map, names).unwrap_or_else(|| default.to_string())
}

pub(super) fn string_list(
    map: &Map<String, Value>,
    names: &[&str],
    what: &str,
) -> Decoded<Vec<String>> {
    match field(map, names) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().map(describe_item).collect()),
        Some(other) => Err(DecodeError(format!(
            "{what}.{}: expected a list, got {}",
            names[0],
            kind(other)
        ))),
    }
}

/// A list item as text: strings as they are, an object by its uuid when it has one.
fn describe_item(item: &Value) -> String {
    match item {
        Value::String(text) => text.clone(),
        Value::Object(map) => {
            text_field(map, &["uuid", "key_uuid"]).unwrap_or_else(|| item.to_string())
        }
        other => other.to_string(),
    }
}

pub fn api_status(value: &Value) -> Decoded<ApiStatus> {
    let map = object(value, "api status")?;
    let version = text_field(map, &["version"])
        .ok_or_else(|| DecodeError("api status: no `version` field".into()))?;
    Ok(ApiStatus {
        message: text_or(map, &["message"], ""),
        version,
        status: text_or(map, &["status"], ""),
    })
}

/// One key (`GET /keys/{id}`, or the `key` of another answer).
pub fn vpn_key(value: &Value, what: &str) -> Decoded<VpnKey> {
    typed::vpn_key_from(value, what)
}

/// The key list (the client decodes it from bytes with [`typed::key_list`]).
pub fn key_list(value: &Value) -> Decoded<Vec<VpnKey>> {
    typed::key_list_from(value)
}

pub fn traffic_stats(value: &Value, what: &str) -> Decoded<TrafficStats> {
    typed::traffic_stats_from(value, what)
}

/// One key's traffic: 1.x `{key, traffic_bytes: TrafficStats, source}`, 2.x
/// `{status, key_id, key_uuid, total_bytes, timestamp}`, or the variant
/// `{key_id, upload, download, total, last_updated}`.
pub fn key_traffic(value: &Value) -> Decoded<KeyTraffic> {
    let what = "key traffic";
    let map = object(value, what)?;
    if let Some(stats) =
        field(map, &["traffic_bytes", "traffic", "exact_traffic"]).filter(|v| v.is_object())
    {
        let stats_map = object(stats, "key traffic.traffic_bytes")?;
        let total = u64_field(
            stats_map,
            &["total_bytes", "total"],
            "key traffic.traffic_bytes",
        )?
        .ok_or_else(|| DecodeError("key traffic: no total in traffic_bytes".into()))?;
        let stats = traffic_stats(stats, "key traffic.traffic_bytes")?;
        let key = field(map, &["key"]).filter(|v| v.is_object());
        let key_map = key.and_then(Value::as_object);
        return Ok(KeyTraffic {
            key_id: key_map
                .and_then(|k| text_field(k, &["id"]))
                .or_else(|| text_field(map, &["key_id"])),
            uuid: key_map
                .and_then(|k| text_field(k, &["uuid"]))
                .or_else(|| text_field(map, &["uuid", "key_uuid"])),
            total_bytes: total,
            upload: None,
            download: None,
            connections: Some(stats.connections),
            source: text_field(map, &["source"]).unwrap_or(stats.source),
            read_at: stats.timestamp.or_else(|| time_field(map, &["timestamp"])),
        });
    }
    let upload = u64_field(map, &["upload", "uplink", "up"], what)?;
    let download = u64_field(map, &["download", "downlink", "down"], what)?;
    let total = match u64_field(map, &["total_bytes", "total"], what)? {
        Some(total) => total,
        None => match (upload, download) {
            (None, None) => {
                return Err(DecodeError(
                    "key traffic: no total_bytes, total, upload or download field".into(),
                ));
            }
            (up, down) => up.unwrap_or(0).saturating_add(down.unwrap_or(0)),
        },
    };
    Ok(KeyTraffic {
        key_id: text_field(map, &["key_id", "id"]),
        uuid: text_field(map, &["key_uuid", "uuid"]),
        total_bytes: total,
        upload,
        download,
        connections: u64_field(map, &["connections"], what)?,
        source: text_or(map, &["source"], DEFAULT_SOURCE),
        read_at: time_field(map, &["timestamp", "last_updated", "updated_at"]),
    })
}

/// GET /api/traffic/exact (the client decodes it from bytes with [`typed::bulk_traffic`]).
pub fn bulk_traffic(value: &Value) -> Decoded<BulkTraffic> {
    typed::bulk_traffic_from(value)
}

/// GET /api/traffic/status (the client decodes it from bytes with
/// [`typed::monitor_status`]).
pub fn monitor_status(value: &Value) -> Decoded<MonitorStatus> {
    typed::monitor_status_from(value)
}

pub fn config_status(value: &Value) -> Decoded<ConfigStatus> {
    let what = "config status";
    let map = object(value, what)?;
    let synchronized = field(map, &["synchronized", "synced"])
        .ok_or_else(|| DecodeError("config status: no `synchronized` field".into()))
        .and_then(|v| {
            serde_json::from_value::<LenientBool>(v.clone())
                .map(|b| b.0)
                .map_err(|err| DecodeError(format!("config status.synchronized: {err}")))
        })?;
    Ok(ConfigStatus {
        synchronized,
        key_store_count: u64_field(map, &["keys_json_count", "keys_count"], what)?.unwrap_or(0),
        config_count: u64_field(map, &["config_json_count", "config_count"], what)?.unwrap_or(0),
        key_store_uuids: string_list(map, &["keys_json_uuids", "keys_uuids"], what)?,
        config_uuids: string_list(map, &["config_json_uuids", "config_uuids"], what)?,
        timestamp: time_field(map, &["timestamp"]),
    })
}

/// The `validation` object, alone (validate-sync wraps it) or bare.
pub fn sync_validation(value: &Value) -> Decoded<SyncValidation> {
    let outer = object(value, "sync validation")?;
    let inner = match field(outer, &["validation"]) {
        Some(inner) => inner,
        None => value,
    };
    validation_object(inner)
}

fn validation_object(value: &Value) -> Decoded<SyncValidation> {
    let what = "validation";
    let map = object(value, what)?;
    let synced = field(map, &["synced"])
        .ok_or_else(|| DecodeError("validation: no `synced` field".into()))
        .and_then(|v| {
            serde_json::from_value::<LenientBool>(v.clone())
                .map(|b| b.0)
                .map_err(|err| DecodeError(format!("validation.synced: {err}")))
        })?;
    let short_id_mismatches = string_list(map, &["short_id_mismatches"], what)?;
    Ok(SyncValidation {
        synced,
        // Absent detail flags follow the overall verdict rather than claiming a problem.
        uuid_synced: match field(map, &["uuid_synced"]) {
            Some(_) => bool_field(map, &["uuid_synced"], what)?,
            None => synced,
        },
        short_id_synced: match field(map, &["short_id_synced"]) {
            Some(_) => bool_field(map, &["short_id_synced"], what)?,
            None => short_id_mismatches.is_empty(),
        },
        keys_count: u64_field(map, &["keys_count"], what)?.unwrap_or(0),
        config_count: u64_field(map, &["config_count"], what)?.unwrap_or(0),
        missing_in_config: string_list(map, &["missing_in_config"], what)?,
        extra_in_config: string_list(map, &["extra_in_config"], what)?,
        short_id_mismatches_count: u64_field(map, &["short_id_mismatches_count"], what)?
            .unwrap_or(short_id_mismatches.len() as u64),
        short_id_mismatches,
    })
}

/// Whether an action's answer carries the server's success marker. Without one, the
/// action is "unconfirmed", never assumed to have worked.
pub fn confirms(map: &Map<String, Value>, statuses: &[&str], message_markers: &[&str]) -> bool {
    if let Some(Value::Bool(success)) = map.get("success") {
        return *success;
    }
    if let Some(status) = text_field(map, &["status"]) {
        let status = status.to_ascii_lowercase();
        if status == "success" || statuses.contains(&status.as_str()) {
            return true;
        }
        if matches!(status.as_str(), "error" | "failed" | "failure") {
            return false;
        }
    }
    let message = text_or(map, &["message"], "").to_ascii_lowercase();
    message_markers
        .iter()
        .any(|marker| message.contains(marker))
}

pub fn reset_confirmation(value: &Value) -> Decoded<Option<ResetConfirmation>> {
    let map = object(value, "reset answer")?;
    if !confirms(map, &["reset"], &["reset successfully", "reset success"]) {
        return Ok(None);
    }
    Ok(Some(ResetConfirmation {
        message: text_or(map, &["message"], ""),
        key_id: text_field(map, &["key_id", "id"]),
        uuid: text_field(map, &["uuid", "key_uuid"]),
        previous_total: u64_field(map, &["previous_total"], "reset answer")?,
    }))
}

pub fn sync_outcome(value: &Value) -> Decoded<Option<SyncOutcome>> {
    let map = object(value, "sync answer")?;
    if !confirms(
        map,
        &["synced", "synchronized"],
        &["synchronized successfully"],
    ) {
        return Ok(None);
    }
    let validation = match field(map, &["validation"]) {
        Some(inner) => Some(validation_object(inner)?),
        None => None,
    };
    Ok(Some(SyncOutcome {
        message: text_or(map, &["message"], ""),
        status: text_or(map, &["status"], ""),
        validation,
        timestamp: time_field(map, &["timestamp"]),
    }))
}

pub fn reality_outcome(value: &Value) -> Decoded<Option<RealityOutcome>> {
    let map = object(value, "verify-reality answer")?;
    if !confirms(
        map,
        &["verified"],
        &["verified and updated successfully", "verified successfully"],
    ) {
        return Ok(None);
    }
    Ok(Some(RealityOutcome {
        message: text_or(map, &["message"], ""),
        status: text_or(map, &["status"], ""),
    }))
}

pub fn delete_confirmed(value: &Value) -> Decoded<bool> {
    let map = object(value, "delete answer")?;
    Ok(confirms(map, &["deleted"], &["deleted successfully"]))
}

/// The human text of an error answer: FastAPI's `detail` (a string, or a list of
/// validation errors), the rate limiter's `error`, or a `message`.
pub fn error_detail(value: &Value) -> Option<String> {
    let map = value.as_object()?;
    match field(map, &["detail", "error", "message"])? {
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .map(
                    |item| match item.as_object().and_then(|m| text_field(m, &["msg"])) {
                        Some(msg) => {
                            let loc = item
                                .get("loc")
                                .and_then(Value::as_array)
                                .map(|parts| {
                                    parts
                                        .iter()
                                        .map(describe_item)
                                        .collect::<Vec<_>>()
                                        .join(".")
                                })
                                .unwrap_or_default();
                            if loc.is_empty() {
                                msg
                            } else {
                                format!("{loc}: {msg}")
                            }
                        }
                        None => describe_item(item),
                    },
                )
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => Some(other.to_string()),
    }
}
