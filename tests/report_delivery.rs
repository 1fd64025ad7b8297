//! The scheduled usage report end to end: a real store with a week of traffic, actions,
//! findings and health samples; the report job at Monday 09:00 with a manual clock; real
//! SMTP to an in-process server and real HTTP to loopback receivers standing in for
//! Telegram, Slack (webhook and Web API) and a JSON webhook. Checks each request's shape,
//! the charts (PNG decodes, size, drawn pixels), retries and that nothing is sent twice.

mod support;

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use keywarden::alert::SinkOptions;
use keywarden::clock::{Clock, ManualClock};
use keywarden::model::report::{AvailabilitySample, AvailabilitySeries, DailyUsage};
use keywarden::model::{AuditAction, AuditEntry, AuditResult};
use keywarden::quota::ledger::{KeyInfo, Reading, adopt};
use keywarden::quota::plan::ServerMemory;
use keywarden::report::deliver::DeliveryOptions;
use keywarden::report::job::ReportJob;
use keywarden::store::{QuotaCommit, Store};
use support::hooks::{Answer, Receiver};
use support::smtp::{Security, SmtpServer};
use support::within;

const GIB: u64 = 1 << 30;
const TELEGRAM_TOKEN: &str = "123456:tg-token-9f8e7d";
const SLACK_TOKEN: &str = "xoxb-slack-token-4c3b2a";

fn utc(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

/// A week (23..=29 Nov 2026) of traffic on two servers, a sync, a finding, health checks.
async fn fill(store: &Store) {
    for (server, keys) in [("fra-1", ["alice", "bob"]), ("ams-2", ["carol", "dave"])] {
        let entries: Vec<_> = keys
            .iter()
            .map(|name| {
                let info = KeyInfo {
                    id: name,
                    uuid: name,
                    name,
                };
                let reading = Reading::Counter {
                    bytes: 85 * GIB,
                    connections: None,
                };
                adopt(&info, reading, utc(1, 0), utc(1, 0)).unwrap()
            })
            .collect();
        for (i, d) in (23..=29).enumerate() {
            let daily: Vec<DailyUsage> = keys
                .iter()
                .enumerate()
                .map(|(k, name)| DailyUsage {
                    day: day(d),
                    uuid: name.to_string(),
                    key_id: name.to_string(),
                    name: name.to_string(),
                    bytes: (i as u64 + 1) * GIB / (k as u64 + 1),
                })
                .collect();
            let commit = QuotaCommit {
                entries: entries.clone(),
                history: Vec::new(),
                intents: Vec::new(),
                memory: ServerMemory::default(),
                api_version: "1.0.0".into(),
                now: utc(d, 12),
                read_at: Some(utc(d, 12)),
                reread: Vec::new(),
                daily,
            };
            store.quota().commit(server, commit).await.unwrap();
            for hour in 0..24 {
                let up = !(server == "ams-2" && d == 25 && hour < 6);
                let sample = AvailabilitySample {
                    series: AvailabilitySeries::Api,
                    up,
                };
                store
                    .report()
                    .record_availability(server, utc(d, 0) + Duration::hours(hour), &[sample])
                    .await
                    .unwrap();
            }
        }
    }
    store
        .audit()
        .append(&AuditEntry {
            at: utc(24, 3),
            server: "fra-1".into(),
            action: AuditAction::Sync,
            target: "config.json".into(),
            result: AuditResult::Ok,
            detail: String::new(),
        })
        .await
        .unwrap();
}

struct Rig {
    _dir: tempfile::TempDir,
    smtp: SmtpServer,
    telegram: Receiver,
    slack: Receiver,
    json: Receiver,
    job: ReportJob,
    clock: ManualClock,
    config: Arc<keywarden::config::Config>,
}

async fn rig() -> Rig {
    keywarden::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(Security::Plain, None).await;
    let (telegram, slack, json) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let body = format!(
        r#"
[[servers]]
name = "fra-1"
url = "http://127.0.0.1:9/api"
api_key = "k"
[[servers]]
name = "ams-2"
url = "http://127.0.0.1:9/api"
api_key = "k"
[quotas]
limit = "100 GiB"
[[alerts.email]]
name = "mail"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "keywarden <kw@example.net>"
to = ["admin@example.net"]
timeout = "5s"
[[alerts.webhook]]
name = "tg"
url = "{telegram}"
format = "telegram"
chat_id = "-100777"
timeout = "5s"
[[alerts.webhook]]
name = "slack"
url = "{slack_hook}"
format = "slack"
slack_token = "{SLACK_TOKEN}"
slack_channel = "C0REPORTS"
timeout = "5s"
[[alerts.webhook]]
name = "hook"
url = "{json_hook}"
secret = "sign-me-please"
timeout = "5s"
[reports]
sinks = ["mail", "tg", "slack", "hook"]
top_keys = 3
"#,
        smtp_port = smtp.addr.port(),
        telegram = telegram.url(&format!("/bot{TELEGRAM_TOKEN}/sendMessage")),
        slack_hook = slack.url("/services/T1/B2/hooksecret"),
        json_hook = json.url("/report"),
    );
    let config = support::agent::config(dir.path(), &body);
    let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
    fill(&store).await;
    // Monday 30 Nov 2026, 09:00 UTC: the default schedule fires.
    let clock = ManualClock::new(utc(30, 9));
    let job = ReportJob {
        store,
        clock: Arc::new(clock.clone()),
        sinks: SinkOptions::default(),
        delivery: DeliveryOptions {
            slack_api: slack.url("/api/").parse().unwrap(),
        },
        metrics: None,
    };
    Rig {
        _dir: dir,
        smtp,
        telegram,
        slack,
        json,
        job,
        clock,
        config,
    }
}

/// A PNG of the chart size with something drawn on it.
fn assert_chart(png: &[u8], what: &str) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .expect(what);
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect(what);
    assert_eq!((info.width, info.height), (960, 440), "{what}");
    let drawn = pixels[..info.buffer_size()]
        .chunks(info.color_type.samples())
        .filter(|p| p.iter().any(|v| *v < 200))
        .count();
    assert!(drawn > 5_000, "{what}: only {drawn} drawn pixels");
}

/// A multipart/form-data body parsed as MIME.
fn form(request: &support::hooks::Request) -> Vec<(String, Vec<u8>, String)> {
    let content_type = request.header("content-type").expect("content type");
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    raw.extend_from_slice(&request.body);
    let parsed = mailparse::parse_mail(&raw).expect("multipart body");
    parsed
        .subparts
        .iter()
        .map(|part| {
            let disposition = part.get_content_disposition();
            let name = disposition.params.get("name").cloned().unwrap_or_default();
            (
                name,
                part.get_body_raw().unwrap(),
                part.ctype.mimetype.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_weekly_report_reaches_every_sink_once_with_its_charts() {
    let rig = rig().await;
    answer_slack(&rig);
    let deliveries = within("report", rig.job.run_due(&rig.config)).await;
    let outcomes: Vec<(&str, bool)> = deliveries
        .iter()
        .map(|d| (d.sink.as_str(), d.result.is_ok()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("mail", true),
            ("tg", true),
            ("slack", true),
            ("hook", true)
        ],
        "{deliveries:?}"
    );

    // Email: text + HTML with the charts inline by Content-ID.
    let mails = rig.smtp.mails();
    assert_eq!(mails.len(), 1);
    let mail = mailparse::parse_mail(mails[0].data.as_bytes()).expect("a MIME mail");
    let subject = mail
        .headers
        .iter()
        .find(|h| h.get_key() == "Subject")
        .unwrap()
        .get_value();
    assert!(
        subject.contains("Usage report, week 48 of 2026"),
        "{subject}"
    );
    assert_eq!(mail.ctype.mimetype, "multipart/alternative");
    let text = mail.subparts[0].get_body().unwrap();
    assert_eq!(mail.subparts[0].ctype.mimetype, "text/plain");
    assert!(
        text.contains("fra-1") && text.contains("TOP KEYS"),
        "{text}"
    );
    let related = &mail.subparts[1];
    assert_eq!(related.ctype.mimetype, "multipart/related");
    let html = related.subparts[0].get_body().unwrap();
    assert_eq!(related.subparts[0].ctype.mimetype, "text/html");
    let images = &related.subparts[1..];
    assert_eq!(images.len(), 2);
    for image in images {
        assert_eq!(image.ctype.mimetype, "image/png");
        let cid = image
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case("Content-ID"))
            .expect("a Content-ID")
            .get_value();
        let cid = cid.trim_matches(|c| c == '<' || c == '>');
        assert!(
            html.contains(&format!("src=\"cid:{cid}\"")),
            "{cid} not referenced"
        );
        assert_chart(&image.get_body_raw().unwrap(), cid);
    }

    // Telegram: two sendPhoto calls (multipart: chat id, caption within limits, a PNG),
    // then the text through sendMessage.
    let calls = rig.telegram.requests();
    let photos: Vec<_> = calls
        .iter()
        .filter(|r| r.path.ends_with("/sendPhoto"))
        .collect();
    assert_eq!(
        photos.len(),
        2,
        "{:?}",
        calls.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for request in &photos {
        assert_eq!(request.path, format!("/bot{TELEGRAM_TOKEN}/sendPhoto"));
        let fields = form(request);
        let field = |name: &str| {
            fields
                .iter()
                .find(|f| f.0 == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(field("chat_id").1, b"-100777");
        let caption = String::from_utf8(field("caption").1.clone()).unwrap();
        assert!(
            !caption.is_empty() && caption.encode_utf16().count() <= 1024,
            "{caption}"
        );
        assert_eq!(field("photo").2, "image/png");
        assert_chart(&field("photo").1, "telegram photo");
    }
    let first_caption = String::from_utf8(
        form(photos[0])
            .iter()
            .find(|f| f.0 == "caption")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    assert!(first_caption.contains("Traffic:"), "{first_caption}");
    let texts: Vec<_> = calls
        .iter()
        .filter(|r| r.path.ends_with("/sendMessage"))
        .collect();
    assert!(!texts.is_empty());
    let message = texts[0].json();
    assert_eq!(message["chat_id"], "-100777");
    assert_eq!(message["parse_mode"], "HTML");
    assert!(message["text"].as_str().unwrap().encode_utf16().count() <= 4096);

    // Slack: Block Kit to the webhook, then each chart uploaded with the bot token.
    let calls = rig.slack.requests();
    let hook = calls
        .iter()
        .find(|r| r.path == "/services/T1/B2/hooksecret")
        .expect("webhook call");
    let blocks = hook.json()["blocks"].as_array().unwrap().clone();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks
            .iter()
            .all(|b| b["text"]["text"].as_str().is_none_or(|t| t.len() <= 3000))
    );
    let uploads: Vec<_> = calls
        .iter()
        .filter(|r| r.path == "/api/files.getUploadURLExternal")
        .collect();
    assert_eq!(uploads.len(), 2);
    for call in calls.iter().filter(|r| r.path.starts_with("/api/")) {
        assert_eq!(
            call.header("authorization").as_deref(),
            Some(format!("Bearer {SLACK_TOKEN}").as_str())
        );
    }
    let stored: Vec<_> = calls
        .iter()
        .filter(|r| r.path.starts_with("/upload/"))
        .collect();
    assert_eq!(stored.len(), 2);
    for upload in stored {
        assert_chart(&upload.body, "slack upload");
    }
    let completes: Vec<_> = calls
        .iter()
        .filter(|r| r.path == "/api/files.completeUploadExternal")
        .collect();
    assert_eq!(completes.len(), 2);
    assert_eq!(completes[0].json()["channel_id"], "C0REPORTS");
    assert!(
        completes[0].json()["files"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("F")
    );

    // JSON webhook: the numbers, and each chart as base64 with its MIME type, signed.
    let calls = rig.json.requests();
    assert_eq!(calls.len(), 1);
    let doc = calls[0].json();
    assert_eq!(doc["kind"], "usage_report");
    assert_eq!(doc["report"]["period"]["key"], "2026-W48");
    let fra = &doc["report"]["traffic"]["servers"][0];
    assert_eq!(fra["server"], "fra-1");
    assert_eq!(fra["daily"].as_array().unwrap().len(), 7);
    assert_eq!(doc["report"]["actions"][0]["action"], "sync");
    let ams = &doc["report"]["availability"][1];
    assert_eq!(ams["server"], "ams-2");
    assert_eq!(ams["checks"], 168);
    assert_eq!(ams["up"], 162);
    assert_eq!(
        doc["report"]["near_quota"].as_array().unwrap().len(),
        4,
        "85% of 100 GiB each"
    );
    assert_eq!(doc["report"]["top_keys"].as_array().unwrap().len(), 3);
    for chart in doc["charts"].as_array().unwrap() {
        assert_eq!(chart["mime_type"], "image/png");
        let png = base64::engine::general_purpose::STANDARD
            .decode(chart["data_base64"].as_str().unwrap())
            .unwrap();
        assert_chart(&png, "json chart");
    }
    assert!(calls[0].header("x-keywarden-signature").is_some());

    // Delivered: the hourly retry sends nothing again.
    rig.clock.set(rig.clock.now() + Duration::hours(1));
    let again = within("report again", rig.job.run_due(&rig.config)).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(rig.smtp.mails().len(), 1);
    assert_eq!(rig.json.requests().len(), 1);
}

/// Slack's upload_url and file ids point back at the receiver.
fn answer_slack(rig: &Rig) {
    // The webhook post, then per chart: the upload URL, the upload, the completion.
    let mut queue = vec![Answer::status(200)];
    for n in 0..2 {
        queue.push(Answer {
            status: 200,
            retry_after: None,
            body: format!(
                "{{\"ok\":true,\"upload_url\":\"{}\",\"file_id\":\"F{n}\"}}",
                rig.slack.url(&format!("/upload/{n}"))
            ),
        });
        queue.push(Answer::status(200));
        queue.push(Answer {
            status: 200,
            retry_after: None,
            body: "{\"ok\":true}".into(),
        });
    }
    rig.slack.queue(queue);
}

#[tokio::test]
async fn a_failing_sink_is_retried_the_next_hour_and_others_are_not_resent() {
    let rig = rig().await;
    answer_slack(&rig);
    rig.json.queue(vec![Answer::status(503)]);
    let first = within("report", rig.job.run_due(&rig.config)).await;
    let failed: Vec<&str> = first
        .iter()
        .filter(|d| d.result.is_err())
        .map(|d| d.sink.as_str())
        .collect();
    assert_eq!(failed, ["hook"], "{first:?}");
    let error = first
        .iter()
        .find(|d| d.sink == "hook")
        .unwrap()
        .result
        .clone()
        .unwrap_err()
        .to_string();
    assert!(error.contains("503"), "{error}");
    rig.clock.set(utc(30, 10) + Duration::minutes(17));
    let retry = within("retry", rig.job.run_due(&rig.config)).await;
    let retried: Vec<(&str, bool)> = retry
        .iter()
        .map(|d| (d.sink.as_str(), d.result.is_ok()))
        .collect();
    assert_eq!(retried, [("hook", true)]);
    assert_eq!(rig.smtp.mails().len(), 1, "the mail went out once");
    let seen = rig
        .job
        .store
        .report()
        .delivery("2026-W48", "hook")
        .await
        .unwrap()
        .unwrap();
    assert!(seen.delivered);
    assert_eq!(seen.attempts, 2);
    // Tokens never reach an error or the store.
    for delivery in first.iter().chain(&retry) {
        if let Err(error) = &delivery.result {
            let text = error.to_string();
            assert!(
                !text.contains(SLACK_TOKEN) && !text.contains(TELEGRAM_TOKEN),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn the_daemon_schedules_the_report_and_its_hourly_retry_only_with_sinks() {
    let rig = rig().await;
    let runner = support::agent::runner(&rig.config, &rig.clock);
    let metrics = Arc::new(keywarden::metrics::Metrics::new(false));
    let reports = Arc::new(ReportJob {
        store: rig.job.store.clone(),
        clock: Arc::new(rig.clock.clone()),
        sinks: SinkOptions::default(),
        delivery: DeliveryOptions::default(),
        metrics: None,
    });
    let ids = |config: &Arc<keywarden::config::Config>| -> Vec<(String, String)> {
        keywarden::agent::tasks(config, &runner, &metrics, &reports)
            .unwrap()
            .into_iter()
            .filter(|t| t.id.starts_with("reports"))
            .map(|t| (t.id, t.schedule.expr))
            .collect()
    };
    assert_eq!(
        ids(&rig.config),
        [
            ("reports".to_string(), "0 0 9 * * Mon".to_string()),
            ("reports/retry".to_string(), "0 17 * * * *".to_string())
        ]
    );
    let mut without = (*rig.config).clone();
    without.reports.sinks.clear();
    assert!(ids(&Arc::new(without)).is_empty());
}

#[tokio::test]
async fn the_daemon_trims_the_store_daily_by_its_own_clock() {
    let rig = rig().await;
    let runner = support::agent::runner(&rig.config, &rig.clock);
    let metrics = Arc::new(keywarden::metrics::Metrics::new(false));
    let reports = Arc::new(ReportJob {
        store: rig.job.store.clone(),
        clock: Arc::new(rig.clock.clone()),
        sinks: SinkOptions::default(),
        delivery: DeliveryOptions::default(),
        metrics: None,
    });
    let tasks = keywarden::agent::tasks(&rig.config, &runner, &metrics, &reports).unwrap();
    let task = tasks
        .iter()
        .find(|t| t.id == keywarden::jobs::maintenance::TASK_ID)
        .expect("the maintenance is scheduled");
    assert_eq!(
        task.schedule.expr, "0 17 4 * * *",
        "[retention].schedule's default"
    );

    let store = &rig.job.store;
    let now = rig.clock.now();
    let before = store.audit().recent(None, 1_000).await.unwrap().len();
    for days in [401, 399] {
        let entry = AuditEntry {
            at: now - Duration::days(days),
            server: "fra-1".into(),
            action: AuditAction::Sync,
            target: format!("{days} days old"),
            result: AuditResult::Ok,
            detail: String::new(),
        };
        store.audit().append(&entry).await.unwrap();
    }
    (task.body)(tokio_util::sync::CancellationToken::new()).await;
    let targets: Vec<String> = store
        .audit()
        .recent(None, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert!(targets.contains(&"399 days old".to_string()));
    assert!(!targets.contains(&"401 days old".to_string()));
    assert_eq!(targets.len(), before + 1);
}
