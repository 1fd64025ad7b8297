//! The data plane's memories (from the SQLite backend's tests, run on both backends).

use chrono::{DateTime, TimeZone, Utc};
use keywarden::model::dataplane::{
    PortRecord, PortState, RealityMemory, StoredLink, XrayMemory, XrayState,
};
use keywarden::store::DataplaneCommit;

use super::Ctx;

fn at(s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, s).unwrap()
}

fn port(endpoint: &str, state: PortState) -> PortRecord {
    PortRecord {
        endpoint: endpoint.into(),
        state,
        detail: String::new(),
        latency_ms: Some(3),
        probed_at: at(1),
    }
}

pub async fn a_run_round_trips_and_forgets_what_is_gone(ctx: &Ctx) {
    let store = ctx.store.clone();
    let dataplane = store.dataplane();
    let link = StoredLink {
        key_id: "k1".into(),
        key_sig: "u1|10001|ab|1".into(),
        host: "127.0.0.1".into(),
        port: 10001,
        sni: Some("www.example.com".into()),
        fetched_at: at(0),
    };
    let endpoints = vec!["127.0.0.1:10001".to_string(), "127.0.0.1:10002".to_string()];
    let probed = vec![
        port("127.0.0.1:10001", PortState::Open),
        port("127.0.0.1:10002", PortState::CertInvalid),
    ];
    let first = DataplaneCommit {
        fetched: vec![link.clone()],
        forgotten: vec![],
        probed: probed.clone(),
        endpoints: endpoints.clone(),
        cursor: Some("127.0.0.1:10002".into()),
        now: at(2),
    };
    dataplane.commit("fra-1", first).await.unwrap();
    assert_eq!(dataplane.links("fra-1").await.unwrap(), [link]);
    assert_eq!(dataplane.ports("fra-1").await.unwrap(), probed);
    assert_eq!(
        dataplane.memory("fra-1").await.unwrap().cursor.as_deref(),
        Some("127.0.0.1:10002")
    );
    let second = DataplaneCommit {
        fetched: vec![],
        forgotten: vec!["k1".to_string()],
        probed: vec![],
        endpoints: endpoints[..1].to_vec(),
        cursor: None,
        now: at(3),
    };
    dataplane.commit("fra-1", second).await.unwrap();
    assert!(dataplane.links("fra-1").await.unwrap().is_empty());
    assert_eq!(dataplane.ports("fra-1").await.unwrap(), probed[..1]);
    assert_eq!(dataplane.memory("fra-1").await.unwrap().cursor, None);
}

pub async fn memories_round_trip_and_an_unknown_state_is_an_error(ctx: &Ctx) {
    let store = ctx.store.clone();
    let xray = XrayMemory {
        state: Some(XrayState::Stopped),
        stopped_reads: 2,
        first_stopped_at: Some(at(1)),
        checked_at: Some(at(2)),
    };
    let servers = store.servers();
    assert_eq!(servers.xray("fra-1").await.unwrap(), XrayMemory::default());
    servers.save_xray("fra-1", &xray, at(2)).await.unwrap();
    assert_eq!(servers.xray("fra-1").await.unwrap(), xray);
    let reality = RealityMemory {
        confirmations: 3,
        first_seen: Some(at(0)),
        signature: "in-1: bad key".into(),
        fixed_signature: Some("in-1: bad key".into()),
        fixed_at: Some(at(1)),
    };
    store
        .reality()
        .save("fra-1", &reality, at(3))
        .await
        .unwrap();
    assert_eq!(store.reality().memory("fra-1").await.unwrap(), reality);
    drop(store);
    ctx.exec("UPDATE xray_state SET state = 'paused'")
        .await
        .unwrap();
    let store = ctx.reopen().await;
    let error = store.servers().xray("fra-1").await.unwrap_err();
    assert!(error.to_string().contains("paused"), "{error}");
}
