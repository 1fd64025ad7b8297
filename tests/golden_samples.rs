//! Golden tests: every answer recorded from the real servers (tests/fixtures/api-samples,
//! copied from ../shared/api-samples) is served over real HTTP and read by the real
//! client; each 200 must parse and each error must map to its error kind.

mod support;

use keywarden::server_api::{DeleteOutcome, KeyRef, ServerApi, wire};
use support::replay::{Canned, Replay};
use support::{client, sample, within};

struct Entry {
    generation: &'static str,
    name: String,
    status: u16,
    method: String,
    path: String,
}

fn index(generation: &'static str) -> Vec<Entry> {
    let text = String::from_utf8(sample(&format!("{generation}_index.tsv"))).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let (method, path) = fields[2].split_once(' ').unwrap();
            Entry {
                generation,
                name: fields[0].to_string(),
                status: fields[1].parse().unwrap(),
                method: method.to_string(),
                path: path.to_string(),
            }
        })
        .collect()
}

/// The outcome of a client call, reduced to what the golden table checks.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok,
    AlreadyGone,
    Error(&'static str),
}

fn outcome<T>(result: Result<T, keywarden::server_api::ApiError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(error) => Outcome::Error(error.kind.label()),
    }
}

fn expected(entry: &Entry) -> Outcome {
    match entry.status {
        200 => Outcome::Ok,
        401 => Outcome::Error("unauthorized"),
        404 if entry.method == "DELETE" => Outcome::AlreadyGone,
        404 => Outcome::Error("not_found"),
        400 => Outcome::Error("key_inactive"),
        429 => Outcome::Error("rate_limited"),
        500 => Outcome::Error("server_error"),
        other => panic!("{}: no expectation for status {other}", entry.name),
    }
}

/// Serve what capability detection and id lookup need, then the sample itself.
fn stage(replay: &Replay, entry: &Entry) {
    replay.clear();
    let g = entry.generation;
    replay.set(
        "GET",
        "/api/",
        Canned::json(200, sample(&format!("{g}_root.json"))),
    );
    replay.set(
        "GET",
        "/api/keys",
        Canned::json(200, sample(&format!("{g}_keys_list.json"))),
    );
    let v1_like = g == "v1" || entry.path.ends_with("/traffic/exact");
    if v1_like {
        replay.set(
            "GET",
            "/api/traffic/exact",
            Canned::json(200, sample("v1_traffic_exact.json")),
        );
    } else {
        replay.set(
            "GET",
            "/api/system/xray/validate-sync",
            Canned::json(200, sample("v2_validate_sync_after_create.json")),
        );
    }
    let mut canned = Canned::json(entry.status, sample(&format!("{g}_{}.json", entry.name)));
    if entry.status == 429 {
        // As recorded (v2_rate_sync_config_429_headers.txt): no Retry-After header.
        canned.headers.clear();
    }
    replay.set(&entry.method, &entry.path, canned);
}

fn key_in(path: &str) -> KeyRef {
    KeyRef::by_id(
        path.trim_start_matches("/api/keys/")
            .split('/')
            .next()
            .unwrap(),
    )
}

/// Call the client method that produced the recorded answer; None for calls keywarden
/// does not make (create, ports, GET / outside /api).
async fn call(client: &ServerApi, entry: &Entry) -> Option<Outcome> {
    let path = entry.path.as_str();
    let keyed = path.starts_with("/api/keys/");
    Some(match (entry.method.as_str(), path) {
        ("GET", "/api/") => outcome(client.api_status().await),
        ("GET", "/health") => outcome(client.health().await),
        ("GET", "/api/system/xray/inbounds") => outcome(client.xray_inbounds().await),
        ("GET", "/api/system/xray/config-status") => outcome(client.xray_layout().await),
        ("POST", "/api/system/fix-reality-keys") => outcome(client.fix_reality_keys().await),
        ("GET", p) if keyed && p.ends_with("/config") => {
            outcome(client.key_config(&key_in(p)).await)
        }
        ("GET", "/api/keys") => outcome(client.refresh_keys().await),
        ("GET", "/api/traffic/exact") => outcome(client.bulk_traffic().await),
        ("GET", "/api/traffic/status") => outcome(client.monitor_status().await),
        ("GET", "/api/system/config-status") => outcome(client.config_status().await),
        ("GET", "/api/system/xray/validate-sync") => outcome(client.validate_sync().await),
        ("POST", "/api/system/sync-config") => outcome(client.sync_config().await),
        ("POST", "/api/system/verify-reality") => outcome(client.verify_reality().await),
        ("GET", p) if keyed && (p.ends_with("/traffic") || p.ends_with("/traffic/exact")) => {
            outcome(client.key_traffic(&key_in(p)).await)
        }
        ("POST", p) if keyed && p.ends_with("/traffic/reset") => {
            outcome(client.reset_traffic(&key_in(p)).await)
        }
        ("DELETE", p) if keyed => match client.delete_key(&key_in(p)).await {
            Ok(DeleteOutcome::AlreadyGone) => Outcome::AlreadyGone,
            other => outcome(other),
        },
        ("GET", p) if keyed && p.matches('/').count() == 3 => {
            outcome(client.get_key(&key_in(p)).await)
        }
        _ => return None,
    })
}

#[tokio::test]
async fn every_recorded_answer_maps_to_its_outcome() {
    let replay = Replay::start().await;
    let mut checked = 0;
    let mut not_client_calls = Vec::new();
    for generation in ["v1", "v2"] {
        for entry in index(generation) {
            stage(&replay, &entry);
            // A fresh client per entry: no cached key list or capabilities carry over.
            let client = client(&replay.base_url());
            let label = format!(
                "{generation}_{} ({} {})",
                entry.name, entry.method, entry.path
            );
            match within(&label, call(&client, &entry)).await {
                Some(got) => {
                    assert_eq!(got, expected(&entry), "{label}");
                    checked += 1;
                }
                None => not_client_calls.push(format!("{generation}_{}", entry.name)),
            }
        }
    }
    // 41 v1 entries + 59 v2 entries minus the calls keywarden never makes.
    assert!(
        checked >= 90,
        "only {checked} recorded answers were checked"
    );
    not_client_calls.sort();
    assert_eq!(
        not_client_calls,
        [
            "v1_err_create_no_name",
            "v1_err_wrong_key_post",
            "v1_key_create",
            "v1_root_slash",
            "v2_err_create_no_name",
            "v2_key_create",
            "v2_ports",
            "v2_ports_status",
            "v2_root_slash",
        ]
    );
}

/// The answers of calls keywarden does not make still decode with the shared readers.
#[test]
fn answers_of_other_calls_decode_too() {
    for name in ["v1_root_slash.json", "v2_root_slash.json"] {
        let json: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
        assert!(
            wire::api_status(&json)
                .unwrap()
                .version
                .starts_with(&name[1..2])
        );
    }
    for name in ["v1_key_create.json", "v2_key_create.json"] {
        let json: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
        assert_eq!(wire::vpn_key(&json, "key").unwrap().name, "Carol tablet");
    }
    for name in ["v1_key_config.json", "v2_key_config.json"] {
        let json: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
        assert!(wire::vpn_key(&json["key"], "key").unwrap().uuid.len() == 36);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&sample("v2_err_create_no_name.json")).unwrap();
    assert_eq!(
        wire::error_detail(&json).unwrap(),
        "body.name: Field required"
    );
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&sample(name)).unwrap()
}

#[test]
fn v1_bulk_traffic_is_read_one_level_deeper_with_strangers() {
    let bulk = wire::bulk_traffic(&json("v1_traffic_exact.json")).unwrap();
    assert_eq!(bulk.source, "xray_api");
    assert_eq!(bulk.entries.len(), 3);
    assert_eq!(bulk.entries[1].uuid, "3795e423-e5b7-4e5f-8fc7-c6fcd7d22ef9");
    assert_eq!(bulk.entries[1].connections, 3);
    assert!((bulk.entries[1].connection_ratio - 33.33).abs() < 1e-9);
    assert_eq!(bulk.timestamp.unwrap().timestamp(), 1795835069);
    // The documented shape (keys_stats directly under traffic_stats) reads the same.
    let documented = serde_json::json!({"total_keys": 1, "active_keys": 1, "source": "alternative_monitor",
        "traffic_stats": {"total_keys": 1, "active_keys": 1, "total_traffic": "48.56 KB",
            "keys_stats": [{"uuid": "u-1", "connections": 2, "total_bytes": 49725, "total_formatted": "48.56 KB",
                            "total_mb": 0.05, "connection_ratio": 100.0}],
            "source": "alternative_monitor", "timestamp": 1754137253}});
    let bulk = wire::bulk_traffic(&documented).unwrap();
    assert_eq!(bulk.entries[0].total_bytes, 49725);
    assert_eq!(bulk.source, "alternative_monitor");
}

#[test]
fn per_key_traffic_in_both_generations_and_the_variant() {
    let v1 = wire::key_traffic(&json("v1_extra_key_traffic_after_31s.json")).unwrap();
    assert_eq!(
        v1.key_id.as_deref(),
        Some("e7ab9dce-d669-47d8-8127-dfc8c3d41465")
    );
    assert_eq!(v1.connections, Some(5));
    assert_eq!(v1.source, "precise_monitor");
    let v2 = wire::key_traffic(&json("v2_key_traffic_by_id.json")).unwrap();
    assert_eq!(v2.total_bytes, 6_291_456);
    assert_eq!(
        v2.uuid.as_deref(),
        Some("2f37321d-616b-4da0-a3dc-475b69df1741")
    );
    assert_eq!(
        v2.read_at.unwrap().to_rfc3339(),
        "2026-11-28T03:05:57.031341+00:00"
    );
    let variant = serde_json::json!({"key_id": "k1", "upload": "1024", "download": 2048.0, "last_updated": 1795835157});
    let read = wire::key_traffic(&variant).unwrap();
    assert_eq!(
        (read.total_bytes, read.upload, read.download),
        (3072, Some(1024), Some(2048))
    );
    let with_total = serde_json::json!({"key_id": "k1", "upload": 1, "download": 2, "total": 10});
    assert_eq!(wire::key_traffic(&with_total).unwrap().total_bytes, 10);
    let nothing = serde_json::json!({"key_id": "k1", "status": "success"});
    assert!(
        wire::key_traffic(&nothing).is_err(),
        "a reading without any total must not become 0"
    );
}

#[test]
fn monitor_status_and_config_status() {
    let status = wire::monitor_status(&json("v1_extra_traffic_status_with_inactive.json")).unwrap();
    assert!(status.precise_monitor_available);
    assert_eq!(
        (status.total_keys, status.active_keys, status.keys.len()),
        (2, 1, 1)
    );
    assert_eq!(status.keys[0].traffic.connections_count, 5);
    let drift = wire::config_status(&json("v1_drift_extra_config_status.json")).unwrap();
    assert!(!drift.synchronized);
    assert_eq!(drift.config_uuids.len(), 3);
    assert_eq!(drift.key_store_count, 2);
}

#[test]
fn v2_sync_answers_keep_their_validation() {
    let warm = wire::sync_outcome(&json("v2_drift_warm_sync_config.json"))
        .unwrap()
        .unwrap();
    let validation = warm.validation.unwrap();
    assert!(
        !validation.synced,
        "200 synced with validation.synced false"
    );
    assert_eq!(
        validation.extra_in_config,
        ["aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"]
    );
    let v1 = wire::sync_outcome(&json("v1_sync_config.json"))
        .unwrap()
        .unwrap();
    assert!(v1.validation.is_none());
    let cold = wire::sync_validation(&json("v2_drift_cold_validate_sync.json")).unwrap();
    assert_eq!(
        cold.missing_in_config,
        ["e7984f23-e03a-41ba-8b89-593a21eaeba8"]
    );
    assert!(cold.short_id_synced);
}

#[test]
fn action_answers_need_their_success_marker() {
    assert!(
        wire::reset_confirmation(&json("v1_key_traffic_reset_by_id.json"))
            .unwrap()
            .is_some()
    );
    assert!(
        wire::reset_confirmation(&json("v2_key_traffic_reset_by_id.json"))
            .unwrap()
            .is_some()
    );
    let variant = serde_json::json!({"success": true, "message": "ok", "previous_total": "123"});
    assert_eq!(
        wire::reset_confirmation(&variant)
            .unwrap()
            .unwrap()
            .previous_total,
        Some(123)
    );
    for unconfirmed in [
        serde_json::json!({"message": "queued"}),
        serde_json::json!({"success": false, "message": "Traffic stats reset successfully"}),
        serde_json::json!({"status": "error", "message": "Traffic reset successfully"}),
        serde_json::json!({}),
    ] {
        assert!(
            wire::reset_confirmation(&unconfirmed).unwrap().is_none(),
            "{unconfirmed}"
        );
    }
    assert!(
        wire::reality_outcome(&json("v2_verify_reality.json"))
            .unwrap()
            .is_some()
    );
    assert!(wire::delete_confirmed(&json("v2_key_delete.json")).unwrap());
    assert!(!wire::delete_confirmed(&serde_json::json!({"message": "accepted"})).unwrap());
}

/// The data-plane answers read into what the jobs decide on: Xray's state (its "healthy"
/// status hides a stopped Xray), the inbounds' Reality settings, the layout, the repair,
/// and the links users dial.
#[test]
fn xray_answers_decode_to_what_the_jobs_need() {
    use keywarden::server_api::{ServiceState, xray};
    let running = xray::health(&json("v2_health.json")).unwrap();
    assert_eq!(running.xray, Some(ServiceState::Running));
    let stopped = xray::health(&json("v2_health_xray_stopped.json")).unwrap();
    assert_eq!(
        (stopped.status.as_str(), stopped.xray),
        ("healthy", Some(ServiceState::Stopped))
    );
    let inbounds = xray::xray_inbounds(&json("v2_xray_inbounds.json")).unwrap();
    assert_eq!(inbounds.len(), 2);
    assert_eq!(inbounds[0].port, Some(10001));
    assert_eq!(inbounds[0].dest, "www.microsoft.com:443");
    assert_eq!(inbounds[0].short_ids, ["0039847e"]);
    assert_eq!(inbounds[1].server_names.len(), 8);
    assert_eq!(inbounds[1].uuids, ["e7984f23-e03a-41ba-8b89-593a21eaeba8"]);
    let layout = xray::xray_layout(&json("v2_xray_config_status.json")).unwrap();
    assert_eq!(
        (
            layout.api_inbound,
            layout.vless_inbounds,
            layout.total_inbounds
        ),
        (Some(true), 2, 3)
    );
    let fixed = xray::reality_fix(&json("v2_fix_reality_keys.json")).unwrap();
    assert_eq!(fixed.map(|f| f.status), Some("fixed".to_string()));
    assert_eq!(
        xray::reality_fix(&serde_json::json!({"status": "error"})).unwrap(),
        None
    );
    let v2 = xray::key_config(&json("v2_key_config.json")).unwrap();
    let link = v2.link.unwrap();
    assert_eq!(
        (link.host.as_str(), link.port, link.sni.as_deref()),
        ("veil-bird.ru", 10003, Some("www.microsoft.com"))
    );
    assert_eq!(v2.short_id.as_deref(), Some("fed93c9f"));
    let v1 = xray::key_config(&json("v1_key_config.json")).unwrap();
    let link = v1.link.unwrap();
    assert_eq!((link.host.as_str(), link.port), ("veil-bird.ru", 443));
    assert_eq!(v1.key.name, "Alice iPhone");
}
