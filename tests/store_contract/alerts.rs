//! The alert tables: states and the outbox survive a reopen, sink health round-trips,
//! an unknown stored name is an error.

use chrono::TimeZone;

use chrono::{DateTime, Utc};
use keywarden::model::Severity;
use keywarden::model::alert::{Alert, AlertState, Notice, OutboxCounts, SinkHealth};
use keywarden::model::alert::{AlertStatus, Reason};

use super::Ctx;

fn at(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + chrono::Duration::seconds(second)
}

fn state(server: &str) -> AlertState {
    AlertState {
        alert: Alert {
            fingerprint: format!("{server}/config_drift/"),
            server: server.into(),
            kind: "config_drift".into(),
            subject: String::new(),
            severity: Severity::Warning,
            status: AlertStatus::Firing,
            summary: "drift".into(),
            details: "Seen: a\nDone: b\nNext: c".into(),
            started_at: at(0),
            ended_at: None,
        },
        last_notified_at: Some(at(1)),
        last_notified_severity: Some(Severity::Warning),
        max_notified_severity: Some(Severity::Critical),
        held: true,
    }
}

pub async fn states_and_outbox_survive_a_reopen(ctx: &Ctx) {
    let store = ctx.store.clone();
    let s = state("fra-1");
    let notice = Notice {
        sink: "mail".into(),
        reason: Reason::New,
        alert: s.alert.clone(),
        due_at: at(10),
    };
    let ids = store
        .alerts()
        .save_plan(
            &[s.clone(), state("ams-1")],
            &[notice.clone(), notice],
            at(0),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    drop(store);
    let store = ctx.reopen().await;
    let alerts = store.alerts();
    assert_eq!(alerts.states("fra-1").await.unwrap(), vec![s.clone()]);
    let pending = alerts.pending("mail").await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].alert, s.alert);
    assert_eq!(pending[0].next_attempt_at, at(10));
    assert_eq!(pending[0].attempts, 0);
    assert!(alerts.pending("other").await.unwrap().is_empty());
    assert_eq!(alerts.oldest_pending().await.unwrap(), Some(at(0)));

    alerts
        .mark_retry(&[ids[0]], at(20), "connection refused")
        .await
        .unwrap();
    alerts.mark_delivered(&[ids[1]], at(21)).await.unwrap();
    let pending = alerts.pending("mail").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].next_attempt_at, at(20));
    assert_eq!(pending[0].last_error.as_deref(), Some("connection refused"));
    alerts
        .mark_dropped(&[ids[0]], at(22), "max_age", None)
        .await
        .unwrap();
    assert!(alerts.pending("mail").await.unwrap().is_empty());
    assert_eq!(alerts.oldest_pending().await.unwrap(), None);
    assert_eq!(
        alerts.counts().await.unwrap(),
        vec![OutboxCounts {
            sink: "mail".into(),
            pending: 0,
            delivered: 1,
            dropped: 1
        }]
    );
    assert_eq!(alerts.prune(at(22)).await.unwrap(), 1);
    assert_eq!(alerts.prune(at(23)).await.unwrap(), 1);
}

pub async fn sink_health_round_trips(ctx: &Ctx) {
    let store = ctx.store.clone();
    assert_eq!(
        store.alerts().sink_health("mail").await.unwrap(),
        SinkHealth {
            sink: "mail".into(),
            ..SinkHealth::default()
        }
    );
    let health = SinkHealth {
        sink: "mail".into(),
        failing: true,
        consecutive_failures: 3,
        last_error: Some("535 authentication refused".into()),
        last_attempt_at: Some(at(5)),
        last_success_at: None,
    };
    store.alerts().save_sink_health(&health).await.unwrap();
    assert_eq!(store.alerts().sink_health("mail").await.unwrap(), health);
}

pub async fn an_unknown_status_is_an_error_not_a_default(ctx: &Ctx) {
    let store = ctx.store.clone();
    store
        .alerts()
        .save_plan(&[state("fra-1")], &[], at(0))
        .await
        .unwrap();
    ctx.exec("UPDATE alert_state SET severity = 'fatal'")
        .await
        .unwrap();
    let error = store.alerts().states("fra-1").await.unwrap_err();
    assert!(
        matches!(error, keywarden::store::StoreError::Corrupt { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("\"fatal\""), "{error}");
}
