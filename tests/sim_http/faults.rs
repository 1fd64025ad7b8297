//! Injected faults, the down mode, shutdown and the request log, over real HTTP.

use std::time::Duration;

use keywarden_sim::{ApiGeneration, Fault, RequestRecord, Route};
use reqwest::Method;
use serde_json::json;

use super::{API_KEY, Key, Sim, client, eventually};

#[tokio::test]
async fn status_and_html_faults_replace_the_answer_for_n_calls() {
    let sim = Sim::start(ApiGeneration::V1, 2).await;
    let h = &sim.handle;
    h.fail_next(
        Route::SyncConfig,
        1,
        Fault::Status {
            status: 500,
            detail: "Failed to restart Xray".into(),
        },
    );
    let failed = sim.post("/api/system/sync-config", None).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json, json!({"detail": "Failed to restart Xray"}));
    assert_eq!(h.sync_count(), 0, "a faulted call does not reach the API");
    assert_eq!(sim.post("/api/system/sync-config", None).await.status, 200);

    h.fail_next(Route::Any, 2, Fault::Html { status: 502 });
    for path in ["/api/keys", "/api/system/config-status"] {
        let page = sim.get(path).await;
        assert_eq!(page.status, 502, "{path}");
        assert!(page.json.is_null());
        assert!(page.text.contains("502 Bad Gateway") && page.text.contains("nginx"));
        let content_type = page
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert!(content_type.is_some_and(|c| c.starts_with("text/html")));
    }
    assert_eq!(sim.get("/api/keys").await.status, 200);
}

#[tokio::test]
async fn truncated_oversized_and_rate_limited_faults() {
    let sim = Sim::start(ApiGeneration::V2, 3).await;
    let h = &sim.handle;
    let full = sim.get("/api/keys").await;
    h.fail_next(Route::ListKeys, 1, Fault::TruncatedJson);
    let cut = sim.get("/api/keys").await;
    assert_eq!(cut.status, 200);
    assert!(cut.json.is_null(), "not JSON any more: {}", cut.text);
    assert!(full.text.starts_with(&cut.text) && cut.text.len() < full.text.len());

    let size = 9 * 1024 * 1024;
    h.fail_next(Route::ConfigStatus, 1, Fault::Oversized { bytes: size });
    let big = sim.get("/api/system/config-status").await;
    assert_eq!(big.status, 200);
    assert_eq!(big.text.len(), size);

    h.fail_next(
        Route::ResetTraffic,
        1,
        Fault::RateLimited {
            retry_after: Some(7),
        },
    );
    let id = h.keys()[0].id.clone();
    let limited = sim
        .post(&format!("/api/keys/{id}/traffic/reset"), None)
        .await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.json,
        json!({"error": "Rate limit exceeded: 3 per 1 minute"})
    );
    assert_eq!(
        limited
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(h.reset_count(), 0);
}

#[tokio::test]
async fn a_delay_outlasts_the_client_timeout() {
    let sim = Sim::start(ApiGeneration::V1, 1).await;
    let h = &sim.handle;
    h.fail_next(Route::Root, 1, Fault::Delay(Duration::from_secs(3)));
    let impatient = client(Duration::from_millis(200));
    let err = impatient
        .get(sim.url("/api/"))
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(err.is_timeout(), "{err}");
    // The server notices the client left and logs the call as 499.
    eventually(
        "the abandoned call in the log",
        Duration::from_secs(5),
        || h.requests().iter().any(|r| r.path == "/api/"),
    )
    .await;
    assert_eq!(h.requests()[0].status, 499);
    assert_eq!(sim.get("/api/").await.status, 200);

    // The work is done at once: the sync happened although its caller gave up.
    h.fail_next(Route::SyncConfig, 1, Fault::Delay(Duration::from_secs(3)));
    let err = impatient
        .post(sim.url("/api/system/sync-config"))
        .header("X-API-Key", API_KEY)
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(h.sync_count(), 1);
}

#[tokio::test]
async fn down_refuses_connections_on_the_same_port_until_up_again() {
    let sim = Sim::start(ApiGeneration::V2, 1).await;
    let h = &sim.handle;
    assert_eq!(sim.get("/health").await.status, 200);
    h.set_down_and_wait(true).await;
    assert!(!h.is_listening());
    let err = sim
        .try_call(Method::GET, "/health", Key::Absent, None)
        .await
        .err()
        .expect("no answer while down");
    assert!(err.is_connect() || err.is_request(), "{err}");
    h.set_down_and_wait(false).await;
    assert!(h.is_listening());
    assert_eq!(sim.get("/health").await.status, 200);

    // Without waiting: answered 503 until the listener is closed, then refused. Coming
    // back up waits for the serving task to act on the latest request, whatever its pace.
    for _ in 0..5 {
        h.set_down(true);
        match sim
            .try_call(Method::GET, "/health", Key::Absent, None)
            .await
        {
            Ok(reply) => assert_eq!(reply.status, 503),
            Err(err) => assert!(err.is_connect() || err.is_request(), "{err}"),
        }
        h.set_down_and_wait(false).await;
        assert_eq!(sim.get("/health").await.status, 200);
    }
    // A fault armed while the server is down waits for it to come back.
    h.fail_next(Route::Any, 1, Fault::Html { status: 502 });
    h.set_down_and_wait(true).await;
    h.set_down_and_wait(true).await;
    assert!(!h.is_listening());
    h.set_down_and_wait(false).await;
    h.set_down_and_wait(false).await;
    assert_eq!(sim.get("/health").await.status, 502);
    assert_eq!(sim.get("/health").await.status, 200);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = Sim::start(ApiGeneration::V1, 1).await;
    let url = sim.url("/api/");
    let Sim { server, client, .. } = sim;
    assert_eq!(
        client.get(&url).send().await.expect("up").status().as_u16(),
        200
    );
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown hung");
    let fresh = super::client(Duration::from_secs(2));
    assert!(fresh.get(&url).send().await.is_err());
}

#[tokio::test]
async fn the_request_log_never_holds_the_key() {
    let sim = Sim::start(ApiGeneration::V1, 1).await;
    let h = &sim.handle;
    sim.call(Method::GET, "/api/keys", Key::Absent, None).await;
    sim.call(Method::GET, "/api/keys", Key::Wrong, None).await;
    sim.get("/api/keys").await;
    sim.get("/api/nowhere").await;
    sim.get("/_sim/state").await;
    let expected = |status, had_api_key, path: &str| RequestRecord {
        method: "GET".into(),
        path: path.into(),
        status,
        had_api_key,
    };
    assert_eq!(
        h.requests(),
        [
            expected(401, false, "/api/keys"),
            expected(401, true, "/api/keys"),
            expected(200, true, "/api/keys"),
            expected(404, true, "/api/nowhere"),
        ],
        "admin calls are not logged"
    );
    assert!(!format!("{:?}", h.requests()).contains(API_KEY));
    h.clear_requests();
    assert!(h.requests().is_empty());
}
