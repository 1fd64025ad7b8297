//! The demo's webhook receiver on a loopback port: it prints what keywarden sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

use super::timeline::Timeline;

#[derive(Clone)]
struct Shared {
    timeline: Timeline,
    received: Arc<Mutex<Vec<Value>>>,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub async fn start(timeline: Timeline) -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            timeline,
            received: received.clone(),
        };
        let app = Router::new().route("/hook", post(hook)).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, received })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every body received so far.
    pub fn received(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn hook(State(shared): State<Shared>, body: String) -> StatusCode {
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let alerts = value["alerts"].as_array().cloned().unwrap_or_default();
    for alert in &alerts {
        let status = alert["status"].as_str().unwrap_or("?");
        let severity = alert["severity"].as_str().unwrap_or("");
        let summary = alert["summary"].as_str().unwrap_or("");
        let text = format!("received: {status} {severity}: {summary}");
        shared.timeline.say("webhook", &text);
    }
    if alerts.is_empty() {
        shared
            .timeline
            .say("webhook", &format!("received: {value}"));
    }
    shared
        .received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(value);
    StatusCode::OK
}
