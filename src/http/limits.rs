//! The accept loop behind /metrics and /healthz: hyper's HTTP/1 server with a header
//! read timeout, an idle timeout, a lifetime cap and a connection cap.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a client may cost the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers must arrive within this (slowloris).
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// No connection lives longer than this, busy or not.
    pub max_lifetime: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    /// A scrape takes milliseconds: these leave room for slow networks and keep a
    /// flood of idle connections far below the unit's `LimitNOFILE`.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(120),
            max_connections: 256,
        }
    }
}

/// After an accept error (EMFILE, ENFILE): wait before trying again instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(
                max = limits.max_connections,
                "metrics endpoint: connection limit reached; closing a new connection"
            );
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let _slot = slot;
            serve_connection(stream, service, limits).await;
        });
    }
    // The endpoint is only read by scrapers and probes: nothing to finish gracefully.
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection(stream: TcpStream, service: TowerToHyperService<Router>, limits: Limits) {
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = Tracked {
        inner: stream,
        started,
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "metrics endpoint: connection ended with an error");
            }
        }
        _ = idle(started, &activity, limits.idle_timeout) => {
            tracing::debug!("metrics endpoint: idle connection closed");
        }
        _ = tokio::time::sleep(limits.max_lifetime) => {
            tracing::debug!("metrics endpoint: connection closed at its lifetime cap");
        }
    }
}

/// Resolves once no byte moved for `timeout`.
async fn idle(started: Instant, activity: &AtomicU64, timeout: Duration) {
    loop {
        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = last + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A stream that notes when a byte last moved (milliseconds since `started`).
struct Tracked {
    inner: TcpStream,
    started: Instant,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let elapsed = self.started.elapsed().as_millis();
        self.activity.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
