//! `SimServer`: owns the task that serves the simulated API on a listener, closes the
//! listener while the server is "down" (connections refused) and binds the same address
//! again when it comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::handle::{Link, Served, SimHandle};
use super::state::State;
use super::{SimOptions, base_url, routes};

/// How long in-flight requests may finish when the listener closes (down or shutdown).
const GRACE: Duration = Duration::from_millis(500);
/// Pause between attempts to bind the address again after a down period.
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// A running simulated server. Dropping it stops serving; [`SimServer::shutdown`] also
/// waits (briefly) for in-flight requests.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    handle: SimHandle,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Serve the simulated API on an already-bound listener (tests bind port 0).
    pub async fn start(listener: TcpListener, options: SimOptions) -> std::io::Result<SimServer> {
        let addr = listener.local_addr()?;
        let handle = SimHandle::new(State::new(&options));
        let (stop, stopped) = watch::channel(false);
        handle
            .inner
            .served
            .send_replace(Served { open: true, seq: 0 });
        // Xray serves its inbounds from the start.
        handle.apply_dataplane().await;
        let task = tokio::spawn(supervise(listener, addr, handle.clone(), stopped));
        tracing::debug!(%addr, generation = ?options.generation, "sim: serving");
        Ok(SimServer {
            addr,
            handle,
            stop,
            task: Some(task),
        })
    }

    /// Bind 127.0.0.1 on a free port and serve there.
    pub async fn start_local(options: SimOptions) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        SimServer::start(listener, options).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:PORT/api`.
    pub fn base_url(&self) -> String {
        base_url(self.addr)
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// The test CA (PEM) of the inbounds' certificates (for `reality_ca_file`).
    pub fn ca_pem(&self) -> String {
        self.handle.ca_pem()
    }

    /// Stop accepting, let in-flight requests finish (at most ~0.5 s), and return.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        self.handle.inner.listeners.stop_all();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(GRACE * 2, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.handle.inner.listeners.stop_all();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A listener that reports its closing: dropping it marks the server as not listening,
/// as of the request that closed it.
struct ReportingListener {
    inner: TcpListener,
    served: watch::Sender<Served>,
    closed_by: Arc<AtomicU64>,
}

impl Listener for ReportingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        Listener::accept(&mut self.inner).await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Drop for ReportingListener {
    fn drop(&mut self) {
        let seq = self.closed_by.load(Ordering::SeqCst);
        self.served.send_replace(Served { open: false, seq });
    }
}

/// Serve while up; while down, keep the port closed; stop when told to.
async fn supervise(
    first: TcpListener,
    addr: SocketAddr,
    handle: SimHandle,
    mut stopped: watch::Receiver<bool>,
) {
    let app = routes::router(handle.clone());
    let served = handle.inner.served.clone();
    let mut link = handle.inner.link.subscribe();
    let mut next_listener = Some(first);
    while !*stopped.borrow() {
        let wanted = *link.borrow_and_update();
        if wanted.down {
            drop(next_listener.take());
            served.send_replace(Served {
                open: false,
                seq: wanted.seq,
            });
            wait_while_down(wanted, &handle, &mut link, &mut stopped).await;
            continue;
        }
        let listener = match next_listener.take() {
            Some(listener) => listener,
            None => match rebind(addr, &mut stopped).await {
                Some(listener) => listener,
                None => break,
            },
        };
        served.send_replace(Served {
            open: true,
            seq: wanted.seq,
        });
        let closed_by = Arc::new(AtomicU64::new(wanted.seq));
        let listener = ReportingListener {
            inner: listener,
            served: served.clone(),
            closed_by: closed_by.clone(),
        };
        serve_until_down(
            listener,
            app.clone(),
            &closed_by,
            &served,
            &mut link,
            &mut stopped,
        )
        .await;
    }
    served.send_modify(|s| s.open = false);
}

/// Serve until the server goes down or is stopped; then give in-flight requests a moment.
async fn serve_until_down(
    listener: ReportingListener,
    app: Router,
    closed_by: &AtomicU64,
    served: &watch::Sender<Served>,
    link: &mut watch::Receiver<Link>,
    stopped: &mut watch::Receiver<bool>,
) {
    let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = closing_rx.await;
    });
    let mut serve = std::pin::pin!(serve.into_future());
    loop {
        tokio::select! {
            _ = &mut serve => return,
            changed = link.changed() => {
                let wanted = *link.borrow_and_update();
                if changed.is_err() || wanted.down {
                    closed_by.store(wanted.seq, Ordering::SeqCst);
                    break;
                }
                // Still up: acknowledge the request.
                served.send_replace(Served { open: true, seq: wanted.seq });
            }
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    let _ = closing_tx.send(());
    // The listener closes at once; requests in flight get a short grace period.
    let _ = tokio::time::timeout(GRACE, &mut serve).await;
}

/// Stay down until the wanted state changes, the deadline passes, or the server is stopped.
async fn wait_while_down(
    wanted: Link,
    handle: &SimHandle,
    link: &mut watch::Receiver<Link>,
    stopped: &mut watch::Receiver<bool>,
) {
    let deadline = async {
        match wanted.until {
            Some(until) => tokio::time::sleep_until(until.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = link.changed() => {}
        _ = stopped.wait_for(|s| *s) => {}
        _ = deadline => handle.set_down(false),
    }
}

/// Bind the address again (it may take a moment to be free); `None` when stopped first.
async fn rebind(addr: SocketAddr, stopped: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(err) => tracing::warn!(%addr, error = %err, "sim: cannot listen again yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REBIND_PAUSE) => {}
            _ = stopped.wait_for(|s| *s) => return None,
        }
    }
}
