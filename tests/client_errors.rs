//! Every error kind of the client, over real HTTP against canned answers: status
//! mapping, transient vs permanent, retries, the body cap, and the API key never
//! leaking into errors or logs.

mod support;

use std::time::Duration;

use keywarden::server_api::{ApiErrorKind, KeyRef, ServerApi};
use support::replay::{Canned, Replay};
use support::{client, sample, settings, within};

async fn v2_replay() -> Replay {
    let replay = Replay::start().await;
    replay.set("GET", "/api/", Canned::json(200, sample("v2_root.json")));
    replay.set(
        "GET",
        "/api/keys",
        Canned::json(200, sample("v2_keys_list.json")),
    );
    replay.set(
        "GET",
        "/api/system/xray/validate-sync",
        Canned::json(200, sample("v2_validate_sync_after_create.json")),
    );
    replay
}

const ALICE_ID: &str = "0cc99ff3-6e3c-40ee-b15d-8583a918caaa";
const ALICE_UUID: &str = "2f37321d-616b-4da0-a3dc-475b69df1741";

fn kind_of<T: std::fmt::Debug>(result: Result<T, keywarden::server_api::ApiError>) -> ApiErrorKind {
    result.expect_err("expected an error").kind
}

#[tokio::test]
async fn status_codes_map_to_kinds() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    let path = "/api/system/config-status";
    // (answer, what the error must look like, whether it is transient)
    type Case = (Canned, fn(&ApiErrorKind) -> bool, bool);
    let cases: Vec<Case> = vec![
        (
            Canned::json(401, sample("v2_err_wrong_key.json")),
            |k| matches!(k, ApiErrorKind::Unauthorized),
            false,
        ),
        (
            Canned::json(404, sample("v2_err_get_unknown.json")),
            |k| matches!(k, ApiErrorKind::NotFound { detail } if detail == "Key not found"),
            false,
        ),
        (
            Canned::json(400, sample("v1_extra_inactive_key_traffic.json")),
            |k| matches!(k, ApiErrorKind::KeyInactive { .. }),
            false,
        ),
        (
            Canned::json(400, br#"{"detail": "bad thing"}"#.to_vec()),
            |k| matches!(k, ApiErrorKind::Rejected { status: 400, detail } if detail == "bad thing"),
            false,
        ),
        (
            Canned::json(
                500,
                br#"{"detail": "Failed to restart Xray: exit 1"}"#.to_vec(),
            ),
            |k| matches!(k, ApiErrorKind::ServerError { status: 500, detail } if detail == "Failed to restart Xray: exit 1"),
            true,
        ),
        (
            Canned::html(
                502,
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            ),
            |k| matches!(k, ApiErrorKind::Protocol { status: 502, reason, snippet } if reason.contains("HTML") && snippet.contains("502 Bad Gateway")),
            true,
        ),
        (
            Canned::json(
                200,
                br#"{"synchronized": true, "keys_json_count": 2, "config_js"#.to_vec(),
            ),
            |k| matches!(k, ApiErrorKind::Protocol { status: 200, reason, .. } if reason == "truncated JSON"),
            true,
        ),
        (
            Canned::json(200, br#"{"unexpected": "shape"}"#.to_vec()),
            |k| matches!(k, ApiErrorKind::Decode { reason } if reason.contains("synchronized")),
            false,
        ),
        (
            Canned::json(503, Vec::new()),
            |k| matches!(k, ApiErrorKind::Protocol { status: 503, reason, .. } if reason == "empty answer"),
            true,
        ),
    ];
    for (canned, check, transient) in cases {
        let description = format!(
            "{} {:?}",
            canned.status,
            String::from_utf8_lossy(&canned.body)
        );
        replay.set("GET", path, canned);
        let error = within(&description, api.config_status())
            .await
            .expect_err(&description);
        assert!(check(&error.kind), "{description}: got {:?}", error.kind);
        assert_eq!(error.is_transient(), transient, "{description}: {error}");
        assert_eq!(error.endpoint, "GET /api/system/config-status");
    }
}

#[tokio::test]
async fn rate_limits_with_and_without_retry_after() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    // The real 2.x answer: `error` key, no Retry-After. Not retried (it counts per minute).
    replay.set(
        "POST",
        "/api/system/sync-config",
        Canned::json(429, sample("v2_rate_sync_config_4.json")),
    );
    let kind = kind_of(within("sync 429", api.sync_config()).await);
    assert_eq!(
        kind,
        ApiErrorKind::RateLimited {
            retry_after: None,
            detail: "Rate limit exceeded: 3 per 1 minute".into()
        }
    );
    assert_eq!(replay.count("POST", "/api/system/sync-config"), 1);

    // A long Retry-After is reported, not waited out.
    replay.set(
        "GET",
        "/api/keys",
        Canned::json(429, sample("v2_extra_keys_list_32nd.json")).with_header("retry-after", "120"),
    );
    let kind = kind_of(within("keys 429", api.refresh_keys()).await);
    assert_eq!(
        kind,
        ApiErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(120)),
            detail: "Rate limit exceeded: 30 per 1 minute".into()
        }
    );
    assert_eq!(replay.count("GET", "/api/keys"), 1);

    // A short Retry-After is honoured once, even for a POST.
    replay.set_sequence(
        "POST",
        "/api/system/sync-config",
        vec![
            Canned::json(429, sample("v2_rate_sync_config_4.json")).with_header("retry-after", "1"),
            Canned::json(200, sample("v2_sync_config.json")),
        ],
    );
    let started = std::time::Instant::now();
    let outcome = within("sync after retry-after", api.sync_config())
        .await
        .expect("sync after waiting");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert!(outcome.validation.unwrap().synced);
    assert_eq!(replay.count("POST", "/api/system/sync-config"), 3);
}

#[tokio::test]
async fn gets_retry_transient_errors_and_posts_do_not() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    replay.set_sequence(
        "GET",
        "/api/system/config-status",
        vec![
            Canned::html(502, "<html>bad gateway</html>"),
            Canned::json(503, br#"{"detail": "Service Unavailable"}"#.to_vec()),
            Canned::json(200, sample("v2_config_status.json")),
        ],
    );
    let status = within("retried read", api.config_status())
        .await
        .expect("third attempt succeeds");
    assert!(status.synchronized);
    assert_eq!(replay.count("GET", "/api/system/config-status"), 3);

    // Bounded: three failures in a row give up.
    replay.set(
        "GET",
        "/api/system/config-status",
        Canned::json(500, br#"{"detail": "boom"}"#.to_vec()),
    );
    assert!(within("bounded", api.config_status()).await.is_err());
    assert_eq!(replay.count("GET", "/api/system/config-status"), 6);

    // Permanent errors are not retried.
    replay.set(
        "GET",
        "/api/system/xray/validate-sync",
        Canned::json(401, sample("v2_err_wrong_key.json")),
    );
    assert_eq!(
        kind_of(within("401", api.validate_sync()).await),
        ApiErrorKind::Unauthorized
    );
    assert_eq!(replay.count("GET", "/api/system/xray/validate-sync"), 1);

    replay.set(
        "POST",
        "/api/system/verify-reality",
        Canned::json(500, sample("v2_verify_reality_api_first.json")),
    );
    let kind = kind_of(within("verify 500", api.verify_reality()).await);
    assert!(
        matches!(kind, ApiErrorKind::ServerError { status: 500, ref detail } if detail.starts_with("Failed to verify Reality settings"))
    );
    assert_eq!(
        replay.count("POST", "/api/system/verify-reality"),
        1,
        "a POST is never retried on 5xx"
    );
}

#[tokio::test]
async fn slow_answers_time_out() {
    let replay = v2_replay().await;
    let mut settings = settings(&replay.base_url());
    settings.timeout = Duration::from_millis(300);
    settings.retry.get_attempts = 2;
    let api = ServerApi::new(settings).unwrap();
    replay.set(
        "GET",
        "/api/system/config-status",
        Canned::json(200, sample("v2_config_status.json")).delayed(Duration::from_secs(3)),
    );
    let error = within("timeout", api.config_status())
        .await
        .expect_err("must time out");
    assert_eq!(
        error.kind,
        ApiErrorKind::Timeout {
            after: Duration::from_millis(300)
        }
    );
    assert!(error.is_transient());
    assert_eq!(
        replay.count("GET", "/api/system/config-status"),
        2,
        "a GET timeout is retried once more"
    );
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = client(&format!("http://127.0.0.1:{port}/api"));
    let error = within("unreachable", api.api_status())
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error.kind, ApiErrorKind::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let replay = v2_replay().await;
    let mut settings = settings(&replay.base_url());
    settings.max_body_bytes = 64 * 1024;
    let api = ServerApi::new(settings).unwrap();
    let mut huge = br#"{"synchronized": true, "keys_json_uuids": [""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 200 * 1024));
    huge.extend(br#""]}"#);
    replay.set("GET", "/api/system/config-status", Canned::json(200, huge));
    let kind = kind_of(within("oversized", api.config_status()).await);
    assert_eq!(
        kind,
        ApiErrorKind::BodyTooLarge {
            limit_bytes: 64 * 1024
        }
    );
    assert!(!kind.is_transient());
}

#[tokio::test]
async fn resets_without_a_success_marker_are_unconfirmed() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    let path = format!("/api/keys/{ALICE_ID}/traffic/reset");
    replay.set(
        "POST",
        &path,
        Canned::json(200, br#"{"message": "queued"}"#.to_vec()),
    );
    let kind = kind_of(
        within(
            "unconfirmed",
            api.reset_traffic(&KeyRef::by_uuid(ALICE_UUID)),
        )
        .await,
    );
    assert!(
        matches!(kind, ApiErrorKind::Unconfirmed { ref snippet } if snippet.contains("queued")),
        "{kind:?}"
    );
    replay.set(
        "POST",
        &path,
        Canned::json(200, sample("v2_key_traffic_reset_by_id.json")),
    );
    let confirmation = within("confirmed", api.reset_traffic(&KeyRef::by_uuid(ALICE_UUID)))
        .await
        .unwrap();
    assert_eq!(confirmation.message, "Traffic reset successfully");
    // Known only by uuid, the key was addressed by its id (learned from the key list).
    assert!(replay.seen().iter().all(|s| !s.path.contains(ALICE_UUID)));
}

#[tokio::test]
async fn per_key_calls_fall_back_from_id_to_uuid() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    // A server that only knows the uuid in this route.
    replay.set(
        "GET",
        &format!("/api/keys/{ALICE_UUID}/traffic"),
        Canned::json(200, sample("v2_key_traffic_by_id.json")),
    );
    let traffic = within(
        "fallback",
        api.key_traffic(&KeyRef::both(ALICE_ID, ALICE_UUID)),
    )
    .await
    .unwrap();
    assert_eq!(traffic.total_bytes, 6_291_456);
    let paths: Vec<String> = replay
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/api/keys/"))
        .map(|s| s.path)
        .collect();
    assert_eq!(
        paths,
        [
            format!("/api/keys/{ALICE_ID}/traffic"),
            format!("/api/keys/{ALICE_UUID}/traffic")
        ]
    );

    // Delete: 404 by id and by uuid means the key is already gone.
    let gone = within(
        "delete",
        api.delete_key(&KeyRef::both(ALICE_ID, ALICE_UUID)),
    )
    .await
    .unwrap();
    assert_eq!(gone, keywarden::server_api::DeleteOutcome::AlreadyGone);
}

#[tokio::test]
async fn key_list_is_shared_between_callers() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    let other = api.clone();
    let (a, b, c) = tokio::join!(api.list_keys(), api.list_keys(), other.list_keys());
    assert_eq!(a.unwrap().len(), 2);
    assert!(b.is_ok() && c.is_ok());
    assert_eq!(api.list_keys().await.unwrap().len(), 2);
    assert_eq!(
        replay.count("GET", "/api/keys"),
        1,
        "one request served four callers"
    );
    api.refresh_keys().await.unwrap();
    assert_eq!(replay.count("GET", "/api/keys"), 2);
}

#[tokio::test]
async fn a_released_key_list_is_shared_while_someone_holds_it_then_freed() {
    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    let held = api.list_keys().await.unwrap();
    api.release_key_list().await;
    let again = api.list_keys().await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&held, &again),
        "still held by a caller: the same list"
    );
    assert_eq!(replay.count("GET", "/api/keys"), 1);
    let weak = std::sync::Arc::downgrade(&held);
    drop((held, again));
    assert!(weak.upgrade().is_none(), "freed with its last holder");
    assert_eq!(api.list_keys().await.unwrap().len(), 2);
    assert_eq!(replay.count("GET", "/api/keys"), 2, "fetched again");
    // Not released: shared for the whole time to live, holders or not.
    assert_eq!(api.list_keys().await.unwrap().len(), 2);
    assert_eq!(replay.count("GET", "/api/keys"), 2);
}

#[tokio::test]
async fn capabilities_are_detected_and_redetected_after_a_404() {
    let replay = Replay::start().await;
    replay.set("GET", "/api/", Canned::json(200, sample("v1_root.json")));
    replay.set(
        "GET",
        "/api/traffic/exact",
        Canned::json(200, sample("v1_traffic_exact.json")),
    );
    let api = client(&replay.base_url());
    let caps = within("caps", api.capabilities()).await.unwrap();
    assert_eq!(caps.generation, keywarden::server_api::Generation::V1);
    assert!(caps.bulk_traffic && !caps.validate_sync);
    api.capabilities().await.unwrap();
    assert_eq!(replay.count("GET", "/api/"), 1, "cached");
    // The server was upgraded: the bulk endpoint is gone.
    replay.set("GET", "/api/", Canned::json(200, sample("v2_root.json")));
    replay.set(
        "GET",
        "/api/traffic/exact",
        Canned::json(404, sample("v2_traffic_exact_missing.json")),
    );
    replay.set(
        "GET",
        "/api/system/xray/validate-sync",
        Canned::json(200, sample("v2_validate_sync_after_create.json")),
    );
    assert!(api.bulk_traffic().await.unwrap_err().is_not_found());
    let caps = api.capabilities().await.unwrap();
    assert_eq!(caps.version, "2.3.6");
    assert!(!caps.bulk_traffic && caps.validate_sync);
}

#[tokio::test]
async fn capabilities_of_a_known_version_reuse_a_recent_status_and_probe_nothing() {
    let replay = Replay::start().await;
    replay.set("GET", "/api/", Canned::json(200, sample("v1_root.json")));
    let api = client(&replay.base_url());
    // The health job's read: always asked, then reused.
    within("status", api.api_status()).await.unwrap();
    let caps = within("caps", api.capabilities()).await.unwrap();
    assert!(caps.bulk_traffic && !caps.validate_sync);
    assert_eq!(
        within("recent", api.recent_api_status())
            .await
            .unwrap()
            .version,
        "1.0.0"
    );
    assert_eq!(replay.count("GET", "/api/"), 1, "{:?}", replay.seen());
    assert_eq!(
        replay.seen().len(),
        1,
        "nothing else was asked: {:?}",
        replay.seen()
    );
}

#[tokio::test]
async fn an_unknown_version_is_probed_with_head_requests() {
    let replay = Replay::start().await;
    replay.set(
        "GET",
        "/api/",
        Canned::json(
            200,
            br#"{"message": "VPN Key Management API", "version": "3.0.1"}"#.to_vec(),
        ),
    );
    // FastAPI answers HEAD on a GET route with 405; a missing route with 404.
    replay.set(
        "HEAD",
        "/api/system/xray/validate-sync",
        Canned::json(405, br#"{"detail": "Method Not Allowed"}"#.to_vec()),
    );
    let api = client(&replay.base_url());
    let caps = within("caps", api.capabilities()).await.unwrap();
    assert_eq!(caps.generation, keywarden::server_api::Generation::Unknown);
    assert!(!caps.bulk_traffic && caps.validate_sync, "{caps:?}");
    assert_eq!(replay.count("HEAD", "/api/traffic/exact"), 1);
    assert_eq!(replay.count("HEAD", "/api/system/xray/validate-sync"), 1);
    let gets: Vec<_> = replay
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1, "only GET /api/: {gets:?}");
}

#[tokio::test]
async fn a_route_a_1x_server_lacks_is_remembered_for_its_version() {
    let replay = Replay::start().await;
    replay.set("GET", "/api/", Canned::json(200, sample("v1_root.json")));
    let api = client(&replay.base_url());
    assert!(
        within("caps", api.capabilities())
            .await
            .unwrap()
            .bulk_traffic
    );
    // This 1.x server has no bulk route after all (FastAPI's "Not Found").
    assert!(
        within("bulk", api.bulk_traffic())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        !within("caps", api.capabilities())
            .await
            .unwrap()
            .bulk_traffic
    );
    assert_eq!(
        replay.count("GET", "/api/"),
        2,
        "read again once after the 404"
    );
    // Asked again by mistake: still remembered, no new detection.
    assert!(api.bulk_traffic().await.is_err());
    assert!(
        !within("caps", api.capabilities())
            .await
            .unwrap()
            .bulk_traffic
    );
    assert_eq!(replay.count("GET", "/api/"), 2);
    // A "Key not found" 404 is about a key, not a missing route.
    replay.set(
        "GET",
        "/api/keys/k1/traffic/exact",
        Canned::json(404, br#"{"detail": "Key not found"}"#.to_vec()),
    );
    let _ = api.key_traffic(&KeyRef::by_id("k1")).await;
    api.capabilities().await.unwrap();
    assert_eq!(replay.count("GET", "/api/"), 2);
}

#[tokio::test]
async fn a_new_version_seen_by_the_health_read_redetects_capabilities() {
    let replay = Replay::start().await;
    replay.set("GET", "/api/", Canned::json(200, sample("v1_root.json")));
    let api = client(&replay.base_url());
    assert!(
        within("caps", api.capabilities())
            .await
            .unwrap()
            .bulk_traffic
    );
    replay.set("GET", "/api/", Canned::json(200, sample("v2_root.json")));
    within("health's read", api.api_status()).await.unwrap();
    let caps = within("caps", api.capabilities()).await.unwrap();
    assert_eq!(
        (caps.version.as_str(), caps.bulk_traffic, caps.validate_sync),
        ("2.3.6", false, true)
    );
    assert_eq!(
        replay.count("GET", "/api/"),
        2,
        "no extra read for the detection"
    );
}
