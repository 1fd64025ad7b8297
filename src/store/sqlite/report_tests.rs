//! The report's tables: daily usage adds up per day and key and is pruned, availability
//! counts checks per hour, deliveries count attempts.

use chrono::{NaiveDate, TimeZone, Timelike, Utc};

use super::super::SqliteStore;
use super::add_daily_usage;
use crate::model::report::{AvailabilitySample, AvailabilitySeries, DailyUsage, DeliveryState};
use crate::store::{DAILY_KEPT_DAYS, ReportLog};

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    (dir, store)
}

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

/// What a quota commit does with the run's daily usage.
fn add(store: &SqliteStore, server: &str, rows: &[DailyUsage]) {
    store
        .db
        .with(|conn| {
            let tx = conn.transaction()?;
            add_daily_usage(&tx, server, rows)?;
            tx.commit()
        })
        .unwrap();
}

#[tokio::test]
async fn daily_usage_adds_up_per_day_and_key() {
    let (_dir, store) = store();
    add(&store, "fra-1", &[usage(2, "u1", 100), usage(2, "u2", 5)]);
    add(&store, "fra-1", &[usage(2, "u1", 50), usage(3, "u1", 7)]);
    add(&store, "ams-2", &[usage(3, "u9", 1), usage(3, "u0", 0)]);
    let rows = store.daily_usage(day(2), day(3)).await.unwrap();
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
    assert_eq!(store.daily_usage(day(3), day(3)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn daily_usage_is_pruned_after_retention() {
    let (_dir, store) = store();
    add(&store, "fra-1", &[usage(1, "u1", 100)]);
    let later = day(1) + chrono::Duration::days(DAILY_KEPT_DAYS + 1);
    let row = DailyUsage {
        day: later,
        ..usage(1, "u1", 1)
    };
    add(&store, "fra-1", &[row]);
    let rows = store.daily_usage(day(1), later).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].day, later);
}

#[tokio::test]
async fn availability_counts_checks_per_hour() {
    let (_dir, store) = store();
    let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap();
    let api = |up| AvailabilitySample {
        series: AvailabilitySeries::Api,
        up,
    };
    for (at, up) in [(at(10, 0), true), (at(10, 30), false), (at(11, 59), true)] {
        store
            .record_availability("fra-1", at, &[api(up)])
            .await
            .unwrap();
    }
    let rows = store.availability(at(10, 0), at(12, 0)).await.unwrap();
    let seen: Vec<(u32, u64, u64)> = rows
        .iter()
        .map(|r| (r.hour.hour(), r.checks, r.up))
        .collect();
    assert_eq!(seen, vec![(10, 2, 1), (11, 1, 1)]);
    let later = store.availability(at(12, 0), at(13, 0)).await.unwrap();
    assert!(later.is_empty());
}

#[tokio::test]
async fn deliveries_count_attempts() {
    let (_dir, store) = store();
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
    assert_eq!(store.delivery("2026-W48", "mail").await.unwrap(), None);
    let failed = DeliveryState::Failed;
    store
        .record_delivery("2026-W48", "mail", failed, Some("smtp: 451"), now)
        .await
        .unwrap();
    store
        .record_delivery("2026-W48", "mail", DeliveryState::Delivered, None, now)
        .await
        .unwrap();
    let seen = store.delivery("2026-W48", "mail").await.unwrap().unwrap();
    assert!(seen.delivered);
    assert_eq!(seen.attempts, 2);
    assert_eq!(seen.last_error, None);
}
