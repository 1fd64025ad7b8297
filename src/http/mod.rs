//! The agent's own HTTP endpoint on `[agent].listen`: `GET /metrics` (OpenMetrics text)
//! and `GET /healthz` (200 when the scheduler is alive and the store writable, 503 with
//! the reason otherwise). It serves an already-bound listener, so tests bind port 0.
//!
//! With a shared fleet (PostgreSQL store), an agent that lost its PostgreSQL connection
//! holds no lock and acts on nothing: /healthz answers 503 "not leading any server"
//! until it has reconnected. A connected agent that simply leads nothing right now (a
//! standby: the other agents hold every server) is healthy: 200 "ok: standby". It is
//! ready to take over, which is its job; a 503 would have a load balancer or systemd
//! watchdog restart a perfectly good standby.
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

use crate::lead::{Leadership, Mode};
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

/// The router (exposed for tests) of the only agent.
pub fn router(state: HttpState) -> Router {
    router_led(state, Leadership::solo())
}

/// The router of an agent whose health includes its `leadership`.
pub fn router_led(state: HttpState, leadership: Leadership) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(Served { state, leadership })
}

/// What the handlers read: the state and the leadership.
#[derive(Clone)]
struct Served {
    state: HttpState,
    leadership: Leadership,
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

/// Serve until `stop` fires, with the default limits, answering /healthz with
/// `leadership` in mind.
pub async fn serve_led(
    listener: tokio::net::TcpListener,
    state: HttpState,
    leadership: Leadership,
    stop: CancellationToken,
) -> std::io::Result<()> {
    limits::serve(
        listener,
        router_led(state, leadership),
        stop,
        Limits::default(),
    )
    .await
}

async fn metrics(State(Served { state, .. }): State<Served>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(Served { state, leadership }): State<Served>) -> Response {
    let snapshot = leadership.snapshot();
    if snapshot.mode == Mode::Shared && !snapshot.connected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not leading any server: the PostgreSQL connection is lost (reconnecting)\n",
        )
            .into_response();
    }
    if !state.scheduler_alive.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler is not running\n",
        )
            .into_response();
    }
    match state.store.check_writable().await {
        Ok(()) if snapshot.mode == Mode::Shared && snapshot.servers.is_empty() => (
            StatusCode::OK,
            "ok: standby (connected, leading no server)\n",
        )
            .into_response(),
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
