//! The report's tables: daily usage adds up per day and key and is pruned, availability
//! counts checks per hour, deliveries count attempts.

use chrono::{NaiveDate, TimeZone, Timelike, Utc};

use keywarden::model::report::{AvailabilitySample, AvailabilitySeries, DailyUsage, DeliveryState};
use keywarden::store::{DAILY_KEPT_DAYS, QuotaCommit, Store};

use super::Ctx;

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn usage(d: u32, uuid: &str, bytes: u64) -> DailyUsage {
    DailyUsage {
        day: day(d),
        uuid: uuid.into(),
        key_id: format!("id-{uuid}"),
        name: format!("key {uuid}"),
        bytes,
    }
}

/// Daily usage arrives with a quota commit.
async fn add(store: &Store, server: &str, rows: &[DailyUsage]) {
    let commit = QuotaCommit {
        entries: Vec::new(),
        history: Vec::new(),
        intents: Vec::new(),
        memory: Default::default(),
        api_version: "1.0.0".into(),
        now: Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap(),
        read_at: None,
        reread: Vec::new(),
        daily: rows.to_vec(),
    };
    store.quota().commit(server, commit).await.unwrap();
}

pub async fn daily_usage_adds_up_per_day_and_key(ctx: &Ctx) {
    let store = &ctx.store;
    add(store, "fra-1", &[usage(2, "u1", 100), usage(2, "u2", 5)]).await;
    add(store, "fra-1", &[usage(2, "u1", 50), usage(3, "u1", 7)]).await;
    add(store, "ams-2", &[usage(3, "u9", 1), usage(3, "u0", 0)]).await;
    let rows = store.report().daily_usage(day(2), day(3)).await.unwrap();
    let seen: Vec<(&str, u32, &str, u64)> = rows
        .iter()
        .map(|r| {
            use chrono::Datelike;
            (r.server.as_str(), r.day.day(), r.uuid.as_str(), r.bytes)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ams-2", 3, "u9", 1),
            ("fra-1", 2, "u1", 150),
            ("fra-1", 2, "u2", 5),
            ("fra-1", 3, "u1", 7),
        ],
        "zero growth writes no row"
    );
    assert_eq!(
        store
            .report()
            .daily_usage(day(3), day(3))
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn daily_usage_is_pruned_after_retention(ctx: &Ctx) {
    let store = &ctx.store;
    add(store, "fra-1", &[usage(1, "u1", 100)]).await;
    let later = day(1) + chrono::Duration::days(DAILY_KEPT_DAYS + 1);
    let row = DailyUsage {
        day: later,
        ..usage(1, "u1", 1)
    };
    add(store, "fra-1", &[row]).await;
    let rows = store.report().daily_usage(day(1), later).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].day, later);
}

pub async fn availability_counts_checks_per_hour(ctx: &Ctx) {
    let store = &ctx.store;
    let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap();
    let api = |up| AvailabilitySample {
        series: AvailabilitySeries::Api,
        up,
    };
    for (at, up) in [(at(10, 0), true), (at(10, 30), false), (at(11, 59), true)] {
        store
            .report()
            .record_availability("fra-1", at, &[api(up)])
            .await
            .unwrap();
    }
    let rows = store
        .report()
        .availability(at(10, 0), at(12, 0))
        .await
        .unwrap();
    let seen: Vec<(u32, u64, u64)> = rows
        .iter()
        .map(|r| (r.hour.hour(), r.checks, r.up))
        .collect();
    assert_eq!(seen, vec![(10, 2, 1), (11, 1, 1)]);
    let later = store
        .report()
        .availability(at(12, 0), at(13, 0))
        .await
        .unwrap();
    assert!(later.is_empty());
}

pub async fn deliveries_count_attempts(ctx: &Ctx) {
    let store = &ctx.store;
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
    assert_eq!(
        store.report().delivery("2026-W48", "mail").await.unwrap(),
        None
    );
    let failed = DeliveryState::Failed;
    store
        .report()
        .record_delivery("2026-W48", "mail", failed, Some("smtp: 451"), now)
        .await
        .unwrap();
    store
        .report()
        .record_delivery("2026-W48", "mail", DeliveryState::Delivered, None, now)
        .await
        .unwrap();
    let seen = store
        .report()
        .delivery("2026-W48", "mail")
        .await
        .unwrap()
        .unwrap();
    assert!(seen.delivered);
    assert_eq!(seen.attempts, 2);
    assert_eq!(seen.last_error, None);
}
