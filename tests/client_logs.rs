//! The API key never reaches logs or errors. In a test binary of its own: tracing
//! caches per call site whether anyone listens, and a parallel test thread without a
//! subscriber would otherwise switch call sites off for this test's subscriber too.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::replay::{Canned, Replay};
use support::{TEST_API_KEY, client, sample};

async fn v2_replay() -> Replay {
    let replay = Replay::start().await;
    replay.set("GET", "/api/", Canned::json(200, sample("v2_root.json")));
    replay.set(
        "GET",
        "/api/keys",
        Canned::json(200, sample("v2_keys_list.json")),
    );
    replay.set(
        "GET",
        "/api/system/xray/validate-sync",
        Canned::json(200, sample("v2_validate_sync_after_create.json")),
    );
    replay
}

/// A writer that keeps everything the subscriber writes, for asserting on logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_api_key_never_reaches_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let replay = v2_replay().await;
    let api = client(&replay.base_url());
    // A proxy page that echoes the request headers back, key included.
    replay.set(
        "GET",
        "/api/system/config-status",
        Canned::html(502, &format!("<html>X-API-Key: {TEST_API_KEY}</html>")),
    );
    replay.set(
        "POST",
        "/api/system/sync-config",
        Canned::json(200, format!(r#"{{"note": "{TEST_API_KEY}"}}"#)),
    );
    let mut errors = Vec::new();
    errors.push(format!("{:?}", api.config_status().await.unwrap_err()));
    errors.push(api.config_status().await.unwrap_err().to_string());
    errors.push(format!("{:?}", api.sync_config().await.unwrap_err()));
    errors.push(api.verify_reality().await.unwrap_err().to_string());
    api.list_keys().await.unwrap();
    errors.push(format!("{api:?}"));

    // The key was really sent, in the header and only there.
    assert!(
        replay
            .seen()
            .iter()
            .all(|s| s.api_key.as_deref() == Some(TEST_API_KEY))
    );
    for text in &errors {
        assert!(!text.contains(TEST_API_KEY), "leaked in: {text}");
    }
    assert!(
        errors[0].contains("[redacted]"),
        "the echoed key is blotted out: {}",
        errors[0]
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("api call"), "logs were captured: {logs}");
    assert!(!logs.contains(TEST_API_KEY), "leaked in logs");
}
