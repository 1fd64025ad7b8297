//! The agent's own HTTP endpoint on `[agent].listen`: `GET /metrics` (OpenMetrics text)
//! and `GET /healthz` (200 when the scheduler is alive and the store writable, 503 with
//! the reason otherwise). It serves an already-bound listener, so tests bind port 0.
//!
//! Clients cannot hold it hostage (3000 slowloris connections once kept it from ever
//! answering /healthz and ate the daemon's file descriptors): request headers must
//! arrive within `header_read_timeout`, a connection with no bytes moving for
//! `idle_timeout` is closed, no connection lives longer than `max_lifetime`, and at
//! most `max_connections` are open at once (beyond that a new one is closed at once,
//! so the process keeps its descriptors for the store and the servers).

mod limits;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;

pub use limits::Limits;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<Store>,
    /// Set by the daemon from the scheduler's own liveness check.
    pub scheduler_alive: Arc<AtomicBool>,
}

/// The router (exposed for tests).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serve until `stop` fires, with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, stop, Limits::default()).await
}

/// Serve until `stop` fires, within `limits` (tests shorten them).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: HttpState,
    stop: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    limits::serve(listener, router(state), stop, limits).await
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if !state.scheduler_alive.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler is not running\n",
        )
            .into_response();
    }
    match state.store.check_writable().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(error) if error.is_lost() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state store lost: {error}\n"),
        )
            .into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state store is not writable: {error}\n"),
        )
            .into_response(),
    }
}
