//! The API's axum routes, per generation. Thin: check the key, lock the state, call its
//! behaviour, shape the answer; sleep (a simulated Xray restart) only after unlocking.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};

use super::handle::SimHandle;
use super::state::{ApiError, SimKey};
use super::wire::*;
use super::{ApiGeneration, admin, faults, routes_v1, routes_v2};

/// The 401 detail of both generations.
const INVALID_KEY: &str = "Invalid API key. Use X-API-Key header with the correct key.";
pub const SNI: &str = "www.microsoft.com";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Detail { status, detail } => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(json!({ "detail": detail })),
            )
                .into_response(),
            ApiError::RateLimited(message) => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "error": message })),
            )
                .into_response(),
            ApiError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": errors })),
            )
                .into_response(),
        }
    }
}

/// Proof that the request carried the right `X-API-Key` (401 otherwise). Checked before
/// the rate limits and the body, like the real servers.
pub struct Authorized;

impl FromRequestParts<SimHandle> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, handle: &SimHandle) -> Result<Self, ApiError> {
        let presented = parts.headers.get("x-api-key").map(|v| v.as_bytes());
        if handle.with_state(|s| s.authorized(presented)) {
            Ok(Authorized)
        } else {
            Err(ApiError::detail(401, INVALID_KEY))
        }
    }
}

pub type Answer<T> = Result<Json<T>, ApiError>;

/// The whole simulated server: the API of its generation, the admin routes, the front layer.
pub fn router(handle: SimHandle) -> Router {
    let common = Router::new()
        .route("/", get(root))
        .route("/api", get(root))
        .route("/api/", get(root))
        .route("/api/keys", get(list_keys).post(create_key))
        .route("/api/keys/{id}", get(get_key).delete(delete_key))
        .route("/api/keys/{id}/config", get(key_config))
        .route("/api/keys/{id}/traffic/reset", post(reset_traffic))
        .route("/api/system/sync-config", post(sync_config))
        .route("/api/system/config-status", get(config_status))
        .route("/api/system/verify-reality", post(verify_reality));
    let api = match handle.generation() {
        ApiGeneration::V1 => common
            .route("/api/traffic/exact", get(routes_v1::bulk_traffic))
            .route("/api/traffic/status", get(routes_v1::traffic_status))
            .route("/api/keys/{id}/traffic/exact", get(routes_v1::key_traffic)),
        ApiGeneration::V2 => common
            .route("/health", get(routes_v2::health))
            .route("/api/keys/{id}/traffic", get(routes_v2::key_traffic))
            .route(
                "/api/system/xray/validate-sync",
                get(routes_v2::validate_sync),
            )
            .route("/api/system/xray/inbounds", get(routes_v2::xray_inbounds))
            .route(
                "/api/system/xray/config-status",
                get(routes_v2::xray_config_status),
            )
            .route("/api/system/ports", get(routes_v2::ports))
            .route("/api/system/ports/status", get(routes_v2::ports_status))
            .route(
                "/api/system/fix-reality-keys",
                post(routes_v2::fix_reality_keys),
            ),
    };
    api.merge(admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            handle.clone(),
            faults::front,
        ))
        .with_state(handle)
}

async fn not_found() -> ApiError {
    ApiError::detail(404, "Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::detail(405, "Method Not Allowed")
}

pub fn view(key: &SimKey) -> KeyView {
    KeyView {
        id: key.id.clone(),
        name: key.name.clone(),
        uuid: key.uuid.clone(),
        created_at: key.created_at.clone(),
        is_active: key.is_active,
        port: key.port,
        short_id: key.short_id.clone(),
    }
}

async fn root(State(handle): State<SimHandle>) -> Json<RootInfo> {
    Json(RootInfo {
        message: "VPN Key Management API",
        version: handle.generation().version(),
        status: "running",
    })
}

async fn list_keys(_: Authorized, State(handle): State<SimHandle>) -> Answer<Vec<KeyView>> {
    handle.with_state(|s| {
        let now = s.now();
        s.hit_keys_limit(&now)?;
        Ok(Json(s.keys().iter().map(view).collect()))
    })
}

/// FastAPI's 422 for a body that does not hold a string `name`.
fn name_from_body(body: &[u8]) -> Result<String, ApiError> {
    let error = |kind: &str, loc: Value, msg: &str, input: Value| {
        ApiError::Validation(json!([{ "type": kind, "loc": loc, "msg": msg, "input": input }]))
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error(
            "missing",
            json!(["body"]),
            "Field required",
            Value::Null,
        ));
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|_| {
        error(
            "json_invalid",
            json!(["body", 0]),
            "JSON decode error",
            json!({}),
        )
    })?;
    let Some(object) = parsed.as_object() else {
        return Err(error(
            "model_attributes_type",
            json!(["body"]),
            "Input should be a valid dictionary or object to extract fields from",
            parsed,
        ));
    };
    match object.get("name") {
        Some(Value::String(name)) => Ok(name.clone()),
        Some(other) => Err(error(
            "string_type",
            json!(["body", "name"]),
            "Input should be a valid string",
            other.clone(),
        )),
        None => Err(error(
            "missing",
            json!(["body", "name"]),
            "Field required",
            parsed.clone(),
        )),
    }
}

async fn create_key(
    _: Authorized,
    State(handle): State<SimHandle>,
    body: Bytes,
) -> Answer<KeyView> {
    let name = name_from_body(&body)?;
    let created = handle.with_state(|s| {
        let created_at = s.now().iso;
        match s.insert_key(&name, created_at, false) {
            Some(key) => Ok(Json(view(&key))),
            None => Err(ApiError::detail(500, "Failed to create key: no free port")),
        }
    })?;
    handle.apply_dataplane().await;
    Ok(created)
}

async fn get_key(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Answer<KeyView> {
    handle.with_state(|s| {
        let at = s.find(&id).ok_or_else(ApiError::key_not_found)?;
        Ok(Json(view(&s.keys()[at])))
    })
}

async fn delete_key(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Answer<Message> {
    let delay = handle.with_state(|s| s.delete_key(&id).map(|_| s.restart_delay))?;
    tokio::time::sleep(delay).await;
    handle.apply_dataplane().await;
    Ok(Json(Message {
        message: "Key deleted successfully",
    }))
}

async fn key_config(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Answer<KeyConfig> {
    let tag = handle.with_state(|s| {
        let at = s.find(&id).ok_or_else(ApiError::key_not_found)?;
        Ok::<_, ApiError>(s.link_tag(&s.keys()[at].uuid))
    })?;
    let port = handle.inner.listeners.port_for(&tag);
    handle.with_state(|s| {
        let at = s.find(&id).ok_or_else(ApiError::key_not_found)?;
        let key = &s.keys()[at];
        let pbk = s.public_key();
        let host = s.link_host();
        Ok(Json(match s.generation {
            ApiGeneration::V1 => {
                let sid = s.config().inbounds().first().and_then(|i| i.short_ids.first()).cloned().unwrap_or_default();
                let url = format!(
                    "vless://{}@{host}:{port}?encryption=none&security=reality&sni={SNI}&fp=chrome&pbk={pbk}&sid={sid}&spx=/&type=tcp&flow=#{}",
                    key.uuid, key.name
                );
                KeyConfig {
                    key: view(key),
                    client_config: format!(
                        "=== Конфигурация клиента ===\nИмя: {}\nUUID: {}\nVLESS URL: {url}\n\n=== QR код данные ===\n{url}\n",
                        key.name, key.uuid
                    ),
                    vless_url: None,
                    short_id: None,
                }
            }
            ApiGeneration::V2 => {
                let sid = key.short_id.clone().unwrap_or_default();
                let url = format!(
                    "vless://{}@{host}:{port}?type=tcp&security=reality&encryption=none&fp=chrome&pbk={pbk}&sid={sid}&sni={SNI}#{}",
                    key.uuid,
                    key.name
                );
                KeyConfig {
                    key: view(key),
                    client_config: url.clone(),
                    vless_url: Some(url),
                    short_id: Some(sid),
                }
            }
        }))
    })
}

async fn reset_traffic(
    _: Authorized,
    State(handle): State<SimHandle>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    handle.with_state(|s| match s.generation {
        ApiGeneration::V1 => {
            let key = s.reset_v1(&id)?;
            Ok(Json(ResetV1 {
                message: "Traffic stats reset successfully",
                key_id: id,
                uuid: key.uuid,
                source: "precise_monitor",
            })
            .into_response())
        }
        ApiGeneration::V2 => {
            let key = s.reset_v2(&id)?;
            Ok(Json(ResetV2 {
                status: "success",
                message: "Traffic reset successfully",
                key_id: id,
                key_uuid: key.uuid,
                timestamp: s.now().iso,
            })
            .into_response())
        }
    })
}

async fn sync_config(_: Authorized, State(handle): State<SimHandle>) -> Answer<SyncAnswer> {
    let (outcome, now, delay) = handle.with_state(|s| {
        let now = s.now();
        (s.sync(&now), now, s.restart_delay)
    });
    if !matches!(outcome, Err(ApiError::RateLimited(_))) {
        // The sync ran: Xray restarts before the answer.
        tokio::time::sleep(delay).await;
        handle.apply_dataplane().await;
    }
    let validation = outcome?;
    Ok(Json(SyncAnswer {
        message: "Configuration synchronized successfully",
        status: "synced",
        validation,
        timestamp: now.unix,
    }))
}

async fn config_status(_: Authorized, State(handle): State<SimHandle>) -> Json<ConfigStatus> {
    handle.with_state(|s| {
        let now = s.now();
        Json(s.config_status(&now))
    })
}

async fn verify_reality(_: Authorized, State(handle): State<SimHandle>) -> Answer<VerifyAnswer> {
    handle.with_state(|s| {
        s.verify_reality()?;
        Ok(Json(VerifyAnswer {
            message: "Reality settings verified and updated successfully",
            status: "verified",
            timestamp: s.now().unix,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_without_name_answers_fastapi_422() {
        let Err(ApiError::Validation(detail)) = name_from_body(b"{}") else {
            panic!("expected 422");
        };
        assert_eq!(
            detail,
            json!([{"type": "missing", "loc": ["body", "name"], "msg": "Field required", "input": {}}])
        );
        assert!(name_from_body(b"").is_err());
        assert!(name_from_body(b"{oops").is_err());
        assert!(name_from_body(b"[1]").is_err());
        assert!(name_from_body(br#"{"name": 3}"#).is_err());
        assert_eq!(
            name_from_body(br#"{"name": "Carol tablet"}"#),
            Ok("Carol tablet".into())
        );
    }
}
