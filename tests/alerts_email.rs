//! Email through lettre to a real SMTP server on 127.0.0.1 (tests/support/smtp.rs):
//! STARTTLS with the test certificate and AUTH, plain SMTP, authentication refused,
//! a relay down then up, and a restart with undelivered notifications.

mod support;

use keywarden::alert::SinkOptions;
use keywarden::config::{JobKind, Severity};
use keywarden::model::FindingKind;
use support::alerts::{Harness, eventually, eventually_async, finding, settle};
use support::hooks::Receiver;
use support::smtp::{CERT, Security, SmtpServer};
use support::within;

const PASSWORD: &str = "smtp-pw-7c1d93e0";

fn email_sink(server: &SmtpServer, security: &str, auth: bool) -> String {
    let auth = if auth {
        format!("username = \"alerts@example.net\"\npassword = \"{PASSWORD}\"\n")
    } else {
        String::new()
    };
    format!(
        "[alerts]\ngroup_wait = \"0s\"\n[[alerts.email]]\nname = \"ops-mail\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"{security}\"\n{auth}from = \"keywarden <alerts@example.net>\"\nto = [\"admin@example.net\", \"oncall@example.net\"]\ntimeout = \"5s\"\n",
        server.addr.port()
    )
}

fn trust_test_cert() -> SinkOptions {
    SinkOptions {
        smtp_root_pem: Some(CERT.to_vec()),
        ..SinkOptions::default()
    }
}

#[tokio::test]
async fn starttls_with_auth_delivers_envelope_subject_and_body() {
    let smtp = SmtpServer::start(Security::Starttls, Some(("alerts@example.net", PASSWORD))).await;
    let mut h = Harness::new(&email_sink(&smtp, "starttls", true));
    h.start(&trust_test_cert());
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
    within(
        "the mail",
        eventually("one mail", || smtp.mails().len() == 1),
    )
    .await;
    let mail = &smtp.mails()[0];
    assert_eq!(mail.from, "alerts@example.net");
    assert_eq!(mail.to, vec!["admin@example.net", "oncall@example.net"]);
    assert_eq!(
        mail.auth,
        Some(("alerts@example.net".to_string(), PASSWORD.to_string()))
    );
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[keywarden] CRITICAL fra-1: config drift persists")
    );
    let body = mail.body();
    for expected in [
        "config_drift_persists on fra-1",
        "Firing since 2026-11-28 10:00:00 UTC.",
        "Seen: something.",
        "Done: nothing yet.",
        "Next: look at it.",
        "Fingerprint: fra-1/config_drift_persists/",
    ] {
        assert!(body.contains(expected), "{expected:?} not in:\n{body}");
    }
    assert!(!mail.data.contains(PASSWORD));
    h.stop().await;
}

#[tokio::test]
async fn plain_smtp_delivers() {
    let smtp = SmtpServer::start(Security::Plain, None).await;
    let mut h = Harness::new(&email_sink(&smtp, "none", false));
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
    within(
        "the mail",
        eventually("one mail", || smtp.mails().len() == 1),
    )
    .await;
    let mail = &smtp.mails()[0];
    assert_eq!(mail.to.len(), 2);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[keywarden] CRITICAL fra-1: server unreachable")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_refused_login_is_permanent_and_reported_once_to_the_other_sinks() {
    let smtp = SmtpServer::start(Security::Plain, Some(("alerts@example.net", "other"))).await;
    let hook = Receiver::start().await;
    let text = format!(
        "{}[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
        email_sink(&smtp, "none", true),
        hook.url("/hook")
    );
    let mut h = Harness::new(&text);
    h.start(&SinkOptions::default());
    for server in ["fra-1", "ams-1", "nyc-1"] {
        h.run(
            server,
            JobKind::ConfigSync,
            vec![finding(server, FindingKind::ConfigDrift, Severity::Warning)],
        )
        .await;
        settle().await;
    }
    within(
        "the hook",
        eventually("3 alerts + 1 notifications_failing", || {
            hook.requests().len() >= 4
        }),
    )
    .await;
    settle().await;
    let failing: Vec<_> = hook
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["alerts"][0]["kind"] == "notifications_failing")
        .collect();
    assert_eq!(failing.len(), 1, "reported once, not once per notification");
    assert_eq!(failing[0]["alerts"][0]["severity"], "critical");
    assert_eq!(failing[0]["server"], "keywarden");
    let details = failing[0]["alerts"][0]["details"].as_str().unwrap();
    assert!(details.contains("535"), "{details}");
    assert!(!details.contains(PASSWORD));
    assert!(smtp.mails().is_empty());
    let health = h.store.alerts().sink_health("ops-mail").await.unwrap();
    assert!(health.failing);
    assert!(!health.last_error.unwrap().contains(PASSWORD));
    // Nothing is retried after a permanent failure.
    assert!(
        h.store
            .alerts()
            .pending("ops-mail")
            .await
            .unwrap()
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test]
async fn a_relay_down_then_up_gets_each_notification_exactly_once() {
    let smtp = SmtpServer::start(Security::Plain, None).await;
    smtp.set_down(true);
    let mut h = Harness::new(&email_sink(&smtp, "none", false));
    h.start(&SinkOptions::default());
    for server in ["fra-1", "ams-1"] {
        h.run(
            server,
            JobKind::ConfigSync,
            vec![finding(server, FindingKind::ConfigDrift, Severity::Warning)],
        )
        .await;
    }
    let attempted = || async {
        h.store
            .alerts()
            .pending("ops-mail")
            .await
            .unwrap()
            .iter()
            .all(|r| r.attempts >= 1)
    };
    within(
        "first attempts",
        eventually_async("both attempted", attempted),
    )
    .await;
    // Down for a while: retries keep failing.
    for _ in 0..3 {
        h.advance(120);
        settle().await;
    }
    assert!(smtp.mails().is_empty());
    let pending = h.store.alerts().pending("ops-mail").await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|r| r.attempts >= 2), "{pending:?}");
    smtp.set_down(false);
    h.advance(120);
    within(
        "recovery",
        eventually("two mails", || smtp.mails().len() >= 2),
    )
    .await;
    h.advance(120);
    settle().await;
    h.advance(3600);
    settle().await;
    let subjects: Vec<String> = smtp
        .mails()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    let mut sorted = subjects.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "[keywarden] WARNING ams-1: config drift",
            "[keywarden] WARNING fra-1: config drift"
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn notifications_left_at_a_restart_arrive_after_it_once() {
    let smtp = SmtpServer::start(Security::Plain, None).await;
    smtp.set_down(true);
    let text = email_sink(&smtp, "none", false);
    let mut h = Harness::new(&text);
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
    let attempted = || async {
        h.store
            .alerts()
            .pending("ops-mail")
            .await
            .unwrap()
            .first()
            .is_some_and(|r| r.attempts >= 1)
    };
    within("an attempt", eventually_async("attempted", attempted)).await;
    h.stop().await;
    let Harness { dir, clock, .. } = h;
    // A new process: a new store handle on the same file, a new pipeline.
    smtp.set_down(false);
    let mut h = Harness::in_dir(dir, &text);
    h.clock.set(keywarden::clock::Clock::now(&clock));
    h.start(&SinkOptions::default());
    // The finding is still there at the next run: no second notice.
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
    h.advance(120);
    within(
        "after restart",
        eventually("the mail", || smtp.mails().len() == 1),
    )
    .await;
    h.advance(600);
    settle().await;
    assert_eq!(smtp.mails().len(), 1, "delivered once");
    h.stop().await;
}
