//! A loopback HTTP server that answers each (method, path) with a canned answer: the
//! recorded real answers for golden tests, or broken ones (HTML, truncated, slow,
//! oversized) for error-mapping tests. It records the requests it saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Canned {
        Canned {
            status,
            body: body.into(),
            content_type: "application/json",
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn html(status: u16, body: &str) -> Canned {
        Canned {
            content_type: "text/html",
            ..Canned::json(status, body.as_bytes().to_vec())
        }
    }
    pub fn with_header(mut self, name: &'static str, value: &str) -> Canned {
        self.headers.push((name, value.to_string()));
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }
}

/// A request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub api_key: Option<String>,
}

#[derive(Default)]
struct Shared {
    answers: HashMap<(String, String), Vec<Canned>>,
    seen: Vec<Seen>,
}

/// The running replay server.
#[derive(Clone)]
pub struct Replay {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl Replay {
    pub async fn start() -> Replay {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind replay server");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Replay { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Answer `method path` with `canned` from now on (replacing earlier answers).
    pub fn set(&self, method: &str, path: &str, canned: Canned) {
        self.shared
            .lock()
            .unwrap()
            .answers
            .insert((method.to_string(), path.to_string()), vec![canned]);
    }

    /// Answer `method path` with these, one per request, the last one repeating.
    pub fn set_sequence(&self, method: &str, path: &str, canned: Vec<Canned>) {
        self.shared
            .lock()
            .unwrap()
            .answers
            .insert((method.to_string(), path.to_string()), canned);
    }

    pub fn clear(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.answers.clear();
        shared.seen.clear();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }
}

async fn answer(State(shared): State<Arc<Mutex<Shared>>>, request: Request) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let api_key = request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let canned = {
        let mut shared = shared.lock().unwrap();
        shared.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            api_key,
        });
        match shared.answers.get_mut(&(method, path)) {
            Some(queue) if queue.len() > 1 => Some(queue.remove(0)),
            Some(queue) => queue.first().cloned(),
            None => None,
        }
    };
    let canned =
        canned.unwrap_or_else(|| Canned::json(404, br#"{"detail": "Not Found"}"#.to_vec()));
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static(canned.content_type),
    );
    for (name, value) in &canned.headers {
        headers.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    let mut response = Response::new(Body::from(canned.body));
    *response.status_mut() = StatusCode::from_u16(canned.status).unwrap();
    *response.headers_mut() = headers;
    response
}
