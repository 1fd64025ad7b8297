//! /metrics and /healthz served from an ephemeral loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keywarden::http::{HttpState, serve};
use keywarden::metrics::Metrics;
use keywarden::store::Store;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn healthz_follows_the_scheduler_and_metrics_are_openmetrics() {
    keywarden::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let metrics = Arc::new(Metrics::new(false));
    metrics.set_server_up("fra-1", false);
    let alive = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let state = HttpState {
        metrics,
        store,
        scheduler_alive: alive.clone(),
    };
    let server = tokio::spawn(serve(listener, state, stop.clone()));
    let http = reqwest::Client::new();

    let down = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    assert!(
        down.text()
            .await
            .unwrap()
            .contains("scheduler is not running")
    );
    alive.store(true, Ordering::Relaxed);
    let up = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);

    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("keywarden_server_up{server=\"fra-1\"} 0"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));

    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
