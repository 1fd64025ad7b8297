//! Routes only the 2.x API has: health, cumulative per-key traffic, validate-sync, the
//! inbound and port listings. Thin, like `routes.rs`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};

use super::handle::SimHandle;
use super::routes::{Answer, Authorized};
use super::state::{FIRST_PORT, MAX_PORTS};
use super::wire::*;

pub async fn health(State(handle): State<SimHandle>) -> Json<Health> {
    handle.with_state(|s| {
        let now = s.now();
        Json(Health {
            status: "healthy",
            timestamp: now.iso,
            version: s.generation.version(),
            services: BTreeMap::from([
                ("api", "running"),
                ("nginx", "running"),
                // The top-level status stays "healthy" either way, as recorded.
                (
                    "xray",
                    if s.xray_running() {
                        "running"
                    } else {
                        "stopped"
                    },
                ),
            ]),
            resources: Resources {
                memory_usage_percent: 12.5,
                memory_available_mb: 1789.25,
                disk_usage_percent: 31.4,
                disk_free_gb: 17.82,
                cpu_usage_percent: 3.1,
            },
            uptime_seconds: now.instant.saturating_duration_since(s.started()).as_secs(),
        })
    })
}

pub async fn key_traffic(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Answer<KeyTrafficV2> {
    handle.with_state(|s| {
        let key = s.read_traffic_v2(&id)?;
        Ok(Json(KeyTrafficV2 {
            status: "success",
            key_id: id,
            key_uuid: key.uuid,
            total_bytes: key.total_bytes,
            timestamp: s.now().iso,
        }))
    })
}

pub async fn validate_sync(_: Authorized, State(handle): State<SimHandle>) -> Json<ValidateSync> {
    handle.with_state(|s| {
        Json(ValidateSync {
            validation: s.validation(),
            timestamp: s.now().unix,
        })
    })
}

pub async fn xray_inbounds(_: Authorized, State(handle): State<SimHandle>) -> Json<Inbounds> {
    handle.with_state(|s| {
        let inbounds = s
            .config()
            .inbounds()
            .iter()
            .map(|i| InboundView {
                tag: i.tag.clone(),
                port: i.port,
                client_count: i.clients.len(),
                uuids: i.clients.clone(),
                short_ids: i.short_ids.clone(),
                dest: i.dest.clone(),
                server_names: i.server_names.clone(),
            })
            .collect();
        Json(Inbounds {
            inbounds,
            timestamp: s.now().unix,
            source: "config.json",
        })
    })
}

pub async fn ports(_: Authorized, State(handle): State<SimHandle>) -> Json<Ports> {
    handle.with_state(|s| {
        let now = s.now();
        let mut used = BTreeMap::new();
        let mut assigned = BTreeMap::new();
        for key in s.keys() {
            let Some(port) = key.port else { continue };
            used.insert(
                port.to_string(),
                PortUse {
                    uuid: key.uuid.clone(),
                    key_id: key.id.clone(),
                    key_name: key.name.clone(),
                    assigned_at: key.created_at.clone(),
                    is_active: key.is_active,
                },
            );
            assigned.insert(
                key.uuid.clone(),
                PortAssignment {
                    port,
                    key_id: key.id,
                    key_name: key.name,
                    assigned_at: key.created_at,
                },
            );
        }
        let max = usize::from(MAX_PORTS);
        let first = FIRST_PORT;
        Json(Ports {
            used_ports: used.len(),
            available_ports: max - used.len(),
            max_ports: max,
            port_range: format!("{first}-{}", first + MAX_PORTS - 1),
            timestamp: now.unix,
            port_assignments: PortBook {
                used_ports: used,
                port_assignments: assigned,
                created_at: now.iso.clone(),
                last_updated: now.iso,
            },
        })
    })
}

/// `GET /api/system/xray/config-status`: the layout; `api_inbound` is the stock layout's
/// API inbound (where verify-reality always fails).
pub async fn xray_config_status(
    _: Authorized,
    State(handle): State<SimHandle>,
) -> Json<XrayConfigStatus> {
    handle.with_state(|s| {
        let vless = s.config().inbounds().len();
        let api_inbound = s.api_inbound();
        Json(XrayConfigStatus {
            config_status: LayoutView {
                status: "ok",
                total_inbounds: vless + usize::from(api_inbound),
                vless_inbounds: vless,
                api_inbound,
            },
            timestamp: s.now().unix,
        })
    })
}

/// `GET /api/system/ports/status`.
pub async fn ports_status(_: Authorized, State(handle): State<SimHandle>) -> Json<PortsStatus> {
    handle.with_state(|s| {
        let used = s.keys().iter().filter(|k| k.port.is_some()).count();
        Json(PortsStatus {
            validation: PortsValidation {
                valid: true,
                issues: Vec::new(),
                total_assignments: used,
                total_used_ports: used,
            },
            timestamp: s.now().unix,
        })
    })
}

/// `POST /api/system/fix-reality-keys`: rewrite the Reality keys, restart Xray.
pub async fn fix_reality_keys(_: Authorized, State(handle): State<SimHandle>) -> Json<FixAnswer> {
    let (now, delay) = handle.with_state(|s| {
        s.fix_reality_keys();
        (s.now(), s.restart_delay)
    });
    tokio::time::sleep(delay).await;
    handle.apply_dataplane().await;
    Json(FixAnswer {
        status: "fixed",
        message: "Reality keys fixed successfully",
        timestamp: now.unix,
    })
}
