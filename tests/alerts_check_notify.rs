//! `keywarden check --notify`, the real binary: the run's notices are delivered
//! before it exits (no group_wait), and the report says what was delivered.

mod support;

use std::process::Command;

use support::hooks::Receiver;
use support::within;

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

#[tokio::test]
async fn check_notify_delivers_before_exiting() {
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\n[jobs.health]\nfailures_before_alert = 1\n\
             [[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key = \"k\"\ntimeout = \"1s\"\n\
             [alerts]\ngroup_wait = \"1h\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
            dir.path().join("state").display().to_string(),
            hook.url("/hook")
        ),
    )
    .unwrap();
    let output = within(
        "check --notify",
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["check", "--notify", "--job", "health", "-c"])
                .arg(&config)
                .output()
                .unwrap()
        }),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("notifications: 1 delivered"), "{stdout}");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].json()["alerts"][0]["kind"],
        "server_unreachable"
    );
}
