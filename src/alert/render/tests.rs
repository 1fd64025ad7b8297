//! Rendering with fixed inputs. The Slack and Telegram bodies are also compared with
//! fixtures in tests/alert_render.rs.

use chrono::{DateTime, TimeZone, Utc};

use super::chat::{self, TELEGRAM_LIMIT};
use super::{email, json};
use crate::alert::model::{Alert, AlertStatus, Item, Message, Reason};
use crate::config::Severity;

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn item(server: &str, kind: &str, severity: Severity, status: AlertStatus) -> Item {
    Item {
        reason: if status == AlertStatus::Resolved {
            Reason::Resolved
        } else {
            Reason::New
        },
        alert: Alert {
            fingerprint: format!("{server}/{kind}/config.json"),
            server: server.into(),
            kind: kind.into(),
            subject: "config.json".into(),
            severity,
            status,
            summary: format!("{server}: something <odd> & new"),
            details: "Seen: a\nDone: b\nNext: c".into(),
            started_at: at(0),
            ended_at: (status == AlertStatus::Resolved).then(|| at(30)),
        },
    }
}

const BERLIN: chrono_tz::Tz = chrono_tz::Europe::Berlin;

#[test]
fn subjects() {
    let one = Message::new(vec![item(
        "fra-1",
        "config_drift_persists",
        Severity::Critical,
        AlertStatus::Firing,
    )]);
    assert_eq!(
        email::subject(&one),
        "[keywarden] CRITICAL fra-1: config drift persists"
    );
    let digest = Message::new(vec![
        item(
            "fra-1",
            "config_drift_persists",
            Severity::Critical,
            AlertStatus::Firing,
        ),
        item(
            "fra-1",
            "reality_unconfirmed",
            Severity::Warning,
            AlertStatus::Firing,
        ),
        item("fra-1", "api_error", Severity::Warning, AlertStatus::Firing),
    ]);
    assert_eq!(
        email::subject(&digest),
        "[keywarden] fra-1: 3 alerts (1 critical)"
    );
    let resolved = Message::new(vec![item(
        "fra-1",
        "config_drift",
        Severity::Warning,
        AlertStatus::Resolved,
    )]);
    assert_eq!(
        email::subject(&resolved),
        "[keywarden] RESOLVED fra-1: config drift"
    );
    let spread = Message::new(vec![
        item(
            "fra-1",
            "config_drift",
            Severity::Warning,
            AlertStatus::Firing,
        ),
        item(
            "ams-1",
            "config_drift",
            Severity::Warning,
            AlertStatus::Resolved,
        ),
    ]);
    assert_eq!(
        email::subject(&spread),
        "[keywarden] 2 servers: 2 alerts (1 resolved)"
    );
}

#[test]
fn the_email_body_says_what_was_seen_done_and_next_in_local_time() {
    let message = Message::new(vec![
        item(
            "fra-1",
            "config_drift_persists",
            Severity::Critical,
            AlertStatus::Firing,
        ),
        item(
            "fra-1",
            "config_drift",
            Severity::Warning,
            AlertStatus::Resolved,
        ),
    ]);
    let body = email::body(&message, BERLIN, at(31));
    for expected in [
        "2 alerts: 1 firing, 1 resolved.",
        "CRITICAL fra-1: config drift persists",
        "Firing since 2026-11-28 11:00:00 CET.",
        "  Seen: a\n  Done: b\n  Next: c",
        "RESOLVED fra-1: config drift",
        "Resolved at 2026-11-28 11:30:00 CET (firing since 2026-11-28 11:00:00 CET)",
        "Sent by keywarden at 2026-11-28 11:31:00 CET. Times are in Europe/Berlin.",
    ] {
        assert!(
            body.contains(expected),
            "{expected:?} missing from:\n{body}"
        );
    }
}

#[test]
fn the_json_body_is_version_1() {
    let message = Message::new(vec![item(
        "fra-1",
        "config_drift",
        Severity::Warning,
        AlertStatus::Resolved,
    )]);
    let value: serde_json::Value =
        serde_json::from_slice(&json::to_bytes(&message, at(31))).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "version": 1,
            "status": "resolved",
            "server": "fra-1",
            "alerts": [{
                "fingerprint": "fra-1/config_drift/config.json",
                "kind": "config_drift",
                "severity": "warning",
                "status": "resolved",
                "summary": "fra-1: something <odd> & new",
                "details": "Seen: a\nDone: b\nNext: c",
                "started_at": "2026-11-28T10:00:00Z",
                "ended_at": "2026-11-28T10:30:00Z"
            }],
            "sent_at": "2026-11-28T10:31:00Z"
        })
    );
}

#[test]
fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
    // printf '%s' '1764324000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
    assert_eq!(
        json::signature(b"s3cret", 1_764_324_000, br#"{"a":1}"#),
        "sha256=fe3da02a56e5be646d689bf2e2ec34803a92c22aa19410da7c0c0ac59294658b"
    );
}

#[test]
fn chat_texts_escape_markup() {
    assert_eq!(chat::escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    let message = Message::new(vec![item(
        "fra-1",
        "config_drift",
        Severity::Warning,
        AlertStatus::Firing,
    )]);
    let slack = chat::slack(&message, BERLIN);
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("something &lt;odd&gt; &amp; new")
    );
    let telegram = chat::telegram(&message, BERLIN, "-100123");
    assert_eq!(telegram.len(), 1);
    assert_eq!(telegram[0]["parse_mode"], "HTML");
    assert!(
        telegram[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("<b>[keywarden] WARNING fra-1: config drift</b>\n")
    );
}

#[test]
fn telegram_messages_split_at_the_limit_without_breaking_entities() {
    let mut items = Vec::new();
    for n in 0..60 {
        let mut it = item(
            &format!("srv-{n}"),
            "config_drift",
            Severity::Warning,
            AlertStatus::Firing,
        );
        it.alert.details = format!("Seen: {}\nDone: nothing", "<&>".repeat(40));
        items.push(it);
    }
    // One enormous line too.
    items[0].alert.summary = "&".repeat(10_000);
    let message = Message::new(items);
    let texts = chat::telegram_texts(&message, BERLIN, TELEGRAM_LIMIT);
    assert!(texts.len() > 3, "{}", texts.len());
    let mut joined = String::new();
    for text in &texts {
        assert!(text.encode_utf16().count() <= TELEGRAM_LIMIT);
        // Every tag opened is closed, no entity is cut.
        assert_eq!(text.matches("<b>").count(), text.matches("</b>").count());
        assert_eq!(text.matches("<i>").count(), text.matches("</i>").count());
        let stripped = text
            .replace("&amp;", "")
            .replace("&lt;", "")
            .replace("&gt;", "");
        assert!(!stripped.contains('&'), "a cut entity in {text}");
        joined.push_str(text);
    }
    // The huge summary, the details, and "&" in the 59 other summaries.
    assert_eq!(joined.matches("&amp;").count(), 10_000 + 60 * 40 + 59);
    for n in 0..60 {
        assert!(joined.contains(&format!("WARNING srv-{n}: config drift")));
    }
}
