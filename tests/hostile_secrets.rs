//! Secrets never echoed: a server whose error answers quote the API key back (plain,
//! base64, URL-encoded, in a JSON `detail` or an HTML page) and an SMTP server that
//! echoes the AUTH exchange. The real binary runs `check --notify`, `probe` and
//! `status` and `alert-test` against them; afterwards no form of any secret is in their
//! output, their logs (trace level for keywarden), any table of the store (job_runs,
//! findings, alert_state, alert_outbox, audit_log, sink_health, server_state), or any
//! email or webhook body. Real HTTP and SMTP on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use support::hooks::Receiver;
use support::hostile::{Echo, Hostile, Key, echoed_forms};
use support::smtp::{Security, SmtpServer};
use support::{TEST_API_KEY, within};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
const SMTP_USER: &str = "alerts@example.net";
const SMTP_PASSWORD: &str = "smtp-Pa55-word-b7e1";

/// Run the binary off the async runtime (the servers are in this process).
async fn keywarden(config: &Path, words: &[&str]) -> Output {
    let mut args: Vec<String> = vec![words[0].into(), "-c".into(), config.display().to_string()];
    args.extend(words[1..].iter().map(|w| w.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env("ECHO_TEST_KEY", TEST_API_KEY)
            .env("SMTP_TEST_PASSWORD", SMTP_PASSWORD)
            .env("RUST_LOG", "keywarden=trace,info")
            .output()
            .expect("run keywarden")
    })
    .await
    .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every form of every secret that must appear nowhere.
fn forbidden() -> Vec<String> {
    let mut all = echoed_forms(TEST_API_KEY);
    all.extend(echoed_forms(SMTP_PASSWORD));
    let b64 = base64::engine::general_purpose::STANDARD;
    all.push(b64.encode(format!("\0{SMTP_USER}\0{SMTP_PASSWORD}")));
    all
}

fn assert_clean(what: &str, text: &str) {
    for secret in forbidden() {
        assert!(!text.contains(&secret), "{what} leaks {secret:?}:\n{text}");
    }
}

fn write_config(dir: &Path, api: &str, alerts: &str) -> PathBuf {
    let text = format!(
        "[agent]\nstate_dir = {:?}\nlisten = \"\"\n\n[jobs.health]\nfailures_before_alert = 1\n\n\
         [[servers]]\nname = \"fra-1\"\nurl = {api:?}\napi_key_env = \"ECHO_TEST_KEY\"\ntimeout = \"2s\"\naction_timeout = \"3s\"\n\n\
         [quotas]\nlimit = \"1 GiB\"\n\n{alerts}",
        dir.join("state").display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_echoed_by_the_server_reaches_no_output_log_table_or_alert() {
    let server = Hostile::start("2.3.6", vec![Key::new("1", "uuid-1", "one", 5)]).await;
    let hook = Receiver::start().await;
    let smtp = SmtpServer::start(Security::Plain, None).await;
    let dir = tempfile::tempdir().unwrap();
    let alerts = format!(
        "[alerts]\nmin_severity = \"info\"\ngroup_wait = \"0s\"\n\n\
         [[alerts.webhook]]\nname = \"hook\"\nurl = {:?}\n\n\
         [[alerts.email]]\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"kw@example.net\"\nto = [\"ops@example.net\"]\n",
        hook.url("/hook"),
        smtp.addr.port()
    );
    let config = write_config(dir.path(), &server.base_url(), &alerts);
    let mut seen = Vec::new();
    // Text and JSON output, each against both echoes (every GET is retried, so each
    // command takes seconds: one of each per echo).
    for (echo, json) in [(Echo::Json, false), (Echo::Html, true)] {
        server.set(|b| b.echo = echo);
        let format: &[&str] = if json { &["--json"] } else { &[] };
        let check_args = [&["check", "--notify"][..], format].concat();
        let check = within("check", keywarden(&config, &check_args)).await;
        seen.push((format!("check {check_args:?} {echo:?}"), text(&check)));
        let probe_args = [&["probe"][..], format].concat();
        let probe = within("probe", keywarden(&config, &probe_args)).await;
        seen.push((format!("probe {probe_args:?} {echo:?}"), text(&probe)));
        let probe_args = [&["probe"][..], if json { &[] } else { &["--json"] }].concat();
        let probe = within("probe", keywarden(&config, &probe_args)).await;
        seen.push((format!("probe {probe_args:?} {echo:?}"), text(&probe)));
    }
    let status = within("status", keywarden(&config, &["status"])).await;
    seen.push(("status".into(), text(&status)));
    let status = within("status", keywarden(&config, &["status", "--json"])).await;
    seen.push(("status --json".into(), text(&status)));
    let store = support::dump::store_text(&dir.path().join("state/state.db"));
    seen.push(("the store".into(), store.clone()));
    for request in hook.requests() {
        seen.push((
            "a webhook body".into(),
            String::from_utf8_lossy(&request.body).into_owned(),
        ));
    }
    for mail in smtp.mails() {
        seen.push(("a mail".into(), mail.data.clone()));
    }
    // The echo happened and went through every path, redacted.
    assert!(store.contains("[redacted]"), "{store}");
    // A finding quotes the echo, redacted. (On 2.x the Reality check reads the inbound
    // listing, which this server does not have: the key-list echo is the finding here.)
    assert!(
        store
            .lines()
            .any(|l| l.starts_with("findings.details") && l.contains("[redacted]")),
        "{store}"
    );
    assert!(!hook.requests().is_empty() && !smtp.mails().is_empty());
    let bodies: String = hook
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(bodies.contains("[redacted]"), "{bodies}");
    assert!(
        seen.iter()
            .any(|(what, text)| what.starts_with("probe") && text.contains("[redacted]")),
        "probe shows the redacted echo"
    );
    for (what, text) in &seen {
        assert_clean(what, text);
    }
}

/// A raw SMTP server that answers AUTH by quoting what it got (decoded with `|` for
/// NUL, and the base64 itself), with `code`.
async fn echoing_smtp(code: u16) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 echo.test ESMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply = if upper.starts_with("EHLO") {
                        "250-echo.test\r\n250 AUTH PLAIN LOGIN\r\n".to_string()
                    } else if upper.starts_with("AUTH PLAIN") {
                        let blob = line[10..].trim().to_string();
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(&blob)
                            .map(|b| String::from_utf8_lossy(&b).replace('\0', "|"))
                            .unwrap_or_default();
                        format!(
                            "{code} 4.7.0 Authentication failed for {decoded} (AUTH PLAIN {blob})\r\n"
                        )
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        format!("{code} 5.5.1 unexpected {line}\r\n")
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

fn email_sink(port: u16) -> String {
    format!(
        "[alerts]\ngroup_wait = \"0s\"\n\n[[alerts.email]]\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nusername = \"{SMTP_USER}\"\npassword_env = \"SMTP_TEST_PASSWORD\"\nfrom = \"kw@example.net\"\nto = [\"ops@example.net\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_echoing_auth_reaches_no_output_or_stored_error() {
    for code in [454, 535] {
        let (addr, _task) = echoing_smtp(code).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(
            dir.path(),
            "http://127.0.0.1:9/api",
            &email_sink(addr.port()),
        );
        let output = within("alert-test", keywarden(&config, &["alert-test"])).await;
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let printed = text(&output);
        assert!(
            printed.contains(&format!("mail: FAILED: smtp: {code} ")),
            "{printed}"
        );
        let store = support::dump::store_text(&dir.path().join("state/state.db"));
        assert!(store.contains(&format!("smtp: {code} ")), "{store}");
        assert_clean(&format!("alert-test ({code})"), &printed);
        assert_clean(&format!("the store ({code})"), &store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_auth_echo_stays_out_of_sink_health_alert_state_and_other_sinks() {
    use keywarden::alert::{DispatchOptions, Dispatcher, SinkOptions};
    use keywarden::config::{JobKind, Severity};
    use keywarden::finding::FindingKind;
    use support::alerts::{Harness, eventually, finding};

    let (addr, _task) = echoing_smtp(535).await;
    let hook = Receiver::start().await;
    let alerts = format!(
        "{}\n[[alerts.webhook]]\nname = \"hook\"\nurl = {:?}\n",
        email_sink(addr.port()).replace(
            "password_env = \"SMTP_TEST_PASSWORD\"",
            &format!("password = \"{SMTP_PASSWORD}\"")
        ),
        hook.url("/hook")
    );
    let h = Harness::new(&alerts);
    let sinks = h.sinks(&SinkOptions::default());
    let dispatcher = Dispatcher::start(
        h.pipeline.clone(),
        sinks,
        DispatchOptions {
            max_idle: std::time::Duration::from_millis(20),
            ..support::alerts::options()
        },
    );
    h.run(
        "fra-1",
        JobKind::ConfigSync,
        vec![finding(
            "fra-1",
            FindingKind::ConfigDrift,
            Severity::Warning,
        )],
    );
    within(
        "the mail sink fails for good",
        eventually("sink_health failing", || {
            h.store.sink_health("mail").unwrap().failing
        }),
    )
    .await;
    within(
        "notifications_failing reaches the webhook",
        eventually("a notifications_failing notice", || {
            hook.requests()
                .iter()
                .any(|r| String::from_utf8_lossy(&r.body).contains("notifications_failing"))
        }),
    )
    .await;
    assert!(dispatcher.shutdown(std::time::Duration::from_secs(5)).await);
    let store = support::dump::store_text(&h.config.agent.state_dir.join("state.db"));
    assert!(
        store.contains("smtp: 535 authentication credentials invalid"),
        "{store}"
    );
    assert_clean("the store", &store);
    for request in hook.requests() {
        assert_clean("a webhook body", &String::from_utf8_lossy(&request.body));
    }
}
