//! Secrets never leak: the SMTP password, the webhook signing secret, header values
//! and the Telegram bot token in the URL appear in no log line, no stored error, no
//! alert body, even when receivers fail and echo what they were sent.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use keywarden::alert::SinkOptions;
use keywarden::config::{JobKind, Severity};
use keywarden::model::FindingKind;
use support::alerts::{Harness, eventually_async, finding, settle};
use support::hooks::{Answer, Receiver};
use support::smtp::{Security, SmtpServer};
use support::within;

const PASSWORD: &str = "smtp-pw-secret-91ab";
const HMAC_SECRET: &str = "hmac-secret-5e2f";
const HEADER_TOKEN: &str = "header-token-77c0";
const BOT_TOKEN: &str = "987654:bot-token-secret-aa";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the subscriber set below sees every task of this runtime.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_logs_errors_or_bodies() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let smtp = SmtpServer::start(Security::Plain, Some(("alerts@example.net", "not-it"))).await;
    let hook = Receiver::start().await;
    // The receivers refuse, quoting the request path (with the token) back.
    let echo = format!("forbidden: /bot{BOT_TOKEN}/sendMessage {HEADER_TOKEN} {HMAC_SECRET}");
    hook.always(Some(Answer {
        status: 403,
        retry_after: None,
        body: echo,
    }));
    let text = format!(
        "[alerts]\ngroup_wait = \"0s\"\n\
         [[alerts.email]]\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"alerts@example.net\"\npassword = \"{PASSWORD}\"\nfrom = \"a@example.net\"\nto = [\"b@example.net\"]\n\
         [[alerts.webhook]]\nname = \"json\"\nurl = \"{}\"\nsecret = \"{HMAC_SECRET}\"\nheaders = {{ Authorization = \"Bearer {HEADER_TOKEN}\" }}\n\
         [[alerts.webhook]]\nname = \"tg\"\nformat = \"telegram\"\nchat_id = \"42\"\nurl = \"{}\"\n",
        smtp.addr.port(),
        hook.url("/hook"),
        hook.url(&format!("/bot{BOT_TOKEN}/sendMessage")),
    );
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
    let failing = || async {
        let mut all = true;
        for sink in ["mail", "json", "tg"] {
            all &= h.store.alerts().sink_health(sink).await.unwrap().failing;
        }
        all
    };
    within("failures", eventually_async("every sink failing", failing)).await;
    settle().await;
    let mut texts = vec![String::from_utf8(logs.0.lock().unwrap().clone()).unwrap()];
    for sink in ["mail", "json", "tg"] {
        let health = h.store.alerts().sink_health(sink).await.unwrap();
        texts.push(format!("{health:?}"));
        texts.push(serde_json::to_string(&health).unwrap());
    }
    texts.push(format!("{:?}", h.config.alerts));
    texts.push(keywarden::config::summary::render(
        &h.config,
        std::path::Path::new("/t/agent.toml"),
        chrono::Utc::now(),
    ));
    for request in hook.requests() {
        texts.push(String::from_utf8(request.body.clone()).unwrap());
    }
    for mail in smtp.mails() {
        texts.push(mail.data.clone());
    }
    let all = texts.join("\n");
    assert!(all.contains("403"), "the failures were logged");
    for secret in [
        PASSWORD,
        HMAC_SECRET,
        HEADER_TOKEN,
        BOT_TOKEN,
        "bot-token-secret",
    ] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    h.stop().await;
}
