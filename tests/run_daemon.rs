//! `keywarden run`, the real binary: jobs run on their schedules, SIGTERM waits for the
//! run in flight and exits 0, SIGHUP swaps in a valid configuration and keeps the old
//! one when the new one is broken.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keywarden::store::Store;
use keywarden_sim::{ApiGeneration, Fault, Route, SimServer};
use support::{TEST_API_KEY, sim, within};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

/// Health and Reality every second; the others effectively never.
fn config_text(dir: &Path, servers: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[agent]\nstate_dir = {:?}\nlog_format = \"json\"\nlisten = \"127.0.0.1:0\"\n\n[jobs.health]\nschedule = \"*/1 * * * * *\"\n[jobs.reality]\nschedule = \"*/1 * * * * *\"\n[jobs.config_sync]\nschedule = \"0 0 0 1 1 *\"\n[jobs.quota]\nschedule = \"0 0 0 1 1 *\"\n",
        dir.join("state").display().to_string()
    );
    for (name, url) in servers {
        text.push_str(&format!("\n[[servers]]\nname = {name:?}\nurl = {url:?}\napi_key_env = \"RUN_TEST_KEY\"\ntimeout = \"2s\"\naction_timeout = \"10s\"\n"));
    }
    text
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, dir: &Path) -> Daemon {
        let log = dir.join("daemon.log");
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(config)
            .env("RUN_TEST_KEY", TEST_API_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn keywarden run");
        Daemon { child, log }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for the exit code, at most `limit`.
    async fn exit_within(&mut self, limit: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < limit,
                "the daemon did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn posts_to(server: &SimServer, suffix: &str) -> usize {
    server
        .handle()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .count()
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_run_in_flight_finish_and_exits_0() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &[("fra-1", &server.base_url())]),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, dir.path());

    wait_for("scheduled Reality runs", || {
        posts_to(&server, "verify-reality") >= 1
    })
    .await;
    // The next verify hangs for 2 s; SIGTERM arrives while it is in flight.
    server.handle().fail_next(
        Route::VerifyReality,
        1,
        Fault::Delay(Duration::from_secs(2)),
    );
    let store = Store::open_file(&dir.path().join("state/state.db")).unwrap();
    let started_before = count_audit(&store, "started").await;
    within("a verify in flight", async {
        while count_audit(&store, "started").await <= started_before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let in_flight_since = Instant::now();
    daemon.signal("TERM");
    let code = daemon.exit_within(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "log:\n{}", daemon.log());
    assert!(
        in_flight_since.elapsed() >= Duration::from_millis(1500),
        "it waited for the run in flight"
    );
    // The run in flight was allowed to finish and record its result.
    assert_eq!(
        count_audit(&store, "started").await,
        count_audit(&store, "ok").await,
        "every started verify finished"
    );
    let log = daemon.log();
    assert!(log.contains("every run finished"), "{log}");
    assert!(!log.contains(TEST_API_KEY));
}

async fn count_audit(store: &Store, result: &str) -> usize {
    store
        .audit()
        .recent(Some("fra-1"), 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.result.as_str() == result)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_old_config_when_broken_and_adds_a_server_when_fixed() {
    let first = sim(ApiGeneration::V1, 1).await;
    let second = sim(ApiGeneration::V2, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &[("fra-1", &first.base_url())]),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config, dir.path());
    wait_for("first server checked", || posts_to(&first, "/api/") >= 1).await;

    // A broken file: logged, and the daemon keeps running the old configuration.
    std::fs::write(&config, "[agent]\nstate_dir = 42\n").unwrap();
    daemon.signal("HUP");
    wait_for("the reload failure is logged", || {
        daemon.log().contains("still running on the old one")
    })
    .await;
    let before = posts_to(&first, "/api/");
    wait_for("old config still runs", || {
        posts_to(&first, "/api/") > before + 1
    })
    .await;
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");

    // A fixed file with a second server: it is picked up.
    let fixed = config_text(
        dir.path(),
        &[("fra-1", &first.base_url()), ("ams-2", &second.base_url())],
    );
    std::fs::write(&config, fixed).unwrap();
    daemon.signal("HUP");
    wait_for("the new server is checked", || {
        posts_to(&second, "/api/") >= 1
    })
    .await;
    assert!(daemon.log().contains("configuration reloaded"));
    // Both servers go on through the HTTP client the reload built.
    let (first_before, second_before) = (posts_to(&first, "/api/"), posts_to(&second, "/api/"));
    wait_for("both servers checked again", || {
        posts_to(&first, "/api/") > first_before && posts_to(&second, "/api/") > second_before
    })
    .await;

    daemon.signal("TERM");
    assert_eq!(
        daemon.exit_within(Duration::from_secs(15)).await,
        0,
        "log:\n{}",
        daemon.log()
    );
}

#[test]
fn run_refuses_an_invalid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[[servers]]\nname = \"Bad Name\"\nurl = \"ftp://x\"\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("servers[0].name"), "{stderr}");
}

/// The address the daemon logged for /metrics and /healthz.
fn metrics_addr(log: &str) -> Option<String> {
    log.lines()
        .filter(|line| line.contains("serving /metrics and /healthz"))
        .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .and_then(|entry| entry["fields"]["addr"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_are_served() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &[("fra-1", &server.base_url())]),
    )
    .unwrap();
    // A webhook sink, so notifications show up in the metrics too.
    let hooks = support::hooks::Receiver::start().await;
    let sink = format!(
        "\n[alerts]\ngroup_wait = \"200ms\"\n\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
        hooks.url("/hook")
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\n[[servers]]", &format!("{sink}\n[[servers]]"));
    std::fs::write(&config, text).unwrap();
    server
        .handle()
        .break_reality(keywarden_sim::RealityField::Dest);
    let mut daemon = Daemon::start(&config, dir.path());
    wait_for("the metrics address is logged", || {
        metrics_addr(&daemon.log()).is_some()
    })
    .await;
    let addr = metrics_addr(&daemon.log()).unwrap();
    wait_for("a few runs", || posts_to(&server, "verify-reality") >= 2).await;
    wait_for("the alert is delivered", || !hooks.requests().is_empty()).await;
    keywarden::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let expected = [
        "keywarden_server_up{server=\"fra-1\"} 1",
        "keywarden_job_runs_total{server=\"fra-1\",job=\"reality\",outcome=\"critical\"}",
        "keywarden_alerts_firing{severity=\"critical\"} 1",
        "keywarden_notifications_sent_total{sink=\"hook\"} 1",
        "keywarden_api_request_duration_seconds_count{server=\"fra-1\",endpoint=\"POST /api/system/verify-reality\"}",
        "keywarden_job_duration_seconds_bucket{",
    ];
    // The delivery is counted just after the receiver answered: poll briefly.
    let mut text = String::new();
    for _ in 0..50 {
        let response = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        text = response.text().await.unwrap();
        if expected.iter().all(|e| text.contains(e)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for expected in expected {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains(TEST_API_KEY));
    daemon.signal("TERM");
    assert_eq!(daemon.exit_within(Duration::from_secs(15)).await, 0);
}
