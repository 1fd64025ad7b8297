//! Injected faults, the classification of requests into routes, the request log, and the
//! front middleware that applies them (and the 503 of a server going down) before the API.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiGeneration;
use super::handle::SimHandle;

/// A route of the API, to aim faults at. `Any` matches every API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Root,
    ListKeys,
    GetKey,
    CreateKey,
    DeleteKey,
    KeyConfig,
    /// 1.x `GET /api/traffic/exact`.
    BulkTraffic,
    /// 1.x `GET /api/keys/{id}/traffic/exact`, 2.x `GET /api/keys/{id}/traffic`.
    KeyTraffic,
    /// 1.x `GET /api/traffic/status`.
    TrafficStatus,
    ResetTraffic,
    SyncConfig,
    ConfigStatus,
    /// 2.x `GET /api/system/xray/validate-sync`.
    ValidateSync,
    VerifyReality,
    /// 2.x `GET /health`.
    Health,
    /// 2.x `GET /api/system/xray/inbounds`.
    XrayInbounds,
    /// 2.x `GET /api/system/ports`.
    Ports,
    /// 2.x `GET /api/system/xray/config-status`.
    XrayConfigStatus,
    /// 2.x `GET /api/system/ports/status`.
    PortsStatus,
    /// 2.x `POST /api/system/fix-reality-keys`.
    FixRealityKeys,
    Any,
}

impl Route {
    /// Which route a request is, for this generation; `None` for paths the API lacks.
    pub fn classify(generation: ApiGeneration, method: &Method, path: &str) -> Option<Route> {
        let v1 = generation == ApiGeneration::V1;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match (method.as_str(), segments.as_slice()) {
            ("GET", [""] | ["api"] | ["api", ""]) => Route::Root,
            ("GET", ["health"]) if !v1 => Route::Health,
            ("GET", ["api", "keys"]) => Route::ListKeys,
            ("POST", ["api", "keys"]) => Route::CreateKey,
            ("GET", ["api", "keys", _]) => Route::GetKey,
            ("DELETE", ["api", "keys", _]) => Route::DeleteKey,
            ("GET", ["api", "keys", _, "config"]) => Route::KeyConfig,
            ("GET", ["api", "keys", _, "traffic", "exact"]) if v1 => Route::KeyTraffic,
            ("GET", ["api", "keys", _, "traffic"]) if !v1 => Route::KeyTraffic,
            ("POST", ["api", "keys", _, "traffic", "reset"]) => Route::ResetTraffic,
            ("GET", ["api", "traffic", "exact"]) if v1 => Route::BulkTraffic,
            ("GET", ["api", "traffic", "status"]) if v1 => Route::TrafficStatus,
            ("POST", ["api", "system", "sync-config"]) => Route::SyncConfig,
            ("GET", ["api", "system", "config-status"]) => Route::ConfigStatus,
            ("POST", ["api", "system", "verify-reality"]) => Route::VerifyReality,
            ("GET", ["api", "system", "xray", "validate-sync"]) if !v1 => Route::ValidateSync,
            ("GET", ["api", "system", "xray", "inbounds"]) if !v1 => Route::XrayInbounds,
            ("GET", ["api", "system", "ports"]) if !v1 => Route::Ports,
            ("GET", ["api", "system", "xray", "config-status"]) if !v1 => Route::XrayConfigStatus,
            ("GET", ["api", "system", "ports", "status"]) if !v1 => Route::PortsStatus,
            ("POST", ["api", "system", "fix-reality-keys"]) if !v1 => Route::FixRealityKeys,
            _ => return None,
        };
        Some(route)
    }

    fn matches(self, actual: Route) -> bool {
        self == Route::Any || self == actual
    }
}

/// What an armed route answers instead of (or on top of) the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This status with a FastAPI body `{"detail": detail}`.
    Status { status: u16, detail: String },
    /// A reverse proxy's HTML error page (nginx), e.g. 502.
    Html { status: u16 },
    /// The real answer, cut in half (status and headers kept).
    TruncatedJson,
    /// Do the API's work at once but hold the answer back this long: a client that gives up
    /// first does not know that, say, its sync happened.
    Delay(Duration),
    /// A 200 JSON body of this many bytes.
    Oversized { bytes: usize },
    /// 429 `{"error": "Rate limit exceeded: 3 per 1 minute"}`, with Retry-After if given.
    RateLimited { retry_after: Option<u64> },
}

/// One request the simulator answered. The API key's value is never kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The status answered; 499 when the client went away before the answer.
    pub status: u16,
    /// Whether an `X-API-Key` header was sent (right or wrong).
    pub had_api_key: bool,
}

/// Faults armed for the next calls of routes, used first-armed first.
#[derive(Debug, Default, Clone)]
pub struct FaultQueue {
    armed: Vec<(Route, usize, Fault)>,
}

impl FaultQueue {
    pub fn arm(&mut self, route: Route, count: usize, fault: Fault) {
        if count > 0 {
            self.armed.push((route, count, fault));
        }
    }

    pub fn clear(&mut self) {
        self.armed.clear();
    }

    /// The fault for one call of `route`, if any is armed (and count it down).
    pub fn take(&mut self, route: Route) -> Option<Fault> {
        let at = self.armed.iter().position(|(r, _, _)| r.matches(route))?;
        let (_, remaining, fault) = &mut self.armed[at];
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.armed.remove(at);
        }
        Some(fault)
    }
}

/// nginx's error page for `status`.
pub fn html_page(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Largest body the truncation fault reads back (anything the API answers is far smaller).
const MAX_BODY_TO_TRUNCATE: usize = 64 * 1024 * 1024;

async fn apply(fault: Fault, request: Request, next: Next) -> Response {
    match fault {
        Fault::Status { status, detail } => (
            status_code(status),
            axum::Json(serde_json::json!({ "detail": detail })),
        )
            .into_response(),
        Fault::Html { status } => html_page(status_code(status)),
        Fault::TruncatedJson => {
            let (parts, body) = next.run(request).await.into_parts();
            let bytes = to_bytes(body, MAX_BODY_TO_TRUNCATE)
                .await
                .unwrap_or_default();
            let cut = if bytes.len() >= 2 {
                bytes.slice(..bytes.len() / 2)
            } else {
                axum::body::Bytes::from_static(b"{\"")
            };
            let mut parts = parts;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(cut))
        }
        Fault::Delay(delay) => {
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Fault::Oversized { bytes } => {
            let padding = bytes.saturating_sub(r#"{"padding":""}"#.len());
            let body = format!(r#"{{"padding":"{}"}}"#, "x".repeat(padding));
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Fault::RateLimited { retry_after } => {
            let body = serde_json::json!({ "error": "Rate limit exceeded: 3 per 1 minute" });
            let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
    }
}

/// Logs the request when the answer is sent, or with 499 if the client left before it.
struct RecordGuard {
    handle: SimHandle,
    record: Option<RequestRecord>,
}

impl RecordGuard {
    fn finish(mut self, status: StatusCode) {
        self.push(status.as_u16());
    }

    fn push(&mut self, status: u16) {
        if let Some(mut record) = self.record.take() {
            record.status = status;
            tracing::info!(
                method = %record.method,
                path = %record.path,
                status,
                had_api_key = record.had_api_key,
                "sim: request"
            );
            self.handle.push_request(record);
        }
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        // Only reached without `finish`: the client went away first.
        self.push(499);
    }
}

/// The outermost layer of the API: log, answer 503 while going down, apply armed faults.
/// Admin routes (`/_sim/...`) pass straight through.
pub async fn front(State(handle): State<SimHandle>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return next.run(request).await;
    }
    let route = Route::classify(handle.generation(), request.method(), &path);
    let guard = RecordGuard {
        handle: handle.clone(),
        record: Some(RequestRecord {
            method: request.method().to_string(),
            path,
            status: 0,
            had_api_key: request.headers().contains_key("x-api-key"),
        }),
    };
    let (down, fault, latency) = handle.with_state(|s| {
        let fault = if s.down {
            None
        } else {
            route.and_then(|r| s.faults.take(r))
        };
        (s.down, fault, s.latency)
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = if down {
        html_page(StatusCode::SERVICE_UNAVAILABLE)
    } else {
        match fault {
            Some(fault) => apply(fault, request, next).await,
            None => next.run(request).await,
        }
    };
    guard.finish(response.status());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths_per_generation() {
        use ApiGeneration::{V1, V2};
        let get = Method::GET;
        assert_eq!(Route::classify(V1, &get, "/api/"), Some(Route::Root));
        assert_eq!(Route::classify(V1, &get, "/"), Some(Route::Root));
        assert_eq!(Route::classify(V1, &get, "/health"), None);
        assert_eq!(Route::classify(V2, &get, "/health"), Some(Route::Health));
        assert_eq!(
            Route::classify(V1, &get, "/api/keys/k/traffic/exact"),
            Some(Route::KeyTraffic)
        );
        assert_eq!(Route::classify(V2, &get, "/api/keys/k/traffic/exact"), None);
        assert_eq!(
            Route::classify(V2, &get, "/api/keys/k/traffic"),
            Some(Route::KeyTraffic)
        );
        assert_eq!(
            Route::classify(V2, &Method::POST, "/api/keys/k/traffic/reset"),
            Some(Route::ResetTraffic)
        );
        assert_eq!(
            Route::classify(V1, &Method::DELETE, "/api/keys/k"),
            Some(Route::DeleteKey)
        );
        assert_eq!(Route::classify(V2, &get, "/api/traffic/exact"), None);
    }

    #[test]
    fn faults_are_used_in_order_and_counted_down() {
        let mut queue = FaultQueue::default();
        queue.arm(Route::SyncConfig, 2, Fault::TruncatedJson);
        queue.arm(Route::Any, 1, Fault::Html { status: 502 });
        assert_eq!(
            queue.take(Route::ListKeys),
            Some(Fault::Html { status: 502 })
        );
        assert_eq!(queue.take(Route::ListKeys), None);
        assert_eq!(queue.take(Route::SyncConfig), Some(Fault::TruncatedJson));
        assert_eq!(queue.take(Route::SyncConfig), Some(Fault::TruncatedJson));
        assert_eq!(queue.take(Route::SyncConfig), None);
        queue.arm(Route::Root, 0, Fault::TruncatedJson);
        assert_eq!(queue.take(Route::Root), None);
    }
}
