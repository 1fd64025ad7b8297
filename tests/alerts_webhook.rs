//! Webhooks to a loopback receiver (tests/support/hooks.rs), with a manual clock:
//! the signed json schema, Slack and Telegram bodies against fixtures, the alert
//! lifecycle (repeat, resolved, severity change, grouping, inhibition), a flood under
//! the rate limit, `alert-test`, and secrets never leaking.

mod support;

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use keywarden::alert::SinkOptions;
use keywarden::config::{JobKind, Severity};
use keywarden::model::FindingKind;
use serde_json::Value;
use support::alerts::{Harness, eventually, finding, settle};
use support::hooks::{Answer, Receiver};
use support::within;

const HMAC_SECRET: &str = "hook-secret-4b1e9a";
const HEADER_TOKEN: &str = "hdr-token-0d5c77";
const BOT_TOKEN: &str = "123456:AAbot-token-e83f";

fn json_hook(hook: &Receiver, extra: &str) -> String {
    format!(
        "[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\nsecret = \"{HMAC_SECRET}\"\nheaders = {{ X-Api-Token = \"{HEADER_TOKEN}\" }}\n{extra}\n",
        hook.url("/hook")
    )
}

fn bodies(hook: &Receiver) -> Vec<Value> {
    hook.requests().iter().map(|r| r.json()).collect()
}

#[tokio::test]
async fn the_json_body_is_signed_and_follows_schema_v1() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&format!(
        "[alerts]\ngroup_wait = \"0s\"\n{}",
        json_hook(&hook, "")
    ));
    h.start(&SinkOptions::default());
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    )
    .await;
    within(
        "the hook",
        eventually("one request", || hook.requests().len() == 1),
    )
    .await;
    let request = &hook.requests()[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("x-api-token").as_deref(), Some(HEADER_TOKEN));
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    // Verify the signature the way docs/alerts.md tells receivers to.
    let timestamp = request.header("x-keywarden-timestamp").expect("timestamp");
    assert_eq!(timestamp, "1795860000");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(request.header("x-keywarden-signature"), Some(expected));
    let body = request.json();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["version", "status", "server", "alerts", "sent_at"])
    );
    assert_eq!(body["version"], 1);
    assert_eq!(body["status"], "firing");
    assert_eq!(body["server"], "fra-1");
    assert_eq!(body["sent_at"], "2026-11-28T10:00:00Z");
    let alert = &body["alerts"][0];
    let keys: BTreeSet<&str> = alert
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "fingerprint",
            "kind",
            "severity",
            "status",
            "summary",
            "details",
            "started_at",
            "ended_at"
        ])
    );
    assert_eq!(alert["fingerprint"], "fra-1/config_drift/");
    assert_eq!(alert["kind"], "config_drift");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["ended_at"], Value::Null);
    h.stop().await;
}

fn fixture(name: &str, actual: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alerts")
        .join(name);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).unwrap();
    assert_eq!(
        actual, &expected,
        "{name} differs (UPDATE_FIXTURES=1 rewrites it)"
    );
}

#[tokio::test]
async fn slack_and_telegram_bodies_match_the_fixtures() {
    let hook = Receiver::start().await;
    let text = format!(
        "[alerts]\ngroup_wait = \"0s\"\n[[alerts.webhook]]\nname = \"slack\"\nformat = \"slack\"\nurl = \"{}\"\n[[alerts.webhook]]\nname = \"tg\"\nformat = \"telegram\"\nchat_id = \"-1001234567890\"\nurl = \"{}\"\n",
        hook.url("/services/T0/B0/slack-token"),
        hook.url(&format!("/bot{BOT_TOKEN}/sendMessage"))
    );
    let mut h = Harness::new(&text);
    h.start(&SinkOptions::default());
    let mut drift = finding(
        "fra-1",
        FindingKind::ConfigDriftPersists,
        Severity::Critical,
    );
    drift.summary =
        "fra-1: config.json still differs from the keys after a sync <2 uuids> & more".into();
    let unconfirmed = finding("fra-1", FindingKind::RealityUnconfirmed, Severity::Warning);
    h.run("fra-1", JobKind::ConfigSync, vec![drift, unconfirmed])
        .await;
    within(
        "both sinks",
        eventually("two requests", || hook.requests().len() == 2),
    )
    .await;
    let requests = hook.requests();
    let slack = requests
        .iter()
        .find(|r| r.path.starts_with("/services"))
        .unwrap();
    let telegram = requests
        .iter()
        .find(|r| r.path.ends_with("/sendMessage"))
        .unwrap();
    fixture("slack.json", &slack.json());
    fixture("telegram.json", &telegram.json());
    h.stop().await;
}

fn hook_config(hook: &Receiver, alerts: &str) -> String {
    format!("[alerts]\n{alerts}\n{}", json_hook(hook, ""))
}

#[tokio::test]
async fn a_firing_alert_repeats_only_after_repeat_interval() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&hook_config(
        &hook,
        "group_wait = \"0s\"\nrepeat_interval = \"1h\"",
    ));
    h.start(&SinkOptions::default());
    let run = || {
        h.run(
            "fra-1",
            JobKind::ConfigSync,
            vec![finding(
                "fra-1",
                FindingKind::ConfigDrift,
                Severity::Warning,
            )],
        )
    };
    run().await;
    within("first", eventually("one", || hook.requests().len() == 1)).await;
    for _ in 0..5 {
        h.advance(10 * 60);
        run().await;
        settle().await;
    }
    assert_eq!(hook.requests().len(), 1, "nothing within the hour");
    h.advance(10 * 60);
    run().await;
    within("repeat", eventually("two", || hook.requests().len() == 2)).await;
    settle().await;
    assert_eq!(hook.requests().len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_resolved_alert_is_announced_as_resolved() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&hook_config(&hook, "group_wait = \"0s\""));
    h.start(&SinkOptions::default());
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    )
    .await;
    within("firing", eventually("one", || hook.requests().len() == 1)).await;
    h.advance(300);
    h.run("fra-1", JobKind::ConfigSync, vec![]).await;
    within("resolved", eventually("two", || hook.requests().len() == 2)).await;
    let body = &bodies(&hook)[1];
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["status"], "resolved");
    assert_eq!(body["alerts"][0]["started_at"], "2026-11-28T10:00:00Z");
    assert_eq!(body["alerts"][0]["ended_at"], "2026-11-28T10:05:00Z");
    h.advance(300);
    h.run("fra-1", JobKind::ConfigSync, vec![]).await;
    settle().await;
    assert_eq!(hook.requests().len(), 2, "resolved once");
    h.stop().await;
}

#[tokio::test]
async fn an_escalation_is_sent_at_once() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&hook_config(&hook, "group_wait = \"30s\""));
    h.start(&SinkOptions::default());
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    )
    .await;
    h.advance(30);
    within("firing", eventually("one", || hook.requests().len() == 1)).await;
    h.advance(60);
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Critical,
        )],
    )
    .await;
    // No clock movement needed: a severity change does not wait for group_wait.
    within(
        "escalated",
        eventually("two", || hook.requests().len() == 2),
    )
    .await;
    assert_eq!(bodies(&hook)[1]["alerts"][0]["severity"], "critical");
    h.stop().await;
}

#[tokio::test]
async fn findings_of_one_run_within_group_wait_go_out_as_one_digest() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&hook_config(&hook, "group_wait = \"10s\""));
    h.start(&SinkOptions::default());
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![
            finding(
                "fra-1",
                FindingKind::ConfigDriftPersists,
                Severity::Critical,
            ),
            finding("fra-1", FindingKind::SyncFailed, Severity::Warning),
        ],
    )
    .await;
    h.advance(4);
    h.run(
        "fra-1",
        JobKind::Reality,
        vec![finding(
            "fra-1",
            FindingKind::RealityUnconfirmed,
            Severity::Warning,
        )],
    )
    .await;
    settle().await;
    assert!(hook.requests().is_empty(), "held for group_wait");
    h.advance(6);
    within("digest", eventually("one", || hook.requests().len() == 1)).await;
    settle().await;
    assert_eq!(hook.requests().len(), 1);
    let body = &bodies(&hook)[0];
    assert_eq!(body["alerts"].as_array().unwrap().len(), 3);
    assert_eq!(body["server"], "fra-1");
    h.stop().await;
}

#[tokio::test]
async fn alerts_of_an_unreachable_server_are_held_then_released_or_dropped() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&hook_config(&hook, "group_wait = \"0s\""));
    h.start(&SinkOptions::default());
    h.run(
        "fra-1",
        JobKind::Health,
        vec![finding(
            "fra-1",
            FindingKind::ServerUnreachable,
            Severity::Critical,
        )],
    )
    .await;
    within("down", eventually("one", || hook.requests().len() == 1)).await;
    h.advance(60);
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDriftPersists,
            Severity::Critical,
        )],
    )
    .await;
    h.run(
        "fra-1",
        JobKind::Reality,
        vec![finding(
            "fra-1",
            FindingKind::RealityUnconfirmed,
            Severity::Warning,
        )],
    )
    .await;
    h.advance(60);
    h.run("fra-1", JobKind::Reality, vec![]).await;
    h.advance(60);
    settle().await;
    assert_eq!(hook.requests().len(), 1, "held while unreachable");
    h.run("fra-1", JobKind::Health, vec![]).await;
    within("released", eventually("two", || hook.requests().len() == 2)).await;
    settle().await;
    assert_eq!(hook.requests().len(), 2);
    let body = &bodies(&hook)[1];
    let kinds: Vec<(&str, &str)> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    // The drift is released; the Reality alert ended while held: dropped.
    assert_eq!(
        kinds,
        vec![
            ("server_unreachable", "resolved"),
            ("config_drift_persists", "firing")
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_flood_stays_within_the_rate_limit_and_loses_nothing() {
    let hook = Receiver::start().await;
    let mut h = Harness::new(&format!(
        "[alerts]\ngroup_wait = \"0s\"\n{}",
        json_hook(&hook, "rate_limit_per_minute = 20")
    ));
    // 200 findings at once, on 200 servers (one server's findings are one message anyway).
    for n in 0..200 {
        let server = format!("srv-{n:03}");
        h.run(
            &server,
            JobKind::ConfigSync,
            vec![finding(
                &server,
                FindingKind::ConfigDrift,
                Severity::Warning,
            )],
        )
        .await;
    }
    h.start(&SinkOptions::default());
    let alerts = |hook: &Receiver| -> usize {
        bodies(hook)
            .iter()
            .map(|b| b["alerts"].as_array().unwrap().len())
            .sum()
    };
    within(
        "the flood",
        eventually("200 alerts", || alerts(&hook) == 200),
    )
    .await;
    settle().await;
    let messages = hook.requests().len();
    assert!(messages <= 20, "{messages} messages");
    let digest = bodies(&hook)
        .into_iter()
        .find(|b| b["alerts"].as_array().unwrap().len() > 1)
        .expect("a digest");
    assert_eq!(digest["server"], Value::Null, "spans several servers");
    let fingerprints: BTreeSet<String> = bodies(&hook)
        .iter()
        .flat_map(|b| b["alerts"].as_array().unwrap().clone())
        .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fingerprints.len(), 200, "each exactly once");
    h.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let hook = Receiver::start().await;
    hook.queue(vec![Answer {
        status: 429,
        retry_after: Some("120".into()),
        body: String::new(),
    }]);
    let mut h = Harness::new(&hook_config(&hook, "group_wait = \"0s\""));
    h.start(&SinkOptions::default());
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    )
    .await;
    within("429", eventually("one", || hook.requests().len() == 1)).await;
    h.advance(100);
    settle().await;
    assert_eq!(hook.requests().len(), 1, "not before Retry-After");
    h.advance(20);
    within("retry", eventually("two", || hook.requests().len() == 2)).await;
    h.stop().await;
}

#[tokio::test]
async fn alert_test_reports_per_sink_and_exits_2_unless_all_delivered() {
    let hook = Receiver::start().await;
    let broken = Receiver::start().await;
    broken.always(Some(Answer::status(404)));
    let text = format!(
        "{}[[alerts.webhook]]\nname = \"broken\"\nurl = \"{}\"\n",
        json_hook(&hook, ""),
        broken.url("/gone")
    );
    let h = Harness::new(&text);
    let options = SinkOptions::default();
    let code = keywarden::commands::alert_test::run_with(&h.config, None, &options)
        .await
        .unwrap();
    assert_eq!(code, 2);
    let code = keywarden::commands::alert_test::run_with(&h.config, Some("hook"), &options)
        .await
        .unwrap();
    assert_eq!(code, 0);
    let code = keywarden::commands::alert_test::run_with(&h.config, Some("nope"), &options)
        .await
        .unwrap();
    assert_eq!(code, 2);
    assert_eq!(hook.requests().len(), 2);
    assert_eq!(bodies(&hook)[0]["alerts"][0]["kind"], "test");
    // Bookkept, never retried.
    let counts = h.store.alerts().counts().await.unwrap();
    let of = |sink: &str| counts.iter().find(|c| c.sink == sink).unwrap().clone();
    assert_eq!((of("hook").delivered, of("hook").pending), (2, 0));
    assert_eq!((of("broken").dropped, of("broken").pending), (1, 0));
}

#[tokio::test]
async fn the_daemons_sink_task_does_not_poll_an_idle_outbox_and_delivers_when_woken() {
    use keywarden::alert::{ALONE_MAX_IDLE, DispatchOptions, Dispatcher, Pipeline};
    use std::sync::Arc;
    use std::time::Duration;

    // The only agent's options: a look at the outbox every 20 s, not 5 s, unless woken
    // or something is due.
    let options = DispatchOptions::for_daemon(Duration::from_secs(3600), false);
    assert_eq!(options.max_idle, ALONE_MAX_IDLE);
    assert!(DispatchOptions::for_daemon(Duration::from_secs(3600), true).max_idle < ALONE_MAX_IDLE);

    let hook = Receiver::start().await;
    let h = Harness::new(&hook_config(&hook, "group_wait = \"0s\""));
    let dispatcher = Dispatcher::start(
        h.pipeline.clone(),
        h.sinks(&SinkOptions::default()),
        options,
    );
    // A notice of the daemon's own pipeline wakes the sink task: sent at once (and the
    // task is past its first look at the outbox).
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    )
    .await;
    within(
        "delivery of the daemon's own notice",
        eventually("a notice delivered", || hook.requests().len() == 1),
    )
    .await;
    // Another process on the same store (`check --notify`) queues a notice: its own
    // pipeline, whose wake-up does not reach the daemon's sink task.
    let other = Arc::new(Pipeline::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        &h.config.alerts,
    ));
    h.run_through(
        &other,
        "fra-1",
        JobKind::Reality,
        vec![finding("fra-1", FindingKind::SyncFailed, Severity::Warning)],
    )
    .await;
    assert_eq!(h.store.alerts().pending("hook").await.unwrap().len(), 1);
    // Nothing woke the sink task and nothing of its own is due: it sleeps (with the
    // tests' usual 20 ms look, it would have sent by now).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 1, "the sink task polled the outbox");
    // Woken (or at its next look): the notice goes out.
    h.pipeline.wake_all();
    within(
        "delivery after the wake-up",
        eventually("the other notice delivered", || hook.requests().len() == 2),
    )
    .await;
    assert!(dispatcher.shutdown(Duration::from_secs(5)).await);
}
