//! The 2.x calls about Xray itself (service state, inbounds as configured, the layout,
//! the Reality repair) and the client link of a key (both generations): typed models and
//! their tolerant decoding. Like `wire.rs`, a missing field takes a harmless default,
//! except where a default would hide a problem (an inbound without `dest` is reported
//! as such, never given one).

use serde::Serialize;
use serde_json::Value;

use super::model::VpnKey;
use super::vless::VlessLink;
use super::wire::{
    self, DecodeError, Decoded, bool_field, field, object, string_list, text_field, text_or,
    u64_field,
};

/// A service's state as `GET /health` (2.x) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Running,
    Stopped,
    /// Any other word the server used, kept as said.
    Other(String),
}

impl ServiceState {
    fn parse(text: &str) -> ServiceState {
        match text.trim().to_ascii_lowercase().as_str() {
            "running" | "active" | "up" => ServiceState::Running,
            "stopped" | "inactive" | "dead" | "failed" | "down" => ServiceState::Stopped,
            _ => ServiceState::Other(text.to_string()),
        }
    }
}

/// `GET /health` (2.x, no API key). Its top-level `status` stays "healthy" while Xray is
/// stopped (`v2_health_xray_stopped.json`): only `services.xray` tells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub status: String,
    pub version: Option<String>,
    /// `services.xray`; None when the answer does not mention Xray.
    pub xray: Option<ServiceState>,
    pub uptime_seconds: Option<u64>,
}

/// One VLESS inbound of config.json as `GET /api/system/xray/inbounds` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XrayInbound {
    pub tag: String,
    pub port: Option<u16>,
    pub uuids: Vec<String>,
    pub short_ids: Vec<String>,
    /// Reality's `dest` ("host:port"); empty when config.json has none.
    pub dest: String,
    pub server_names: Vec<String>,
}

/// `GET /api/system/xray/config-status` (2.x): a summary of config.json's layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XrayLayout {
    pub status: String,
    pub total_inbounds: u64,
    pub vless_inbounds: u64,
    /// Xray's API inbound is part of the layout: there `verify-reality` reads it and
    /// can only fail. None when the answer does not say.
    pub api_inbound: Option<bool>,
}

/// A `fix-reality-keys` the server said it performed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RealityFix {
    pub status: String,
    pub message: String,
}

/// `GET /api/keys/{id}/config`: the key and the vless:// link users' clients dial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyConfig {
    pub key: VpnKey,
    /// None when no vless:// link could be found in the answer.
    pub link: Option<VlessLink>,
    pub short_id: Option<String>,
}

pub fn health(value: &Value) -> Decoded<Health> {
    let map = object(value, "health")?;
    let services = field(map, &["services"]).and_then(Value::as_object);
    let xray = services
        .and_then(|s| text_field(s, &["xray"]))
        .map(|text| ServiceState::parse(&text));
    if services.is_none() && field(map, &["status"]).is_none() {
        return Err(DecodeError(
            "health: neither `status` nor `services`".into(),
        ));
    }
    Ok(Health {
        status: text_or(map, &["status"], ""),
        version: text_field(map, &["version"]),
        xray,
        uptime_seconds: u64_field(map, &["uptime_seconds"], "health")?,
    })
}

pub fn xray_inbounds(value: &Value) -> Decoded<Vec<XrayInbound>> {
    let items = match value {
        Value::Array(items) => items,
        _ => match field(object(value, "inbounds")?, &["inbounds"]) {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(DecodeError("inbounds: `inbounds` is not a list".into())),
            None => return Err(DecodeError("inbounds: no `inbounds` field".into())),
        },
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| inbound(item, &format!("inbounds[{index}]")))
        .collect()
}

fn inbound(value: &Value, what: &str) -> Decoded<XrayInbound> {
    let map = object(value, what)?;
    Ok(XrayInbound {
        tag: text_or(map, &["tag"], ""),
        port: u64_field(map, &["port"], what)?.and_then(|p| u16::try_from(p).ok()),
        uuids: string_list(map, &["uuids", "clients"], what)?,
        short_ids: string_list(map, &["short_ids", "shortIds"], what)?,
        dest: text_or(map, &["dest", "target"], ""),
        server_names: string_list(map, &["server_names", "serverNames"], what)?,
    })
}

pub fn xray_layout(value: &Value) -> Decoded<XrayLayout> {
    let outer = object(value, "xray config status")?;
    let inner = match field(outer, &["config_status"]) {
        Some(inner) => object(inner, "xray config status.config_status")?,
        None => outer,
    };
    let what = "xray config status";
    Ok(XrayLayout {
        status: text_or(inner, &["status"], ""),
        total_inbounds: u64_field(inner, &["total_inbounds"], what)?.unwrap_or(0),
        vless_inbounds: u64_field(inner, &["vless_inbounds"], what)?.unwrap_or(0),
        api_inbound: match field(inner, &["api_inbound"]) {
            Some(_) => Some(bool_field(inner, &["api_inbound"], what)?),
            None => None,
        },
    })
}

/// The repair's answer; `None` without the success marker ("fixed").
pub fn reality_fix(value: &Value) -> Decoded<Option<RealityFix>> {
    let map = object(value, "fix-reality-keys answer")?;
    if !wire::confirms(map, &["fixed", "ok"], &["fixed successfully"]) {
        return Ok(None);
    }
    Ok(Some(RealityFix {
        status: text_or(map, &["status"], ""),
        message: text_or(map, &["message"], ""),
    }))
}

/// 2.x: `vless_url` (or `client_config`, which is the bare link); 1.x: the link inside
/// the `client_config` text.
pub fn key_config(value: &Value) -> Decoded<KeyConfig> {
    let map = object(value, "key config")?;
    let key = wire::vpn_key(
        field(map, &["key"]).ok_or_else(|| DecodeError("key config: no `key` field".into()))?,
        "key config.key",
    )?;
    let link = ["vless_url", "client_config", "config"]
        .iter()
        .filter_map(|name| text_field(map, &[name]))
        .find_map(|text| VlessLink::find_in(&text));
    Ok(KeyConfig {
        short_id: text_field(map, &["short_id"]).or_else(|| key.short_id.clone()),
        key,
        link,
    })
}
