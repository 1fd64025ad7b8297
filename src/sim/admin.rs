//! Admin routes of the standalone simulator (`/_sim/...`, documented in `sim/mod.rs`): the
//! `SimHandle` controls over HTTP, behind the same API key. Never logged, never faulted.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::{Fault, Route};
use super::handle::SimHandle;
use super::routes::Authorized;
use super::state::{ApiError, State as SimState};
use super::xray::ClientPlacement;
use super::{RealityField, RequestRecord};

pub fn router() -> Router<SimHandle> {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/keys", post(add_key))
        .route("/_sim/keys/{id}", post(change_key).delete(remove_key))
        .route("/_sim/strangers", post(stranger))
        .route("/_sim/drift", post(drift))
        .route("/_sim/reality", get(reality).post(change_reality))
        .route("/_sim/switches", post(switches))
        .route("/_sim/restart", post(restart))
        .route("/_sim/faults", post(arm_fault).delete(clear_faults))
        .route("/_sim/down", post(down))
        .route("/_sim/rate-limits", post(rate_limits))
        .route("/_sim/clock", post(clock))
        .route("/_sim/delay", post(delay))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/xray", post(xray))
        .route("/_sim/ca", get(ca))
}

type Answer = Result<Json<Value>, ApiError>;

fn unknown_key(id: &str) -> ApiError {
    ApiError::detail(404, &format!("sim: no key has id or uuid {id:?}"))
}

fn snapshot(s: &SimState) -> Value {
    json!({
        "generation": s.generation.version(),
        "keys": s.keys(),
        "config_uuids": s.config().client_uuids(),
        "strangers": s.strangers(),
        "switches": s.switches,
        "reality": s.reality(),
        "sync_count": s.sync_count,
        "reset_count": s.reset_count,
        "restart_delay_ms": s.restart_delay.as_millis() as u64,
        "xray_running": s.xray_running(),
        "dataplane": s.dataplane_controls(),
        "fix_count": s.fix_count,
    })
}

async fn state(_: Authorized, State(handle): State<SimHandle>) -> Json<Value> {
    Json(handle.with_state(|s| snapshot(s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
}

async fn add_key(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<NewKey>,
) -> Answer {
    handle.with_state(|s| {
        let created_at = s.now().iso;
        match s.insert_key(&body.name, created_at, false) {
            Some(key) => Ok(Json(json!(key))),
            None => Err(ApiError::detail(409, "sim: no free port left")),
        }
    })
}

async fn remove_key(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Answer {
    handle.with_state(|s| match s.delete_key(&id) {
        Ok(key) => Ok(Json(json!(key))),
        Err(_) => Err(unknown_key(&id)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyChange {
    active: Option<bool>,
    counter: Option<u64>,
    add_bytes: Option<u64>,
    connections: Option<u32>,
}

async fn change_key(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
    Json(change): Json<KeyChange>,
) -> Answer {
    handle.with_state(|s| {
        let apply = |s: &mut SimState| -> Result<(), super::controls::UnknownKey> {
            if let Some(active) = change.active {
                s.set_active(&id, active)?;
            }
            if let Some(bytes) = change.counter {
                s.set_counter(&id, bytes)?;
            }
            if let Some(bytes) = change.add_bytes {
                s.add_traffic(&id, bytes)?;
            }
            if let Some(n) = change.connections {
                s.set_connections(&id, n)?;
            }
            Ok(())
        };
        apply(s).map_err(|_| unknown_key(&id))?;
        let at = s.find(&id).ok_or_else(|| unknown_key(&id))?;
        Ok(Json(json!(s.keys()[at])))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrangerTraffic {
    uuid: String,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    connections: u32,
}

async fn stranger(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<StrangerTraffic>,
) -> Json<Value> {
    handle.with_state(|s| {
        s.add_stranger_traffic(&body.uuid, body.bytes, body.connections);
        Json(json!(s.strangers()))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Drift {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    add_inside: Vec<String>,
    #[serde(default)]
    corrupt_short_id: Vec<String>,
}

async fn drift(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<Drift>,
) -> Json<Value> {
    handle.with_state(|s| {
        for uuid in &body.remove {
            s.remove_config_client(uuid);
        }
        for uuid in &body.add {
            s.add_config_client(uuid, ClientPlacement::OwnInbound);
        }
        for uuid in &body.add_inside {
            s.add_config_client(uuid, ClientPlacement::InsideExisting);
        }
        for uuid in &body.corrupt_short_id {
            s.corrupt_short_id(uuid);
        }
        Json(json!({ "config_uuids": s.config().client_uuids() }))
    })
}

async fn reality(_: Authorized, State(handle): State<SimHandle>) -> Json<Value> {
    Json(handle.with_state(|s| json!(s.reality())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealityChange {
    #[serde(rename = "break")]
    break_field: Option<RealityField>,
    #[serde(default)]
    repair: bool,
    max_time_diff: Option<u64>,
}

async fn change_reality(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<RealityChange>,
) -> Json<Value> {
    handle.with_state(|s| {
        if body.repair {
            s.repair_reality();
        }
        if let Some(field) = body.break_field {
            s.break_reality(field);
        }
        if let Some(v) = body.max_time_diff {
            s.set_max_time_diff(v);
        }
        Json(json!(s.reality()))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchChange {
    resets_ignored: Option<bool>,
    sync_noop: Option<bool>,
    drift_returns: Option<bool>,
    verify_reality_broken: Option<bool>,
    precise_monitor_available: Option<bool>,
    restart_zeroes_counters: Option<bool>,
}

async fn switches(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<SwitchChange>,
) -> Json<Value> {
    handle.with_state(|s| {
        let sw = &mut s.switches;
        let pairs = [
            (body.resets_ignored, &mut sw.resets_ignored),
            (body.sync_noop, &mut sw.sync_noop),
            (body.drift_returns, &mut sw.drift_returns),
            (body.verify_reality_broken, &mut sw.verify_reality_broken),
            (
                body.precise_monitor_available,
                &mut sw.precise_monitor_available,
            ),
            (
                body.restart_zeroes_counters,
                &mut sw.restart_zeroes_counters,
            ),
        ];
        for (wanted, field) in pairs {
            if let Some(on) = wanted {
                *field = on;
            }
        }
        Json(json!(s.switches))
    })
}

async fn restart(_: Authorized, State(handle): State<SimHandle>) -> Json<Value> {
    handle.restart_api();
    Json(json!({ "restarted": true }))
}

/// A fault as JSON: `{"kind": "status", "status": 500, "detail": "..."}`, ...
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FaultSpec {
    Status { status: u16, detail: String },
    Html { status: u16 },
    TruncatedJson,
    Delay { ms: u64 },
    Oversized { bytes: usize },
    RateLimited { retry_after: Option<u64> },
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Fault {
        match spec {
            FaultSpec::Status { status, detail } => Fault::Status { status, detail },
            FaultSpec::Html { status } => Fault::Html { status },
            FaultSpec::TruncatedJson => Fault::TruncatedJson,
            FaultSpec::Delay { ms } => Fault::Delay(Duration::from_millis(ms)),
            FaultSpec::Oversized { bytes } => Fault::Oversized { bytes },
            FaultSpec::RateLimited { retry_after } => Fault::RateLimited { retry_after },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFault {
    route: Route,
    #[serde(default = "one")]
    count: usize,
    fault: FaultSpec,
}

fn one() -> usize {
    1
}

async fn arm_fault(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<ArmFault>,
) -> Json<Value> {
    handle.fail_next(body.route, body.count, body.fault.into());
    Json(json!({ "armed": body.count }))
}

async fn clear_faults(_: Authorized, State(handle): State<SimHandle>) -> Json<Value> {
    handle.clear_faults();
    Json(json!({ "cleared": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Down {
    seconds: f64,
}

async fn down(_: Authorized, State(handle): State<SimHandle>, Json(body): Json<Down>) -> Answer {
    let seconds = body.seconds;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(ApiError::detail(400, "sim: seconds must be in (0, 86400]"));
    }
    handle.set_down_for(Duration::from_secs_f64(seconds));
    Ok(Json(json!({ "down_for_secs": seconds })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    per_window: u32,
    window_secs: f64,
}

impl Limit {
    fn window(&self) -> Result<Duration, ApiError> {
        Duration::try_from_secs_f64(self.window_secs)
            .map_err(|_| ApiError::detail(400, "sim: bad window_secs"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    sync: Option<Limit>,
    keys: Option<Limit>,
}

async fn rate_limits(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<Limits>,
) -> Answer {
    if let Some(limit) = &body.sync {
        handle.set_sync_rate_limit(limit.per_window, limit.window()?);
    }
    if let Some(limit) = &body.keys {
        handle.set_keys_rate_limit(limit.per_window, limit.window()?);
    }
    Ok(Json(json!({ "configured": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Clock {
    advance_secs: f64,
}

async fn clock(_: Authorized, State(handle): State<SimHandle>, Json(body): Json<Clock>) -> Answer {
    let by = Duration::try_from_secs_f64(body.advance_secs)
        .map_err(|_| ApiError::detail(400, "sim: bad advance_secs"))?;
    handle.advance_clock(by);
    Ok(Json(json!({ "advanced_secs": body.advance_secs })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Delay {
    restart_ms: u64,
}

async fn delay(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(body): Json<Delay>,
) -> Json<Value> {
    handle.set_restart_delay(Duration::from_millis(body.restart_ms));
    Json(json!({ "restart_ms": body.restart_ms }))
}

async fn requests(_: Authorized, State(handle): State<SimHandle>) -> Json<Vec<RequestRecord>> {
    Json(handle.requests())
}

async fn clear_requests(_: Authorized, State(handle): State<SimHandle>) -> Json<Value> {
    handle.clear_requests();
    Json(json!({ "cleared": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XrayChange {
    /// true: Xray stops (every port closes); false: it starts again.
    stopped: Option<bool>,
    /// A key (id or uuid) whose inbound's port closes.
    close_port: Option<String>,
    /// A key whose inbound's port opens again.
    open_port: Option<String>,
    /// A key whose inbound presents a certificate for another name.
    wrong_certificate: Option<String>,
    /// A key whose inbound presents the right certificate again.
    right_certificate: Option<String>,
    /// `{"key": id or uuid, "dest": "host:port" or ""}`: the inbound's Reality dest.
    dest: Option<DestChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestChange {
    key: String,
    dest: String,
}

/// The data plane's controls; answers Xray's state and the listening inbounds.
async fn xray(
    _: Authorized,
    State(handle): State<SimHandle>,
    Json(change): Json<XrayChange>,
) -> Answer {
    let known = |key: &Option<String>| match key {
        Some(key) if handle.with_state(|s| s.find(key).is_none()) => Err(unknown_key(key)),
        _ => Ok(()),
    };
    for key in [
        &change.close_port,
        &change.open_port,
        &change.wrong_certificate,
        &change.right_certificate,
    ] {
        known(key)?;
    }
    if let Some(dest) = &change.dest {
        known(&Some(dest.key.clone()))?;
        handle.set_inbound_dest(&dest.key, &dest.dest);
    }
    match change.stopped {
        Some(true) => handle.stop_xray().await,
        Some(false) => handle.start_xray().await,
        None => {}
    }
    for (key, closed) in [(&change.close_port, true), (&change.open_port, false)] {
        if let Some(key) = key {
            handle.set_port_closed(key, closed).await;
        }
    }
    for (key, wrong) in [
        (&change.wrong_certificate, true),
        (&change.right_certificate, false),
    ] {
        if let Some(key) = key {
            handle.set_wrong_certificate(key, wrong).await;
        }
    }
    let listening: Vec<Value> = handle
        .listening()
        .into_iter()
        .map(|(tag, port)| json!({"tag": tag, "port": port}))
        .collect();
    Ok(Json(json!({
        "xray_running": handle.xray_running(),
        "listening": listening,
    })))
}

/// The test CA (PEM) the inbounds' certificates chain to.
async fn ca(_: Authorized, State(handle): State<SimHandle>) -> String {
    handle.ca_pem()
}
