//! A hostile VPN Key Management API on 127.0.0.1:0 (axum), for what the well-behaved
//! simulator cannot do: keys that share an id or a uuid, error answers that echo the
//! request's API key back (plain, base64 and URL-encoded, in a JSON `detail` or an HTML
//! page), names full of control characters, key lists of any size, and any status for
//! verify-reality. It speaks enough of both generations for every job: `version` "1.x"
//! serves the bulk traffic route, "2.x" the per-key one. It records every request
//! (method, path) and never keeps the API key.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use serde_json::{Value, json};

/// One key of the hostile server.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub uuid: String,
    pub name: String,
    pub counter: u64,
}

impl Key {
    pub fn new(id: &str, uuid: &str, name: &str, counter: u64) -> Key {
        Key {
            id: id.into(),
            uuid: uuid.into(),
            name: name.into(),
            counter,
        }
    }
}

/// How the error answers quote the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Answer normally.
    Off,
    /// Every authenticated route: 500 `{"detail": "... <key> <base64> <url-encoded> ..."}`.
    Json,
    /// Every authenticated route: 502 HTML page quoting the request headers.
    Html,
}

#[derive(Debug)]
pub struct Behaviour {
    pub version: String,
    pub keys: Vec<Key>,
    pub echo: Echo,
    /// What POST verify-reality answers (status, body).
    pub reality: (u16, String),
    /// Key lists are served from this text when set (a huge list).
    pub raw_key_list: Option<Arc<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<Seen>>,
}

pub struct Hostile {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every form the key is echoed in (what a test must not find anywhere).
pub fn echoed_forms(key: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        key.to_string(),
        b64.encode(key),
        b64.encode(format!("api:{key}")),
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string(),
    ]
}

fn echo_text(headers: &HeaderMap) -> String {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let forms = echoed_forms(key);
    format!(
        "request rejected: key={} auth=Basic {} b64={} url=/api/keys?api_key={}",
        forms[0], forms[2], forms[1], forms[3]
    )
}

impl Hostile {
    pub async fn start(version: &str, keys: Vec<Key>) -> Hostile {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour {
                version: version.into(),
                keys,
                echo: Echo::Off,
                reality: (
                    200,
                    json!({"message": "Reality settings verified and updated successfully", "status": "verified"}).to_string(),
                ),
                raw_key_list: None,
            }),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/", get(root))
            .route("/api/keys", get(list))
            .route("/api/keys/{id}", get(one).delete(delete))
            .route("/api/keys/{id}/traffic", get(traffic))
            .route("/api/keys/{id}/traffic/exact", get(traffic))
            .route("/api/keys/{id}/traffic/reset", post(reset))
            .route("/api/traffic/exact", get(bulk))
            .route("/api/traffic/status", get(status))
            .route("/api/system/config-status", get(config_status))
            .route("/api/system/xray/validate-sync", get(validate_sync))
            .route("/api/system/sync-config", post(sync))
            .route("/api/system/verify-reality", post(reality))
            .fallback(any(not_found))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), front))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hostile { addr, shared, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    pub fn set<T>(&self, change: impl FnOnce(&mut Behaviour) -> T) -> T {
        change(&mut self.shared.behaviour.lock().unwrap())
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests other than GETs (resets, deletes, syncs, verify-reality).
    pub fn actions(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }
}

/// Records the request; with an echo mode on, answers every authenticated route with
/// the key quoted back.
async fn front(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    shared.requests.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
    });
    let echo = shared.behaviour.lock().unwrap().echo;
    let root = uri.path() == "/api/" || uri.path() == "/api";
    match echo {
        Echo::Json if !root => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "detail": echo_text(&headers) })),
        )
            .into_response(),
        Echo::Html if !root => (
            StatusCode::BAD_GATEWAY,
            [("content-type", "text/html")],
            format!(
                "<html><body><h1>502 Bad Gateway</h1><pre>{}</pre></body></html>",
                echo_text(&headers)
            ),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

fn key_json(key: &Key) -> Value {
    json!({
        "id": key.id, "uuid": key.uuid, "name": key.name,
        "created_at": "2026-01-01T00:00:00", "is_active": true,
    })
}

fn v1(shared: &Shared) -> bool {
    shared.behaviour.lock().unwrap().version.starts_with('1')
}

async fn root(State(shared): State<Arc<Shared>>) -> Response {
    let version = shared.behaviour.lock().unwrap().version.clone();
    axum::Json(
        json!({"message": "VPN Key Management API", "version": version, "status": "running"}),
    )
    .into_response()
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let behaviour = shared.behaviour.lock().unwrap();
    if let Some(raw) = &behaviour.raw_key_list {
        return (
            [("content-type", "application/json")],
            raw.as_str().to_owned(),
        )
            .into_response();
    }
    axum::Json(Value::Array(behaviour.keys.iter().map(key_json).collect())).into_response()
}

/// The first key the server's own lookup finds for `id` (by id, then by uuid), as a
/// real key store with duplicates would.
fn find(shared: &Shared, id: &str) -> Option<Key> {
    let behaviour = shared.behaviour.lock().unwrap();
    behaviour
        .keys
        .iter()
        .find(|k| k.id == id || k.uuid == id)
        .cloned()
}

fn missing() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Key not found"})),
    )
        .into_response()
}

async fn one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match find(&shared, &id) {
        Some(key) => axum::Json(key_json(&key)).into_response(),
        None => missing(),
    }
}

async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut behaviour = shared.behaviour.lock().unwrap();
    match behaviour
        .keys
        .iter()
        .position(|k| k.id == id || k.uuid == id)
    {
        Some(index) => {
            behaviour.keys.remove(index);
            axum::Json(json!({"message": "Key deleted successfully"})).into_response()
        }
        None => missing(),
    }
}

async fn traffic(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(key) = find(&shared, &id) else {
        return missing();
    };
    if v1(&shared) {
        return axum::Json(json!({
            "key": key_json(&key),
            "traffic_bytes": {"total_bytes": key.counter, "connections": 1},
            "source": "precise_monitor",
        }))
        .into_response();
    }
    axum::Json(json!({
        "status": "success", "key_id": key.id, "key_uuid": key.uuid,
        "total_bytes": key.counter, "timestamp": "2026-11-20T12:00:00",
    }))
    .into_response()
}

async fn reset(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut behaviour = shared.behaviour.lock().unwrap();
    let Some(key) = behaviour
        .keys
        .iter_mut()
        .find(|k| k.id == id || k.uuid == id)
    else {
        return missing();
    };
    key.counter = 0;
    axum::Json(json!({
        "status": "success", "message": "Traffic reset successfully",
        "key_id": key.id, "key_uuid": key.uuid,
    }))
    .into_response()
}

async fn bulk(State(shared): State<Arc<Shared>>) -> Response {
    if !v1(&shared) {
        return not_found().await;
    }
    let behaviour = shared.behaviour.lock().unwrap();
    let stats: Vec<Value> = behaviour
        .keys
        .iter()
        .map(|k| json!({"uuid": k.uuid, "connections": 1, "total_bytes": k.counter}))
        .collect();
    axum::Json(json!({
        "total_keys": behaviour.keys.len(), "active_keys": behaviour.keys.len(), "source": "xray_api",
        "traffic_stats": {"traffic_stats": {"keys_stats": stats}},
    }))
    .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    if !v1(&shared) {
        return not_found().await;
    }
    let behaviour = shared.behaviour.lock().unwrap();
    axum::Json(json!({
        "total_keys": behaviour.keys.len(), "active_keys": behaviour.keys.len(),
        "precise_monitor_available": true, "traffic_stats": [],
    }))
    .into_response()
}

async fn config_status(State(shared): State<Arc<Shared>>) -> Response {
    let behaviour = shared.behaviour.lock().unwrap();
    let uuids: Vec<&str> = behaviour.keys.iter().map(|k| k.uuid.as_str()).collect();
    axum::Json(json!({
        "synchronized": true, "keys_json_count": uuids.len(), "config_json_count": uuids.len(),
        "keys_json_uuids": uuids, "config_json_uuids": uuids,
    }))
    .into_response()
}

async fn validate_sync(State(shared): State<Arc<Shared>>) -> Response {
    if v1(&shared) {
        return not_found().await;
    }
    let count = shared.behaviour.lock().unwrap().keys.len();
    axum::Json(json!({"validation": {
        "synced": true, "keys_count": count, "config_count": count,
        "missing_in_config": [], "extra_in_config": [], "short_id_mismatches": [],
    }}))
    .into_response()
}

async fn sync() -> Response {
    axum::Json(json!({"message": "Configuration synchronized successfully", "status": "synced"}))
        .into_response()
}

async fn reality(State(shared): State<Arc<Shared>>) -> Response {
    let (status, body) = shared.behaviour.lock().unwrap().reality.clone();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [("content-type", "application/json")], body).into_response();
    if status.is_redirection() {
        response
            .headers_mut()
            .insert("location", "http://127.0.0.1:9/elsewhere".parse().unwrap());
    }
    response
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Not Found"})),
    )
        .into_response()
}
