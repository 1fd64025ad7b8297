//! `keywarden probe` against `keywarden sim`, both real binaries: the keys and traffic
//! figures probe prints are the ones the simulator holds.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::TEST_API_KEY;

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

/// A `keywarden sim` child process, killed on drop.
struct SimProcess {
    child: Child,
    base_url: String,
    // Kept open: if the pipe closed, the simulator's next println! would kill it.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(api: &str, keys: usize) -> SimProcess {
    let mut child = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--api",
            api,
            "--keys",
            &keys.to_string(),
            "--api-key",
            TEST_API_KEY,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keywarden sim");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base_url = loop {
        let line = lines
            .next()
            .expect("sim printed its base URL")
            .expect("read sim stdout");
        if let Some(url) = line.trim().strip_prefix("base URL:") {
            break url.trim().to_string();
        }
    };
    SimProcess {
        child,
        base_url,
        _stdout: lines,
    }
}

fn write_config(dir: &std::path::Path, servers: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = format!(
        "[agent]\nstate_dir = {:?}\n",
        dir.join("state").display().to_string()
    );
    for (name, url) in servers {
        text.push_str(&format!("\n[[servers]]\nname = {name:?}\nurl = {url:?}\napi_key_env = \"PROBE_TEST_KEY\"\ntimeout = \"2s\"\n"));
    }
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn probe(config: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("probe")
        .arg("-c")
        .arg(config)
        .args(extra)
        .env("PROBE_TEST_KEY", TEST_API_KEY)
        .output()
        .expect("run keywarden probe");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

async fn sim_state(base_url: &str) -> Value {
    keywarden::tls::install_crypto_provider();
    let url = format!("{}/_sim/state", base_url.trim_end_matches("/api"));
    reqwest::Client::new()
        .get(url)
        .header("X-API-Key", TEST_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn probe_matches_simulator(api: &str, version: &str) {
    let sim = start_sim(api, 6);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &[("sim-1", &sim.base_url)]);
    let (code, stdout, stderr) = probe(&config, &["--json"]);
    assert_eq!(code, 0, "probe failed: {stdout}\n{stderr}");
    assert!(!stdout.contains(TEST_API_KEY) && !stderr.contains(TEST_API_KEY));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object per server: {stdout}");
    let report: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(report["name"], "sim-1");
    assert_eq!(report["reachable"], true);
    assert_eq!(report["version"], version);
    assert_eq!(report["synchronized"], true);
    assert!(report["error"].is_null());

    let state = sim_state(&sim.base_url).await;
    let held = state["keys"].as_array().unwrap();
    let probed = report["keys"].as_array().unwrap();
    assert_eq!(probed.len(), held.len());
    let mut nonzero = 0;
    for (probed, held) in probed.iter().zip(held) {
        for field in ["id", "uuid", "name"] {
            assert_eq!(probed[field], held[field], "{field}");
        }
        assert_eq!(
            probed["total_bytes"], held["total_bytes"],
            "traffic of {}",
            held["name"]
        );
        nonzero += usize::from(held["total_bytes"].as_u64().unwrap() > 0);
    }
    assert!(
        nonzero > 0,
        "the simulator seeds some traffic, so the comparison means something"
    );

    // The text form names every key and its figure too.
    let (code, text, stderr) = probe(&config, &[]);
    assert_eq!(code, 0, "{text}\n{stderr}");
    for key in held {
        assert!(text.contains(key["uuid"].as_str().unwrap()));
        assert!(text.contains(&key["total_bytes"].to_string()));
    }
}

#[tokio::test]
async fn probe_shows_what_the_v1_simulator_holds() {
    probe_matches_simulator("1", "1.0.0").await;
}

#[tokio::test]
async fn probe_shows_what_the_v2_simulator_holds() {
    probe_matches_simulator("2", "2.3.6").await;
}

#[tokio::test]
async fn probe_exits_2_when_a_server_does_not_answer() {
    let sim = start_sim("1", 2);
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{dead_port}/api");
    let config = write_config(dir.path(), &[("sim-1", &sim.base_url), ("dead-1", &dead)]);
    let (code, stdout, _) = probe(&config, &["--json"]);
    assert_eq!(code, 2);
    let reports: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports[0]["reachable"], true);
    assert_eq!(reports[1]["name"], "dead-1");
    assert_eq!(reports[1]["reachable"], false);
    assert!(
        reports[1]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{}",
        reports[1]
    );

    // --server limits the probe to one server: the live one alone exits 0.
    let (code, stdout, stderr) = probe(&config, &["--json", "--server", "sim-1"]);
    assert_eq!((code, stdout.lines().count()), (0, 1), "{stdout}\n{stderr}");
    let (code, _, stderr) = probe(&config, &["--server", "nope"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no server named \"nope\""), "{stderr}");
}

#[test]
fn probe_with_a_broken_config_exits_2_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[[servers]]\nname = \"x\"\nurl = \"http://127.0.0.1:1/api\"\n",
    )
    .unwrap();
    let (code, _, stderr) = probe(&config, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("api_key"), "{stderr}");
}
