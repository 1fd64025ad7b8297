//! /metrics and /healthz under a slowloris flood, on a real loopback listener: slow
//! connections are cut at the header-read timeout, idle keep-alive connections at the
//! idle timeout, connections beyond the cap are closed at once, and /healthz answers
//! again as soon as the flood's connections are gone. The limits are shortened for the
//! test (the defaults are seconds); the code paths are the daemon's.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use keywarden::http::{HttpState, Limits, serve_with};
use keywarden::metrics::Metrics;
use keywarden::store::Store;
use support::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_millis(300),
    idle_timeout: Duration::from_millis(600),
    max_lifetime: Duration::from_secs(30),
    max_connections: 8,
};

async fn endpoint(dir: &std::path::Path) -> (SocketAddr, CancellationToken) {
    let state = HttpState {
        metrics: Arc::new(Metrics::new(false)),
        store: Arc::new(Store::open(dir).unwrap()),
        scheduler_alive: Arc::new(AtomicBool::new(true)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve_with(listener, state, stop.clone(), LIMITS));
    (addr, stop)
}

/// How long until the server closes `stream` (reads until EOF or a reset), at most 10 s.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    within("the server closes the connection", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
}

async fn healthz(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = within("healthz", stream.read_to_string(&mut answer)).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_flood_is_cut_off_and_healthz_answers_again() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = endpoint(dir.path()).await;
    assert!(healthz(addr).await.starts_with("HTTP/1.1 200"));

    // Twice the cap, each sending an unfinished request and then nothing.
    let mut flood = Vec::new();
    for _ in 0..2 * LIMITS.max_connections {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        flood.push(stream);
    }
    let mut closings = Vec::new();
    for stream in &mut flood {
        closings.push(closed_after(stream).await);
    }
    // The cap: those beyond it were closed at once; the others at the header timeout.
    let quick = closings
        .iter()
        .filter(|d| **d < LIMITS.header_read_timeout / 2)
        .count();
    assert!(quick >= LIMITS.max_connections, "{closings:?}");
    assert!(
        closings.iter().all(|d| *d < Duration::from_secs(3)),
        "every slow connection was cut: {closings:?}"
    );
    assert!(
        healthz(addr).await.starts_with("HTTP/1.1 200"),
        "answers again"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = endpoint(dir.path()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 15];
    within("the answer", stream.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK");
    // Keep-alive: the connection stays open for another request, but not forever.
    let idle = closed_after(&mut stream).await;
    assert!(idle < Duration::from_secs(3), "{idle:?}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_of_header_bytes_is_cut_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, stop) = endpoint(dir.path()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // A header byte every 100 ms keeps the connection busy, never finished.
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(5) {
        if stream.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a dripping client kept the connection for 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    stop.cancel();
}
