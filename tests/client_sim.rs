//! Every client call against the simulated server over real HTTP, in both API
//! generations, including the quirks the client must see through and the faults it
//! must map.

mod support;

use std::time::Duration;

use keywarden::server_api::{ApiErrorKind, DeleteOutcome, Generation, KeyRef, ServerApi};
use keywarden_sim::{ApiGeneration, Fault, RealityField, Route};
use support::{client, settings, sim, within};

#[tokio::test]
async fn v1_every_call() {
    let server = sim(ApiGeneration::V1, 4).await;
    let handle = server.handle();
    let api = client(&server.base_url());
    let keys = handle.keys();
    handle.set_counter(&keys[0].id, 5_000_000);
    handle.set_connections(&keys[0].id, 3);
    handle.set_counter(&keys[1].id, 42);
    handle.set_connections(&keys[1].id, 0);
    handle.add_stranger_traffic("87c5ee57-dbf6-4db2-b1f2-dbec6b604db0", 7, 1);

    let status = within("status", api.api_status()).await.unwrap();
    assert_eq!(status.version, "1.0.0");
    let caps = within("caps", api.capabilities()).await.unwrap();
    assert_eq!(
        (caps.generation, caps.bulk_traffic, caps.validate_sync),
        (Generation::V1, true, false)
    );

    let listed = within("list", api.list_keys()).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.uuid.clone()).collect::<Vec<_>>(),
        keys.iter().map(|k| k.uuid.clone()).collect::<Vec<_>>()
    );
    let one = within("get by uuid", api.get_key(&KeyRef::by_uuid(&keys[2].uuid)))
        .await
        .unwrap();
    assert_eq!(one.id, keys[2].id);

    // Bulk: idle keys are absent, strangers present.
    let bulk = within("bulk", api.bulk_traffic()).await.unwrap();
    let uuids: Vec<&str> = bulk.entries.iter().map(|e| e.uuid.as_str()).collect();
    assert!(uuids.contains(&keys[0].uuid.as_str()));
    assert!(
        !uuids.contains(&keys[1].uuid.as_str()),
        "idle key absent from the bulk answer"
    );
    assert!(uuids.contains(&"87c5ee57-dbf6-4db2-b1f2-dbec6b604db0"));
    let first = bulk
        .entries
        .iter()
        .find(|e| e.uuid == keys[0].uuid)
        .unwrap();
    assert_eq!(first.total_bytes, 5_000_000);

    let traffic = within("key traffic", api.key_traffic(&keys[1].clone().into_ref()))
        .await
        .unwrap();
    assert_eq!(traffic.total_bytes, 42);
    let monitor = within("monitor", api.monitor_status()).await.unwrap();
    assert!(monitor.precise_monitor_available);
    assert_eq!(
        monitor
            .keys
            .iter()
            .find(|k| k.uuid == keys[0].uuid)
            .unwrap()
            .traffic
            .total_bytes,
        5_000_000
    );

    // Reset zeroes the counter.
    within("reset", api.reset_traffic(&keys[0].clone().into_ref()))
        .await
        .unwrap();
    assert_eq!(
        within("read back", api.key_traffic(&keys[0].clone().into_ref()))
            .await
            .unwrap()
            .total_bytes,
        0
    );

    // Drift, sync, verify.
    handle.remove_config_client(&keys[3].uuid);
    let drift = within("config status", api.config_status()).await.unwrap();
    assert!(!drift.synchronized);
    assert!(!drift.config_uuids.contains(&keys[3].uuid));
    let synced = within("sync", api.sync_config()).await.unwrap();
    assert_eq!(synced.status, "synced");
    assert!(synced.validation.is_none());
    assert!(
        within("after sync", api.config_status())
            .await
            .unwrap()
            .synchronized
    );

    handle.set_max_time_diff(0);
    within("verify", api.verify_reality()).await.unwrap();
    assert_eq!(handle.max_time_diff(), 600);
    handle.break_reality(RealityField::Dest);
    let error = within("broken reality", api.verify_reality())
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ApiErrorKind::ServerError { status: 500, .. }),
        "{error}"
    );

    // Inactive keys: 400 on per-key traffic.
    handle.set_active(&keys[2].id, false);
    let error = within("inactive", api.key_traffic(&keys[2].clone().into_ref()))
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ApiErrorKind::KeyInactive { .. }),
        "{error}"
    );

    // Delete, then delete again: already gone.
    assert_eq!(
        within("delete", api.delete_key(&keys[3].clone().into_ref()))
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        within("delete again", api.delete_key(&keys[3].clone().into_ref()))
            .await
            .unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert_eq!(
        within("list after delete", api.list_keys())
            .await
            .unwrap()
            .len(),
        3,
        "delete invalidates the cached list"
    );
}

#[tokio::test]
async fn v2_every_call() {
    let server = sim(ApiGeneration::V2, 3).await;
    let handle = server.handle();
    let api = client(&server.base_url());
    let keys = handle.keys();
    handle.set_counter(&keys[0].id, 6_291_456);

    let caps = within("caps", api.capabilities()).await.unwrap();
    assert_eq!(caps.version, "2.3.6");
    assert_eq!(
        (caps.generation, caps.bulk_traffic, caps.validate_sync),
        (Generation::V2, false, true)
    );
    let listed = within("list", api.list_keys()).await.unwrap();
    assert_eq!(listed[0].short_id, keys[0].short_id);
    assert!(listed[0].port.is_some());

    // 2.x matches traffic routes by id only: a key known by uuid is addressed by its id.
    let traffic = within(
        "traffic by uuid",
        api.key_traffic(&KeyRef::by_uuid(&keys[0].uuid)),
    )
    .await
    .unwrap();
    assert_eq!(traffic.total_bytes, 6_291_456);
    assert!(
        within("bulk is gone", api.bulk_traffic())
            .await
            .unwrap_err()
            .is_not_found()
    );

    // A reset the server ignores still answers 200: only reading back tells.
    handle.set_resets_ignored(true);
    within(
        "ignored reset",
        api.reset_traffic(&keys[0].clone().into_ref()),
    )
    .await
    .unwrap();
    assert_eq!(
        within("read back", api.key_traffic(&keys[0].clone().into_ref()))
            .await
            .unwrap()
            .total_bytes,
        6_291_456
    );
    handle.set_resets_ignored(false);
    within("read", api.key_traffic(&keys[0].clone().into_ref()))
        .await
        .unwrap();
    within("reset", api.reset_traffic(&keys[0].clone().into_ref()))
        .await
        .unwrap();
    assert_eq!(
        within("read back", api.key_traffic(&keys[0].clone().into_ref()))
            .await
            .unwrap()
            .total_bytes,
        0
    );

    // config-status is stale after drift; validate-sync is the witness.
    within("warm cache", api.config_status()).await.unwrap();
    handle.remove_config_client(&keys[1].uuid);
    let stale = within("stale status", api.config_status()).await.unwrap();
    assert!(
        stale.synchronized,
        "2.x config-status reads a cached config.json"
    );
    let fresh = within("validate", api.validate_sync()).await.unwrap();
    assert!(!fresh.synced);
    assert_eq!(fresh.missing_in_config, [keys[1].uuid.clone()]);

    // Sync repairs, with its own validation.
    let outcome = within("sync", api.sync_config()).await;
    match outcome {
        Ok(outcome) => assert!(outcome.validation.is_some()),
        // The real 2.x answers 500 "verification failed" when its cache was stale.
        Err(error) => assert_eq!(
            error.server_detail(),
            Some("Configuration sync verification failed")
        ),
    }
    assert!(
        within("validate after", api.validate_sync())
            .await
            .unwrap()
            .synced
    );

    // On the usual 2.x layout verify-reality fails.
    let error = within("verify", api.verify_reality()).await.unwrap_err();
    assert!(matches!(
        error.kind,
        ApiErrorKind::ServerError { status: 500, .. }
    ));

    // Three syncs a minute, then 429 with `error` and no Retry-After.
    handle.restart_api();
    let mut limited = None;
    for _ in 0..4 {
        if let Err(error) = api.sync_config().await {
            limited = Some(error);
        }
    }
    let limited = limited.expect("the fourth sync is rate limited");
    assert_eq!(
        limited.kind,
        ApiErrorKind::RateLimited {
            retry_after: None,
            detail: "Rate limit exceeded: 3 per 1 minute".into()
        }
    );

    assert_eq!(
        within("delete", api.delete_key(&KeyRef::by_uuid(&keys[2].uuid)))
            .await
            .unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        within("delete again", api.delete_key(&keys[2].clone().into_ref()))
            .await
            .unwrap(),
        DeleteOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn simulator_faults_map_to_error_kinds() {
    let server = sim(ApiGeneration::V2, 2).await;
    let handle = server.handle();
    let mut settings = settings(&server.base_url());
    settings.timeout = Duration::from_millis(300);
    settings.retry.get_attempts = 1;
    settings.max_body_bytes = 1024 * 1024;
    let api = ServerApi::new(settings).unwrap();

    handle.fail_next(Route::ConfigStatus, 1, Fault::Html { status: 502 });
    let kind = within("html", api.config_status()).await.unwrap_err().kind;
    assert!(
        matches!(kind, ApiErrorKind::Protocol { status: 502, ref reason, .. } if reason.contains("HTML")),
        "{kind:?}"
    );

    handle.fail_next(Route::ConfigStatus, 1, Fault::TruncatedJson);
    let kind = within("truncated", api.config_status())
        .await
        .unwrap_err()
        .kind;
    assert!(
        matches!(kind, ApiErrorKind::Protocol { ref reason, .. } if reason == "truncated JSON"),
        "{kind:?}"
    );

    handle.fail_next(Route::ConfigStatus, 1, Fault::Delay(Duration::from_secs(2)));
    let kind = within("slow", api.config_status()).await.unwrap_err().kind;
    assert_eq!(
        kind,
        ApiErrorKind::Timeout {
            after: Duration::from_millis(300)
        }
    );

    handle.fail_next(
        Route::ConfigStatus,
        1,
        Fault::Oversized {
            bytes: 9 * 1024 * 1024,
        },
    );
    let kind = within("oversized", api.config_status())
        .await
        .unwrap_err()
        .kind;
    assert_eq!(
        kind,
        ApiErrorKind::BodyTooLarge {
            limit_bytes: 1024 * 1024
        }
    );

    handle.fail_next(
        Route::SyncConfig,
        1,
        Fault::Status {
            status: 500,
            detail: "Failed to restart Xray".into(),
        },
    );
    let error = within("500", api.sync_config()).await.unwrap_err();
    assert_eq!(
        error.kind,
        ApiErrorKind::ServerError {
            status: 500,
            detail: "Failed to restart Xray".into()
        }
    );

    handle.fail_next(
        Route::SyncConfig,
        1,
        Fault::RateLimited {
            retry_after: Some(1),
        },
    );
    within("429 then retry", api.sync_config())
        .await
        .expect("a short Retry-After is waited out once");

    handle.set_down_and_wait(true).await;
    let kind = within("down", api.api_status()).await.unwrap_err().kind;
    assert!(matches!(kind, ApiErrorKind::Unreachable { .. }), "{kind:?}");
    handle.set_down_and_wait(false).await;
    within("back", api.api_status())
        .await
        .expect("the server is back");

    // The wrong key is refused everywhere but GET /api/.
    let mut wrong = support::settings(&server.base_url());
    wrong.api_key = keywarden::secret::Secret::new("wrong");
    let wrong = ServerApi::new(wrong).unwrap();
    within("root without auth", wrong.api_status())
        .await
        .unwrap();
    assert_eq!(
        within("401", wrong.list_keys()).await.unwrap_err().kind,
        ApiErrorKind::Unauthorized
    );
}

/// Shorthand: a simulator key as the client's key reference.
trait IntoRef {
    fn into_ref(self) -> KeyRef;
}

impl IntoRef for keywarden_sim::SimKey {
    fn into_ref(self) -> KeyRef {
        KeyRef::both(&self.id, &self.uuid)
    }
}
