//! `keywarden check` and `keywarden status`, the real binary against in-process
//! simulators: Nagios exit codes, JSON reports, dry run, and what status reads back.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keywarden::sim::{ApiGeneration, RealityField, SimServer};
use serde_json::Value;
use support::{TEST_API_KEY, sim};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

fn write_urls(dir: &Path, servers: &[(&str, String, Option<PathBuf>)]) -> PathBuf {
    let mut text = format!(
        "[agent]\nstate_dir = {:?}\n",
        dir.join("state").display().to_string()
    );
    for (name, url, ca) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nname = {name:?}\nurl = {url:?}\napi_key_env = \"CHECK_TEST_KEY\"\ntimeout = \"1s\"\naction_timeout = \"3s\"\n"
        ));
        if let Some(ca) = ca {
            text.push_str(&format!(
                "reality_ca_file = {:?}\n",
                ca.display().to_string()
            ));
        }
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A config for simulated servers, trusting each one's test CA for its VLESS ports.
fn write_config(dir: &Path, servers: &[(&str, &SimServer)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let servers: Vec<(&str, String, Option<PathBuf>)> = servers
        .iter()
        .map(|(name, sim)| (*name, sim.base_url(), Some(support::ca_file(dir, sim))))
        .collect();
    write_urls(dir, &servers)
}

/// Run the binary off the async runtime, so the in-process simulator keeps serving.
async fn keywarden(args: Vec<String>) -> (i32, String, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env("CHECK_TEST_KEY", TEST_API_KEY)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run keywarden")
    })
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn args(config: &Path, words: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = vec![
        words[0].to_string(),
        "-c".into(),
        config.display().to_string(),
    ];
    out.extend(words[1..].iter().map(|w| w.to_string()));
    out
}

async fn check_json(config: &Path, extra: &[&str]) -> (i32, Value) {
    let mut words = vec!["check", "--json"];
    words.extend_from_slice(extra);
    let (code, stdout, stderr) = keywarden(args(config, &words)).await;
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    assert!(!stdout.contains(TEST_API_KEY) && !stderr.contains(TEST_API_KEY));
    (code, report)
}

fn finding_kinds(report: &Value) -> Vec<String> {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|run| {
            run["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap().to_string())
        })
        .collect()
}

async fn v1() -> SimServer {
    sim(ApiGeneration::V1, 2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_server_is_ok() {
    let server = v1().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("fra-1", &server)]);
    let (code, report) = check_json(&config, &["--job", "health"]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "OK");
    assert_eq!(report["runs"][0]["job"], "health");
    assert_eq!(report["runs"][0]["outcome"], "ok");
    let (code, text, _) = keywarden(args(&config, &["check", "--job", "reality"])).await;
    assert_eq!(code, 0);
    assert!(text.starts_with("OK: 1 runs"), "{text}");
    assert!(
        text.contains("verified Reality settings on fra-1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_critical_and_unknown() {
    let server = v1().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("fra-1", &server)]);

    server.handle().set_precise_monitor_available(false);
    let (code, report) = check_json(&config, &["--job", "health"]).await;
    assert_eq!((code, report["status"].as_str()), (1, Some("WARNING")));
    assert_eq!(finding_kinds(&report), ["traffic_monitor_unavailable"]);

    server.handle().break_reality(RealityField::ShortIds);
    let (code, report) = check_json(&config, &["--job", "reality"]).await;
    assert_eq!((code, report["status"].as_str()), (2, Some("CRITICAL")));
    assert_eq!(finding_kinds(&report), ["reality_invalid"]);

    // Unreachable: critical at once in check, even below failures_before_alert.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_dir = dir.path().join("dead");
    std::fs::create_dir_all(&dead_dir).unwrap();
    let dead = write_urls(
        &dead_dir,
        &[("dead-1", format!("http://127.0.0.1:{dead_port}/api"), None)],
    );
    let (code, report) = check_json(&dead, &["--job", "health"]).await;
    assert_eq!(code, 2, "{report}");
    assert!(
        report["runs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );

    // The agent itself cannot run: UNKNOWN.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[agent]\nnope = 1\n").unwrap();
    let (code, stdout, stderr) = keywarden(args(&broken, &["check"])).await;
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.starts_with("UNKNOWN"));
    let (code, _, stderr) = keywarden(args(&config, &["check", "--server", "nope"])).await;
    assert_eq!(code, 3);
    assert!(stderr.contains("no server named \"nope\""), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_no_post_or_delete() {
    let server = v1().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("fra-1", &server)]);
    server.handle().set_max_time_diff(0);
    let (code, text, _) = keywarden(args(&config, &["check", "--dry-run"])).await;
    assert!(code <= 1, "{text}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert!(
        text.contains("would verify Reality settings on fra-1"),
        "{text}"
    );
    let requests = server.handle().requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.method == "GET"), "{requests:?}");
    assert_eq!(server.handle().max_time_diff(), 0, "nothing was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_what_the_runs_recorded() {
    let server = v1().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("fra-1", &server)]);
    server.handle().break_reality(RealityField::Dest);
    let (code, _) = check_json(&config, &["--job", "all"]).await;
    assert_eq!(code, 2);

    let (code, stdout, stderr) = keywarden(args(&config, &["status", "--json"])).await;
    assert_eq!(code, 0, "{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    let fra = &status[0];
    assert_eq!(fra["name"], "fra-1");
    assert_eq!(fra["state"]["version"], "1.0.0");
    let jobs: Vec<&str> = fra["last_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert!(
        jobs.contains(&"health") && jobs.contains(&"reality"),
        "{jobs:?}"
    );
    assert_eq!(fra["open_findings"][0]["kind"], "reality_invalid");
    let actions: Vec<&str> = fra["recent_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"verify_reality"));

    let (code, text, _) = keywarden(args(&config, &["status"])).await;
    assert_eq!(code, 0);
    assert!(text.contains("API version     1.0.0"), "{text}");
    assert!(
        text.contains("[CRITICAL] fra-1: Reality settings are invalid"),
        "{text}"
    );
    assert!(text.contains("verify_reality reality failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_sync_through_check_repairs_in_one_run() {
    let server = sim(ApiGeneration::V2, 3).await;
    let handle = server.handle();
    let dir = tempfile::tempdir().unwrap();
    // The stock 2.x layout (verify-reality always fails there), and no skip_jobs entry:
    // the Reality check after the sync reads the inbounds instead.
    let config = write_config(dir.path(), &[("ams-2", &server)]);
    let missing = handle.keys()[1].uuid.clone();

    // Dry run: drift is a WARNING, the plan is printed, nothing is posted.
    handle.remove_config_client(&missing);
    let (code, text, _) = keywarden(args(
        &config,
        &["check", "--job", "config-sync", "--dry-run"],
    ))
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("would sync ams-2"), "{text}");
    assert!(handle.requests().iter().all(|r| r.method == "GET"));

    // A real check: confirmations = 2 are gathered within the run, then one sync.
    let (code, report) = check_json(&config, &["--job", "config-sync"]).await;
    assert_eq!(code, 1, "repaired drift is a WARNING: {report}");
    assert_eq!(finding_kinds(&report), ["config_drift_repaired"]);
    assert!(
        report["runs"][0]["findings"][0]["details"]
            .as_str()
            .unwrap()
            .contains(&missing)
    );
    assert_eq!(handle.sync_count(), 1);
    let (code, report) = check_json(&config, &["--job", "config-sync"]).await;
    assert_eq!(
        (code, finding_kinds(&report).len()),
        (0, 0),
        "the next run has nothing to do: {report}"
    );

    // A sync that changes nothing: CRITICAL. (2.x answers it with 500 "verification
    // failed", and validate-sync confirms the drift is still there.)
    handle.set_sync_noop(true);
    handle.remove_config_client(&missing);
    let (code, report) = check_json(&config, &["--job", "config-sync"]).await;
    assert_eq!(code, 2, "{report}");
    assert_eq!(finding_kinds(&report), ["sync_failed"], "{report}");
    let details = report["runs"][0]["findings"][0]["details"]
        .as_str()
        .unwrap();
    assert!(details.contains("still shows"), "{details}");
}

#[test]
fn status_needs_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_urls(
        dir.path(),
        &[("fra-1", "http://127.0.0.1:1/api".to_string(), None)],
    );
    let output = Command::new(BIN)
        .args(["status", "--json", "-c"])
        .arg(&config)
        .env_remove("CHECK_TEST_KEY")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status[0]["name"], "fra-1");
    assert!(status[0]["state"].is_null(), "nothing recorded yet");
}
