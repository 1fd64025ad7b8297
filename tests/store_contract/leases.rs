//! Per-(server, job) leases and the committed health probe (from the SQLite backend's
//! tests, run on both backends).

use chrono::{DateTime, TimeZone, Utc};
use keywarden::model::{JobKind, Lease};
use keywarden::store::{LeaseGrant, Store};

use super::Ctx;

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0).unwrap()
}

fn lease(holder: &str, minute: u32, until: u32) -> Lease {
    Lease {
        server: "fra-1".into(),
        job: JobKind::Quota,
        holder: holder.into(),
        acquired_at: at(minute),
        expires_at: at(until),
    }
}

async fn grant(store: &Store, wanted: Lease) -> LeaseGrant {
    store.leases().acquire(&wanted).await.unwrap()
}

pub async fn leases_keep_processes_apart_and_expire(ctx: &Ctx) {
    let first = ctx.store.clone();
    // A second handle on the same store: another process.
    let second = ctx.reopen().await;
    assert_eq!(grant(&first, lease("a", 0, 2)).await, LeaseGrant::Granted);
    let LeaseGrant::HeldBy(held) = grant(&second, lease("b", 1, 3)).await else {
        panic!("b must not get a's lease");
    };
    assert_eq!((held.holder.as_str(), held.expires_at), ("a", at(2)));
    // Other jobs are free.
    let other = Lease {
        job: JobKind::Health,
        ..lease("b", 1, 3)
    };
    assert_eq!(grant(&second, other).await, LeaseGrant::Granted);
    // The holder renews it; its first taking stays.
    assert_eq!(grant(&first, lease("a", 1, 4)).await, LeaseGrant::Granted);
    let LeaseGrant::HeldBy(held) = grant(&second, lease("b", 3, 5)).await else {
        panic!("renewed until minute 4");
    };
    assert_eq!((held.acquired_at, held.expires_at), (at(0), at(4)));
    // Expired (the holder died): taken over; the old holder's release leaves it alone.
    assert_eq!(grant(&second, lease("b", 4, 6)).await, LeaseGrant::Granted);
    first
        .leases()
        .release("fra-1", JobKind::Quota, "a")
        .await
        .unwrap();
    assert!(matches!(
        grant(&first, lease("a", 5, 7)).await,
        LeaseGrant::HeldBy(Lease { ref holder, .. }) if holder == "b"
    ));
    second
        .leases()
        .release("fra-1", JobKind::Quota, "b")
        .await
        .unwrap();
    assert_eq!(grant(&first, lease("a", 5, 7)).await, LeaseGrant::Granted);
}

pub async fn concurrent_takers_get_one_lease(ctx: &Ctx) {
    let mut handles = Vec::new();
    for n in 0..8 {
        let store = ctx.reopen().await;
        handles.push(tokio::spawn(async move {
            grant(&store, lease(&format!("taker-{n}"), 0, 5)).await
        }));
    }
    let mut granted = 0;
    for handle in handles {
        if handle.await.unwrap() == LeaseGrant::Granted {
            granted += 1;
        }
    }
    assert_eq!(
        granted, 1,
        "exactly one of eight concurrent takers holds it"
    );
}

pub async fn the_health_probe_commits_a_write(ctx: &Ctx) {
    ctx.store.check_writable().await.unwrap();
    ctx.store.check_writable().await.unwrap();
    // Committed: a row another connection can count.
    let rows = ctx
        .exec("UPDATE store_probe SET writes = writes WHERE writes = 2")
        .await
        .unwrap();
    assert_eq!(rows, 1, "two committed probes");
}
