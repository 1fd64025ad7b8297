//! The real binary: `check --job all` quiet on the stock 2.x layout (and after a repaired
//! drift) without any skip_jobs entry; `check --job dataplane`, `--dry-run`, `--json`;
//! what `probe` and `status` say when Xray is down.

use std::path::{Path, PathBuf};
use std::process::Command;

use keywarden::sim::{ApiGeneration, SimServer};
use serde_json::Value;

use super::support::{TEST_API_KEY, ca_file, sim};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

fn write_config(dir: &Path, server: &SimServer, extra: &str) -> PathBuf {
    let ca = ca_file(dir, server);
    let text = format!(
        "[agent]\nstate_dir = {:?}\nlisten = \"\"\n{extra}\n[[servers]]\nname = \"ams-2\"\nurl = {:?}\napi_key_env = \"DP_TEST_KEY\"\ntimeout = \"2s\"\naction_timeout = \"5s\"\nreality_ca_file = {:?}\n",
        dir.join("state").display().to_string(),
        server.base_url(),
        ca.display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the binary off the async runtime, so the in-process simulator keeps serving.
async fn keywarden(config: &Path, words: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = vec![words[0].into(), "-c".into(), config.display().to_string()];
    args.extend(words[1..].iter().map(|w| w.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env("DP_TEST_KEY", TEST_API_KEY)
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

fn finding_kinds(report: &Value) -> Vec<String> {
    report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|run| run["findings"].as_array().unwrap().clone())
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn check_json(config: &Path, extra: &[&str]) -> (i32, Value) {
    let mut words = vec!["check", "--json"];
    words.extend_from_slice(extra);
    let (code, stdout, stderr) = keywarden(config, &words).await;
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (code, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_2x_layout_is_quiet_and_a_repaired_drift_has_no_reality_finding() {
    let server = sim(ApiGeneration::V2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "");
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains("skip_jobs")
    );

    let (code, report) = check_json(&config, &["--job", "all"]).await;
    assert_eq!((code, finding_kinds(&report)), (0, vec![]), "{report:#}");
    let jobs: Vec<&str> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs,
        ["health", "config_sync", "reality", "quota", "dataplane"]
    );
    assert!(
        server
            .handle()
            .requests()
            .iter()
            .all(|r| r.path != "/api/system/verify-reality"),
        "verify-reality is never called on the stock 2.x layout"
    );

    // A drift repaired by check: a WARNING for the repair, and nothing about Reality.
    let handle = server.handle();
    handle.remove_config_client(&handle.keys()[1].uuid);
    let (code, report) = check_json(&config, &["--job", "all"]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        finding_kinds(&report),
        ["config_drift_repaired"],
        "{report:#}"
    );
    let sync_plan = report["runs"][1]["plan"].to_string();
    assert!(sync_plan.contains("valid after the sync"), "{sync_plan}");
    assert_eq!(handle.sync_count(), 1);
    let (code, report) = check_json(&config, &["--job", "all"]).await;
    assert_eq!((code, finding_kinds(&report)), (0, vec![]), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_job_dataplane_with_dry_run_probes_but_posts_nothing() {
    let server = sim(ApiGeneration::V2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "");
    let handle = server.handle();
    let closed = handle.keys()[2].clone();
    handle.set_port_closed(&closed.id, true).await;
    let (code, text, stderr) =
        keywarden(&config, &["check", "--job", "dataplane", "--dry-run"]).await;
    assert_eq!(code, 1, "{text}{stderr}");
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert!(
        text.contains("2 of 3 VLESS ports answered TLS correctly"),
        "{text}"
    );
    assert!(text.contains("(vless_port_unreachable)"), "{text}");
    assert!(text.contains(&closed.name), "{text}");
    assert!(handle.requests().iter().all(|r| r.method == "GET"));
    let (code, report) = check_json(&config, &["--job", "dataplane"]).await;
    assert_eq!(code, 1);
    assert_eq!(report["runs"][0]["job"], "dataplane");
    assert_eq!(finding_kinds(&report), ["vless_port_unreachable"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_xray_shows_in_check_probe_and_status() {
    let server = sim(ApiGeneration::V2, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server, "[jobs.health]\nrestart_xray = false\n");
    let handle = server.handle();
    handle.stop_xray().await;

    // check gathers its confirmations within the run: CRITICAL at once.
    let (code, report) = check_json(&config, &["--job", "health"]).await;
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(finding_kinds(&report), ["xray_down"]);

    let (code, stdout, stderr) = keywarden(&config, &["probe", "--json"]).await;
    assert_eq!(code, 0, "the API answers: {stdout}{stderr}");
    let probe: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(probe["dataplane"]["xray"], "stopped");
    let ports = probe["dataplane"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| p["result"] == "closed"), "{ports:?}");
    let (_, text, _) = keywarden(&config, &["probe"]).await;
    assert!(
        text.contains("xray           stopped  <- nobody can connect"),
        "{text}"
    );

    let (code, text, _) = keywarden(&config, &["status"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("XRAY STOPPED"), "{text}");
    let (_, stdout, _) = keywarden(&config, &["status", "--json"]).await;
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status[0]["xray"]["state"], "stopped");

    // With restarts on, one check repairs it: a WARNING that says what was done.
    let repair = dir.path().join("repair");
    std::fs::create_dir_all(&repair).unwrap();
    let config = write_config(&repair, &server, "");
    let (code, report) = check_json(&config, &["--job", "health"]).await;
    assert_eq!(
        (code, finding_kinds(&report)),
        (1, vec!["xray_restarted".to_string()]),
        "{report:#}"
    );
    assert!(handle.xray_running());
    let (_, stdout, _) = keywarden(&config, &["probe", "--json"]).await;
    let probe: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(probe["dataplane"]["xray"], "running");
    assert!(
        probe["dataplane"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["result"] == "open")
    );
}
