//! `keywarden check --notify`, the real binary: the run's notices are delivered
//! before it exits (no group_wait), and the report says what was delivered.

mod support;

use std::process::Command;

use support::hooks::Receiver;
use support::within;

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

/// `keywarden check --notify --job health -c <config>`, off the async runtime (the
/// receivers live in this process).
async fn check_notify(config: std::path::PathBuf) -> std::process::Output {
    within(
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
    .unwrap()
}

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
    let output = check_notify(config).await;
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

/// Beside a running daemon, `check --notify` does not deliver: the daemon's dispatcher
/// delivers the same outbox, and both sending would send each notice twice. The check
/// says who delivers instead, and the daemon does, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_notify_beside_a_running_daemon_leaves_the_notices_to_it() {
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    // The daemon's own jobs never come due: every notice is the check's.
    let never = "schedule = \"0 0 0 1 1 *\"";
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\nlisten = \"\"\n\
             [jobs.health]\n{never}\nfailures_before_alert = 1\n[jobs.config_sync]\n{never}\n\
             [jobs.reality]\n{never}\n[jobs.quota]\n{never}\n[jobs.dataplane]\n{never}\n\
             [[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key = \"k\"\ntimeout = \"1s\"\n\
             [alerts]\ngroup_wait = \"0s\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
            dir.path().join("state").display().to_string(),
            hook.url("/hook")
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("keywarden running")
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the daemon did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let output = check_notify(config.clone()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("notifications: 0 delivered"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "not delivered here: the running daemon (pid {}",
            daemon.id()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("hook: 1 not delivered, left queued for it"),
        "{stdout}"
    );

    // The daemon's dispatcher looks at the outbox at least every 20 s and delivers it.
    let waited = std::time::Instant::now();
    while hook.requests().is_empty() {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(30),
            "the daemon never delivered the check's notice"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "delivered once, by the daemon");
    assert_eq!(
        requests[0].json()["alerts"][0]["kind"],
        "server_unreachable"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
