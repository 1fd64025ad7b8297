//! The 2.x simulator replays `v2_index.tsv`: same statuses, same shapes, same error bodies,
//! including the stale config-status cache, the rate limits and the reset quirks.

use std::time::Duration;

use keywarden::sim::{ApiGeneration, ClientPlacement};
use reqwest::Method;
use serde_json::json;

use super::{Key, Sim, Walk, assert_same_at};

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";

#[tokio::test]
async fn v2_answers_like_the_recorded_server() {
    let sim = Sim::start(ApiGeneration::V2, 2).await;
    let h = sim.handle.clone();
    let keys = h.keys();
    let (k1, k2) = (keys[0].clone(), keys[1].clone());
    let mut w = Walk::new(&sim, "v2");

    w.check("root", Method::GET, "/api/", Key::Absent, None)
        .await;
    w.check("root_slash", Method::GET, "/", Key::Absent, None)
        .await;
    w.check("health", Method::GET, "/health", Key::Absent, None)
        .await;
    w.get("keys_list", "/api/keys").await;
    w.get("key_get_by_id", &format!("/api/keys/{}", k1.id))
        .await;
    w.get("key_get_by_uuid", &format!("/api/keys/{}", k1.uuid))
        .await;
    w.get("traffic_exact_missing", "/api/traffic/exact").await;
    w.get("traffic_status_missing", "/api/traffic/status").await;
    w.get(
        "key_traffic_exact_missing",
        &format!("/api/keys/{}/traffic/exact", k1.id),
    )
    .await;

    h.set_counter(&k1.id, 1_048_576 + 5_242_880);
    let k1_traffic = format!("/api/keys/{}/traffic", k1.id);
    let t = w.get("key_traffic_by_id", &k1_traffic).await;
    assert_same_at(&t.json, "v2_key_traffic_by_id", "/total_bytes");
    w.get("key_traffic_k2", &format!("/api/keys/{}/traffic", k2.id))
        .await;
    w.get(
        "key_traffic_by_uuid",
        &format!("/api/keys/{}/traffic", k1.uuid),
    )
    .await;
    h.add_traffic(&k1.id, 1024);
    let t = w.get("key_traffic_after_growth", &k1_traffic).await;
    assert_same_at(&t.json, "v2_key_traffic_after_growth", "/total_bytes");
    let k1_reset = format!("/api/keys/{}/traffic/reset", k1.id);
    w.post("key_traffic_reset_by_id", &k1_reset).await;
    w.post("key_traffic_reset_again", &k1_reset).await;
    let t = w.get("key_traffic_after_reset", &k1_traffic).await;
    assert_eq!(
        t.json["total_bytes"],
        json!(0),
        "resets take effect by default"
    );
    w.post(
        "key_traffic_reset_by_uuid",
        &format!("/api/keys/{}/traffic/reset", k1.uuid),
    )
    .await;

    w.get("config_status", "/api/system/config-status").await;
    let created = w
        .check(
            "key_create",
            Method::POST,
            "/api/keys",
            Key::Right,
            Some(json!({"name": "Carol tablet"})),
        )
        .await;
    assert_eq!(created.json["port"], json!(10003));
    let carol_id = created.json["id"].as_str().expect("id").to_string();
    let carol_uuid = created.json["uuid"].as_str().expect("uuid").to_string();
    w.get("keys_list_after_create", "/api/keys").await;
    let s = w
        .get("config_status_after_create", "/api/system/config-status")
        .await;
    assert_same_at(&s.json, "v2_config_status_after_create", "/synchronized");
    let v = w
        .get(
            "validate_sync_after_create",
            "/api/system/xray/validate-sync",
        )
        .await;
    assert_same_at(
        &v.json,
        "v2_validate_sync_after_create",
        "/validation/synced",
    );
    w.get("key_config", &format!("/api/keys/{carol_id}/config"))
        .await;
    w.get("key_traffic_new", &format!("/api/keys/{carol_id}/traffic"))
        .await;
    let inbounds = w.get("xray_inbounds", "/api/system/xray/inbounds").await;
    assert_eq!(inbounds.json["inbounds"].as_array().map(Vec::len), Some(3));
    assert_same_at(&inbounds.json, "v2_xray_inbounds", "/inbounds/0/dest");
    let layout = w
        .get("xray_config_status", "/api/system/xray/config-status")
        .await;
    assert_same_at(
        &layout.json,
        "v2_xray_config_status",
        "/config_status/api_inbound",
    );
    w.get("ports_status", "/api/system/ports/status").await;
    // Xray stopped while the API runs: /health still says healthy, only services.xray tells.
    h.stop_xray().await;
    let stopped = w
        .check(
            "health_xray_stopped",
            Method::GET,
            "/health",
            Key::Absent,
            None,
        )
        .await;
    assert_same_at(&stopped.json, "v2_health_xray_stopped", "/status");
    assert_same_at(&stopped.json, "v2_health_xray_stopped", "/services/xray");
    assert!(h.listening().is_empty(), "every VLESS port closed");
    // fix-reality-keys rewrites the Reality keys and restarts Xray.
    let fixed = w
        .post("fix_reality_keys", "/api/system/fix-reality-keys")
        .await;
    assert_same_at(&fixed.json, "v2_fix_reality_keys", "/status");
    assert!(h.xray_running());
    assert_eq!(h.listening().len(), 3, "every inbound listens again");
    w.get("ports", "/api/system/ports").await;
    let delete = format!("/api/keys/{carol_uuid}");
    w.check("key_delete", Method::DELETE, &delete, Key::Right, None)
        .await;
    w.check(
        "key_delete_again",
        Method::DELETE,
        &delete,
        Key::Right,
        None,
    )
    .await;
    let s = w
        .get("config_status_after_delete", "/api/system/config-status")
        .await;
    assert_same_at(&s.json, "v2_config_status_after_delete", "/synchronized");

    w.check("err_wrong_key", Method::GET, "/api/keys", Key::Wrong, None)
        .await;
    w.check("err_no_key", Method::GET, "/api/keys", Key::Absent, None)
        .await;
    w.check(
        "err_wrong_key_sync",
        Method::POST,
        "/api/system/sync-config",
        Key::Wrong,
        None,
    )
    .await;
    w.check(
        "err_create_no_name",
        Method::POST,
        "/api/keys",
        Key::Right,
        Some(json!({})),
    )
    .await;
    w.get("err_get_unknown", &format!("/api/keys/{UNKNOWN}"))
        .await;
    w.check(
        "err_delete_unknown",
        Method::DELETE,
        &format!("/api/keys/{UNKNOWN}"),
        Key::Right,
        None,
    )
    .await;
    w.get(
        "err_traffic_unknown",
        &format!("/api/keys/{UNKNOWN}/traffic"),
    )
    .await;
    w.post(
        "err_reset_unknown",
        &format!("/api/keys/{UNKNOWN}/traffic/reset"),
    )
    .await;
    w.post("verify_reality_api_first", "/api/system/verify-reality")
        .await;
    w.post("sync_config", "/api/system/sync-config").await;

    // Cold drift: K2's inbound removed right after an API restart.
    h.restart_api();
    h.remove_config_client(&k2.uuid);
    let s = w
        .get("drift_cold_config_status", "/api/system/config-status")
        .await;
    assert_same_at(&s.json, "v2_drift_cold_config_status", "/synchronized");
    let v = w
        .get("drift_cold_validate_sync", "/api/system/xray/validate-sync")
        .await;
    assert_eq!(v.json["validation"]["missing_in_config"], json!([k2.uuid]));
    w.post("drift_cold_sync_config", "/api/system/sync-config")
        .await;
    let s = w
        .get(
            "drift_cold_config_status_after_sync",
            "/api/system/config-status",
        )
        .await;
    assert_same_at(
        &s.json,
        "v2_drift_cold_config_status_after_sync",
        "/synchronized",
    );
    let v = w
        .get(
            "drift_cold_validate_sync_after_sync",
            "/api/system/xray/validate-sync",
        )
        .await;
    assert_same_at(
        &v.json,
        "v2_drift_cold_validate_sync_after_sync",
        "/validation/synced",
    );
    h.restart_api();
    let s = w
        .get(
            "drift_cold_config_status_after_restart",
            "/api/system/config-status",
        )
        .await;
    assert_same_at(
        &s.json,
        "v2_drift_cold_config_status_after_restart",
        "/synchronized",
    );

    // Warm drift: the cache is warm, then a client inside K1's inbound and a rogue inbound.
    w.get(
        "drift_warm_config_status_before",
        "/api/system/config-status",
    )
    .await;
    h.add_config_client_at(
        "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        ClientPlacement::InsideExisting,
    );
    h.add_config_client_at(
        "cccccccc-dddd-4eee-8fff-000000000000",
        ClientPlacement::OwnInbound,
    );
    let s = w
        .get("drift_warm_config_status", "/api/system/config-status")
        .await;
    assert_same_at(&s.json, "v2_drift_warm_config_status", "/synchronized");
    let v = w
        .get("drift_warm_validate_sync", "/api/system/xray/validate-sync")
        .await;
    assert_same_at(
        &v.json,
        "v2_drift_warm_validate_sync",
        "/validation/extra_in_config",
    );
    let sync = w
        .post("drift_warm_sync_config", "/api/system/sync-config")
        .await;
    assert_same_at(&sync.json, "v2_drift_warm_sync_config", "/validation");
    let s = w
        .get(
            "drift_warm_config_status_after_sync",
            "/api/system/config-status",
        )
        .await;
    assert_same_at(
        &s.json,
        "v2_drift_warm_config_status_after_sync",
        "/synchronized",
    );
    let v = w
        .get(
            "drift_warm_validate_sync_after_sync",
            "/api/system/xray/validate-sync",
        )
        .await;
    assert_same_at(
        &v.json,
        "v2_drift_warm_validate_sync_after_sync",
        "/validation",
    );
    h.restart_api();
    let s = w
        .get(
            "drift_warm_config_status_after_restart",
            "/api/system/config-status",
        )
        .await;
    assert_same_at(
        &s.json,
        "v2_drift_warm_config_status_after_restart",
        "/config_json_count",
    );

    // The recording then used a layout whose first inbound is VLESS (verify-reality works
    // there), without the warm drift, and restarted the API: its sync check compares the
    // key store with the cached config.json as sets, extras included.
    h.remove_config_client("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    h.set_verify_reality_broken(false);
    h.restart_api();
    w.post("verify_reality", "/api/system/verify-reality").await;

    // Rate limits (the restart emptied them): 3 syncs, then 429 without Retry-After.
    for n in 1..=3 {
        w.post(&format!("rate_sync_config_{n}"), "/api/system/sync-config")
            .await;
    }
    let limited = w
        .post("rate_sync_config_4", "/api/system/sync-config")
        .await;
    assert!(limited.headers.get("retry-after").is_none());
    let mut lists = 0;
    let limited = loop {
        let reply = sim.get("/api/keys").await;
        lists += 1;
        if reply.status == 429 || lists > 40 {
            break reply;
        }
    };
    assert_eq!(lists, 31, "30 lists per minute are allowed");
    assert_eq!(limited.json, super::sample("v2_extra_keys_list_32nd"));
    w.check(
        "extra_keys_list_32nd",
        Method::GET,
        "/api/keys",
        Key::Right,
        None,
    )
    .await;
    w.check(
        "extra_keys_list_wrong_key_when_limited",
        Method::GET,
        "/api/keys",
        Key::Wrong,
        None,
    )
    .await;

    w.assert_complete();
}

#[tokio::test]
async fn v2_rate_limit_windows_are_configurable_and_follow_the_clock() {
    let sim = Sim::start(ApiGeneration::V2, 1).await;
    let h = &sim.handle;
    h.set_sync_rate_limit(1, Duration::from_secs(10));
    assert_eq!(sim.post("/api/system/sync-config", None).await.status, 200);
    let limited = sim.post("/api/system/sync-config", None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.json,
        json!({"error": "Rate limit exceeded: 1 per 10 second"})
    );
    // The wrong key is refused before the limiter.
    let wrong = sim
        .call(Method::POST, "/api/system/sync-config", Key::Wrong, None)
        .await;
    assert_eq!(wrong.status, 401);
    h.advance_clock(Duration::from_secs(10));
    assert_eq!(sim.post("/api/system/sync-config", None).await.status, 200);
    assert_eq!(h.sync_count(), 2);
}

#[tokio::test]
async fn v2_short_id_mismatches_and_returning_drift() {
    let sim = Sim::start(ApiGeneration::V2, 2).await;
    let h = &sim.handle;
    let k1 = h.keys()[0].clone();
    h.corrupt_short_id(&k1.uuid);
    let v = sim.get("/api/system/xray/validate-sync").await;
    let validation = &v.json["validation"];
    assert_eq!(validation["short_id_synced"], json!(false));
    assert_eq!(validation["short_id_mismatches_count"], json!(1));
    let mismatch = &validation["short_id_mismatches"][0];
    assert_eq!(mismatch["uuid"], json!(k1.uuid));
    assert_eq!(mismatch["db_short_id"], json!(k1.short_id));
    assert_ne!(mismatch["config_short_id"], json!(k1.short_id));

    h.set_drift_returns(true);
    let sync = sim.post("/api/system/sync-config", None).await;
    assert_eq!(
        sync.json["validation"]["synced"],
        json!(true),
        "fine when it answers"
    );
    let v = sim.get("/api/system/xray/validate-sync").await;
    assert_eq!(
        v.json["validation"]["synced"],
        json!(false),
        "then it comes back"
    );
    h.set_drift_returns(false);
    sim.post("/api/system/sync-config", None).await;
    let v = sim.get("/api/system/xray/validate-sync").await;
    assert_eq!(v.json["validation"]["synced"], json!(true));
}

#[tokio::test]
async fn v2_sync_noop_and_ignored_resets() {
    let sim = Sim::start(ApiGeneration::V2, 2).await;
    let h = &sim.handle;
    let k2 = h.keys()[1].clone();
    h.set_sync_noop(true);
    h.remove_config_client(&k2.uuid);
    let sync = sim.post("/api/system/sync-config", None).await;
    assert_eq!(
        sync.status, 500,
        "its check reads config.json for the first time"
    );
    assert!(!h.config_uuids().contains(&k2.uuid));

    h.set_counter(&k2.id, 777);
    h.set_resets_ignored(true);
    let path = format!("/api/keys/{}/traffic/reset", k2.id);
    assert_eq!(sim.post(&path, None).await.status, 200);
    let t = sim.get(&format!("/api/keys/{}/traffic", k2.id)).await;
    assert_eq!(t.json["total_bytes"], json!(777));
}
