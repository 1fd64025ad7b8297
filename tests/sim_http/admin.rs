//! The `/_sim/...` admin routes of the standalone simulator.

use std::time::Duration;

use keywarden::sim::ApiGeneration;
use reqwest::Method;
use serde_json::json;

use super::{Key, Sim, eventually};

#[tokio::test]
async fn admin_routes_need_the_api_key() {
    let sim = Sim::start(ApiGeneration::V1, 1).await;
    let reply = sim
        .call(Method::GET, "/_sim/state", Key::Absent, None)
        .await;
    assert_eq!(reply.status, 401);
    let state = sim.get("/_sim/state").await;
    assert_eq!(state.status, 200);
    assert_eq!(state.json["generation"], json!("1.0.0"));
    assert_eq!(state.json["keys"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn admin_changes_keys_drift_switches_and_faults() {
    let sim = Sim::start(ApiGeneration::V1, 2).await;
    let bob = sim.handle.keys()[1].clone();

    let changed = sim
        .post(
            &format!("/_sim/keys/{}", bob.uuid),
            Some(json!({"counter": 2048, "connections": 2})),
        )
        .await;
    assert_eq!(changed.json["total_bytes"], json!(2048));
    let t = sim
        .get(&format!("/api/keys/{}/traffic/exact", bob.id))
        .await;
    assert_eq!(t.json["traffic_bytes"]["total_formatted"], json!("2.00 KB"));
    let unknown = sim
        .post("/_sim/keys/nope", Some(json!({"counter": 1})))
        .await;
    assert_eq!(unknown.status, 404);

    sim.post("/_sim/drift", Some(json!({"remove": [bob.uuid]})))
        .await;
    let status = sim.get("/api/system/config-status").await;
    assert_eq!(status.json["synchronized"], json!(false));

    let switches = sim
        .post("/_sim/switches", Some(json!({"sync_noop": true})))
        .await;
    assert_eq!(switches.json["sync_noop"], json!(true));
    assert_eq!(switches.json["resets_ignored"], json!(false));
    sim.post("/api/system/sync-config", None).await;
    let status = sim.get("/api/system/config-status").await;
    assert_eq!(
        status.json["synchronized"],
        json!(false),
        "sync did nothing"
    );

    let reality = sim
        .post(
            "/_sim/reality",
            Some(json!({"break": "private_key", "max_time_diff": 0})),
        )
        .await;
    assert_eq!(reality.json["max_time_diff"], json!(0));
    let verify = sim.post("/api/system/verify-reality", None).await;
    assert_eq!(verify.status, 500);

    let armed = sim
        .post(
            "/_sim/faults",
            Some(
                json!({"route": "list_keys", "count": 1, "fault": {"kind": "html", "status": 504}}),
            ),
        )
        .await;
    assert_eq!(armed.status, 200);
    assert_eq!(sim.get("/api/keys").await.status, 504);
    assert_eq!(sim.get("/api/keys").await.status, 200);

    let added = sim.post("/_sim/keys", Some(json!({"name": "Dave"}))).await;
    assert_eq!(added.json["name"], json!("Dave"));
    assert_eq!(sim.handle.keys().len(), 3);
}

#[tokio::test]
async fn admin_rate_limits_clock_and_request_log() {
    let sim = Sim::start(ApiGeneration::V2, 1).await;
    sim.post(
        "/_sim/rate-limits",
        Some(json!({"sync": {"per_window": 1, "window_secs": 60}})),
    )
    .await;
    assert_eq!(sim.post("/api/system/sync-config", None).await.status, 200);
    let limited = sim.post("/api/system/sync-config", None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.json["error"],
        json!("Rate limit exceeded: 1 per 1 minute")
    );
    sim.post("/_sim/clock", Some(json!({"advance_secs": 60})))
        .await;
    assert_eq!(sim.post("/api/system/sync-config", None).await.status, 200);

    let log = sim.get("/_sim/requests").await;
    let statuses: Vec<u64> = log
        .json
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses, [200, 429, 200]);
    sim.call(Method::DELETE, "/_sim/requests", Key::Right, None)
        .await;
    assert!(sim.handle.requests().is_empty());
}

#[tokio::test]
async fn admin_down_for_a_while_then_back() {
    let sim = Sim::start(ApiGeneration::V1, 1).await;
    let reply = sim.post("/_sim/down", Some(json!({"seconds": 0.3}))).await;
    assert_eq!(reply.status, 200);
    let h = sim.handle.clone();
    eventually("the listener to close", Duration::from_secs(3), || {
        !h.is_listening()
    })
    .await;
    eventually("the listener to open again", Duration::from_secs(5), || {
        h.is_listening()
    })
    .await;
    assert_eq!(sim.get("/api/").await.status, 200);
}

#[tokio::test]
async fn admin_controls_the_data_plane() {
    let sim = Sim::start(ApiGeneration::V2, 2).await;
    let (alice, bob) = (sim.handle.keys()[0].clone(), sim.handle.keys()[1].clone());
    let ca = sim.get("/_sim/ca").await;
    assert!(
        ca.text.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        ca.text
    );
    assert_eq!(ca.text, sim.handle.ca_pem());

    let stopped = sim.post("/_sim/xray", Some(json!({"stopped": true}))).await;
    assert_eq!(stopped.json["xray_running"], json!(false));
    assert_eq!(stopped.json["listening"], json!([]));
    let health = sim.call(Method::GET, "/health", Key::Absent, None).await;
    assert_eq!(health.json["services"]["xray"], json!("stopped"));
    assert_eq!(health.json["status"], json!("healthy"));
    // A sync restarts Xray on both generations.
    sim.post("/api/system/sync-config", None).await;
    assert!(sim.handle.xray_running());
    assert_eq!(sim.handle.listening().len(), 2);

    let closed = sim
        .post(
            "/_sim/xray",
            Some(json!({"close_port": alice.uuid, "wrong_certificate": bob.id, "dest": {"key": bob.id, "dest": ""}})),
        )
        .await;
    assert_eq!(closed.json["listening"].as_array().map(Vec::len), Some(1));
    let inbounds = sim.get("/api/system/xray/inbounds").await;
    let dests: Vec<&str> = inbounds.json["inbounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dest"].as_str().unwrap())
        .collect();
    assert_eq!(dests, ["www.microsoft.com:443", ""]);
    let reopened = sim
        .post(
            "/_sim/xray",
            Some(json!({"open_port": alice.id, "right_certificate": bob.uuid})),
        )
        .await;
    assert_eq!(reopened.json["listening"].as_array().map(Vec::len), Some(2));
    let unknown = sim
        .post("/_sim/xray", Some(json!({"close_port": "nope"})))
        .await;
    assert_eq!(unknown.status, 404);
    // The links point at the listeners.
    let config = sim.get(&format!("/api/keys/{}/config", alice.id)).await;
    let port = sim.handle.vless_port(&alice.id);
    assert!(
        config.json["vless_url"]
            .as_str()
            .unwrap()
            .contains(&format!("@127.0.0.1:{port}?")),
        "{}",
        config.json
    );
}
