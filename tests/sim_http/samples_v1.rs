//! The 1.x simulator replays `v1_index.tsv`: same statuses, same shapes, same error bodies.

use keywarden_sim::{ApiGeneration, RealityField};
use reqwest::Method;
use serde_json::json;

use super::{Key, Sim, Walk, assert_same_at};

const UNKNOWN: &str = "00000000-0000-4000-8000-000000000000";
const STRANGER: &str = "87c5ee57-dbf6-4db2-b1f2-dbec6b604db0";

#[tokio::test]
async fn v1_answers_like_the_recorded_server() {
    let sim = Sim::start(ApiGeneration::V1, 2).await;
    let h = sim.handle.clone();
    let keys = h.keys();
    let (alice, bob) = (keys[0].clone(), keys[1].clone());
    let mut w = Walk::new(&sim, "v1");

    w.check("root", Method::GET, "/api/", Key::Absent, None)
        .await;
    w.check("root_slash", Method::GET, "/", Key::Absent, None)
        .await;
    let list = w.get("keys_list", "/api/keys").await;
    assert_eq!(list.json.as_array().map(Vec::len), Some(2));
    w.get("key_get_by_id", &format!("/api/keys/{}", alice.id))
        .await;
    let by_uuid = w
        .get("key_get_by_uuid", &format!("/api/keys/{}", alice.uuid))
        .await;
    assert_eq!(by_uuid.json["id"], json!(alice.id));

    // Bob and a stranger have connections, Alice none.
    h.set_connections(&bob.id, 3);
    h.add_stranger_traffic(STRANGER, 0, 1);
    w.get("traffic_exact_first", "/api/traffic/exact").await;
    let bulk = w.get("traffic_exact", "/api/traffic/exact").await;
    let stats = &bulk.json["traffic_stats"]["traffic_stats"]["keys_stats"];
    let listed: Vec<&str> = stats
        .as_array()
        .expect("keys_stats")
        .iter()
        .filter_map(|s| s["uuid"].as_str())
        .collect();
    assert_eq!(
        listed,
        [bob.uuid.as_str(), STRANGER],
        "idle Alice is absent"
    );
    assert_eq!(stats[0]["connection_ratio"], json!(75.0));

    let t = w
        .get(
            "key_traffic_exact_by_id",
            &format!("/api/keys/{}/traffic/exact", alice.id),
        )
        .await;
    assert_eq!(t.json["source"], json!("precise_monitor"));
    w.get(
        "key_traffic_exact_by_uuid",
        &format!("/api/keys/{}/traffic/exact", bob.uuid),
    )
    .await;
    w.get("traffic_status", "/api/traffic/status").await;

    h.set_counter(&alice.id, 5000);
    let r = w
        .post(
            "key_traffic_reset_by_id",
            &format!("/api/keys/{}/traffic/reset", alice.id),
        )
        .await;
    assert_eq!(r.json["key_id"], json!(alice.id));
    assert_eq!(h.keys()[0].total_bytes, 0);
    let r = w
        .post(
            "key_traffic_reset_by_uuid",
            &format!("/api/keys/{}/traffic/reset", alice.uuid),
        )
        .await;
    assert_eq!(r.json["key_id"], json!(alice.uuid), "echoes the path");
    assert_eq!(h.reset_count(), 2);

    let status = w.get("config_status", "/api/system/config-status").await;
    assert_same_at(&status.json, "v1_config_status", "/synchronized");
    let config = w
        .get("key_config", &format!("/api/keys/{}/config", alice.id))
        .await;
    assert!(
        config.json["client_config"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("vless://{}@", alice.uuid)))
    );

    let created = w
        .check(
            "key_create",
            Method::POST,
            "/api/keys",
            Key::Right,
            Some(json!({"name": "Carol tablet"})),
        )
        .await;
    let carol_uuid = created.json["uuid"].as_str().expect("uuid").to_string();
    w.get("keys_list_after_create", "/api/keys").await;
    let status = w
        .get("config_status_after_create", "/api/system/config-status")
        .await;
    assert_eq!(status.json["config_json_count"], json!(3));
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

    w.check("err_wrong_key", Method::GET, "/api/keys", Key::Wrong, None)
        .await;
    w.check("err_no_key", Method::GET, "/api/keys", Key::Absent, None)
        .await;
    w.check(
        "err_wrong_key_post",
        Method::POST,
        "/api/keys",
        Key::Wrong,
        Some(json!({"name": "x"})),
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
        &format!("/api/keys/{UNKNOWN}/traffic/exact"),
    )
    .await;
    w.post(
        "err_reset_unknown",
        &format!("/api/keys/{UNKNOWN}/traffic/reset"),
    )
    .await;

    // Drift: Bob's client removed, then an unknown client added; each time a sync repairs.
    h.remove_config_client(&bob.uuid);
    let s = w
        .get("drift_removed_config_status", "/api/system/config-status")
        .await;
    assert_same_at(&s.json, "v1_drift_removed_config_status", "/synchronized");
    let sync = w.post("sync_config", "/api/system/sync-config").await;
    assert!(sync.json.get("validation").is_none());
    let s = w
        .get(
            "drift_removed_config_status_after_sync",
            "/api/system/config-status",
        )
        .await;
    assert_same_at(
        &s.json,
        "v1_drift_removed_config_status_after_sync",
        "/synchronized",
    );
    h.add_config_client("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    let s = w
        .get("drift_extra_config_status", "/api/system/config-status")
        .await;
    assert_same_at(
        &s.json,
        "v1_drift_extra_config_status",
        "/config_json_count",
    );
    w.post("sync_config_extra", "/api/system/sync-config").await;
    let s = w
        .get(
            "drift_extra_config_status_after_sync",
            "/api/system/config-status",
        )
        .await;
    assert_same_at(
        &s.json,
        "v1_drift_extra_config_status_after_sync",
        "/synchronized",
    );
    assert_eq!(h.sync_count(), 2);

    h.set_max_time_diff(0);
    w.post("verify_reality", "/api/system/verify-reality").await;
    assert_eq!(h.max_time_diff(), 600);
    h.break_reality(RealityField::Dest);
    w.post(
        "err_verify_reality_missing_field",
        "/api/system/verify-reality",
    )
    .await;
    h.repair_reality();

    let per_key = format!("/api/keys/{}/traffic/exact", alice.id);
    h.set_connections(&alice.id, 0);
    w.get("extra_key_traffic_first_call", &per_key).await;
    h.set_connections(&alice.id, 5);
    let t = w.get("extra_key_traffic_after_31s", &per_key).await;
    assert_same_at(
        &t.json,
        "v1_extra_key_traffic_after_31s",
        "/traffic_bytes/connection_ratio",
    );
    let bulk = w
        .get("extra_traffic_exact_after_31s", "/api/traffic/exact")
        .await;
    assert_eq!(
        bulk.json["traffic_stats"]["traffic_stats"]["keys_stats"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    h.set_active(&bob.id, false);
    w.get(
        "extra_inactive_key_traffic",
        &format!("/api/keys/{}/traffic/exact", bob.id),
    )
    .await;
    w.post(
        "extra_inactive_key_reset",
        &format!("/api/keys/{}/traffic/reset", bob.id),
    )
    .await;
    let s = w
        .get("extra_traffic_status_with_inactive", "/api/traffic/status")
        .await;
    assert_same_at(
        &s.json,
        "v1_extra_traffic_status_with_inactive",
        "/active_keys",
    );

    w.assert_complete();
}

#[tokio::test]
async fn v1_has_no_v2_endpoints() {
    let sim = Sim::start(ApiGeneration::V1, 1).await;
    let id = sim.handle.keys()[0].id.clone();
    for path in [
        "/health".to_string(),
        format!("/api/keys/{id}/traffic"),
        "/api/system/xray/validate-sync".to_string(),
    ] {
        let reply = sim.get(&path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json, json!({"detail": "Not Found"}));
    }
    let reply = sim.call(Method::PUT, "/api/keys", Key::Right, None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.json, json!({"detail": "Method Not Allowed"}));
}

#[tokio::test]
async fn v1_resets_can_be_ignored_and_the_monitor_switched_off() {
    let sim = Sim::start(ApiGeneration::V1, 2).await;
    let h = &sim.handle;
    let alice = h.keys()[0].clone();
    h.set_counter(&alice.id, 49_725);
    h.set_connections(&alice.id, 1);
    h.set_resets_ignored(true);
    let reset = sim
        .post(&format!("/api/keys/{}/traffic/reset", alice.id), None)
        .await;
    assert_eq!(reset.status, 200);
    let t = sim
        .get(&format!("/api/keys/{}/traffic/exact", alice.id))
        .await;
    assert_eq!(t.json["traffic_bytes"]["total_bytes"], json!(49_725));
    assert_eq!(
        t.json["traffic_bytes"]["total_formatted"],
        json!("48.56 KB")
    );
    h.set_precise_monitor_available(false);
    let status = sim.get("/api/traffic/status").await;
    assert_eq!(status.json["precise_monitor_available"], json!(false));
}
