//! The real binary as an operator's shell meets it: a second daemon on the same state
//! directory, `status` and `usage` on a read-only state directory, a reader that closes
//! stdout early (`usage --json | head -c 600`), and names full of terminal escapes.
//! Real processes, real files, the simulator or the hostile server on loopback.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use keywarden::sim::ApiGeneration;
use serde_json::Value;
use support::hostile::{Hostile, Key};
use support::{TEST_API_KEY, sim, within};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
const MIB: u64 = 1 << 20;

fn command(config: &Path, words: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg(words[0])
        .arg("-c")
        .arg(config)
        .args(&words[1..])
        .env("PROC_TEST_KEY", TEST_API_KEY)
        .env("RUST_LOG", "warn");
    command
}

/// Run to completion off the async runtime (the servers live in this process).
async fn keywarden(config: &Path, words: &[&str]) -> Output {
    let mut command = command(config, words);
    within(
        "keywarden",
        tokio::task::spawn_blocking(move || command.output().expect("run keywarden")),
    )
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[agent]\nstate_dir = {:?}\nlisten = \"\"\nlog_format = \"text\"\n\n\
         [jobs.health]\nschedule = \"0 0 0 1 1 *\"\n[jobs.config_sync]\nschedule = \"0 0 0 1 1 *\"\n\
         [jobs.reality]\nschedule = \"0 0 0 1 1 *\"\n[jobs.quota]\nschedule = \"0 0 0 1 1 *\"\n\n\
         [[servers]]\nname = \"fra-1\"\nurl = {url:?}\napi_key_env = \"PROC_TEST_KEY\"\ntimeout = \"2s\"\n\n{extra}",
        dir.join("state").display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, log: PathBuf) -> Daemon {
        let child = command(config, &["run"])
            .env("RUST_LOG", "info,tokio_cron_scheduler=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn keywarden run");
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn running(&self) {
        let started = Instant::now();
        while !self.log().contains("keywarden running") {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not running:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn exit_code(&mut self) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_state_dir_exits_2_and_check_still_runs_beside() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.base_url(), "");
    let mut first = Daemon::start(&config, dir.path().join("first.log"));
    first.running().await;

    let mut second = Daemon::start(&config, dir.path().join("second.log"));
    assert_eq!(second.exit_code().await, Some(2), "{}", second.log());
    let said = second.log();
    assert!(
        said.contains("another `keywarden run` is already using the state directory"),
        "{said}"
    );
    assert!(
        said.contains(&format!("pid {}", first.child.id())),
        "{said}"
    );

    let check = keywarden(&config, &["check", "--job", "health"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));

    first.terminate();
    assert_eq!(first.exit_code().await, Some(0), "{}", first.log());
    let third = Daemon::start(&config, dir.path().join("third.log"));
    third.running().await;
    third.terminate();
}

/// A directory nobody may write, not even root (chattr +i), undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    /// `None` when this machine cannot make it read-only for us.
    fn make(dir: &Path) -> Option<ReadOnly> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let _ = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        let guard = ReadOnly(dir.to_path_buf());
        let probe = dir.join("probe");
        match std::fs::write(&probe, b"x") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
                None
            }
            Err(_) => Some(guard),
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_usage_read_a_store_in_a_read_only_directory() {
    let server = sim(ApiGeneration::V1, 3).await;
    for key in server.handle().keys() {
        server.handle().set_counter(&key.id, 5 * MIB);
        server.handle().set_connections(&key.id, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &server.base_url(),
        "[quotas]\nlimit = \"1 GiB\"\n",
    );
    let check = keywarden(&config, &["check", "--job", "all"]).await;
    assert!(check.status.code().is_some(), "{}", stderr(&check));
    let state = dir.path().join("state");
    let Some(_read_only) = ReadOnly::make(&state) else {
        eprintln!("NOTE: cannot make a directory read-only here (root without chattr): skipped");
        return;
    };
    let status = keywarden(&config, &["status", "--json"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let statuses: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(statuses[0]["name"], "fra-1");
    assert!(
        !statuses[0]["last_runs"].as_array().unwrap().is_empty(),
        "{statuses}"
    );
    let usage = keywarden(&config, &["usage", "--json"]).await;
    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    let rows: Value = serde_json::from_str(&stdout(&usage)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    let text = keywarden(&config, &["status"]).await;
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    assert!(stdout(&text).contains("fra-1"));
    // Nothing was written there.
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with("-wal")), "{names:?}");
}

/// Spawn `words` with stdout a pipe whose reader takes `take` bytes and goes away.
async fn with_closing_reader(config: &Path, words: &[&str], take: usize) -> (Option<i32>, String) {
    let mut command = command(config, words);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    within(
        "a command with a closing reader",
        tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("spawn");
            let mut stdout = child.stdout.take().unwrap();
            let mut head = vec![0u8; take];
            let _ = stdout.read_exact(&mut head);
            drop(stdout);
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            (child.wait().unwrap().code(), err)
        }),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_stops_quietly_when_stdout_closes() {
    let server = sim(ApiGeneration::V1, 600).await;
    for key in server.handle().keys() {
        server.handle().set_counter(&key.id, 5 * MIB);
        server.handle().set_connections(&key.id, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &server.base_url(),
        "[quotas]\nlimit = \"1 GiB\"\n",
    );
    let check = keywarden(&config, &["check", "--job", "quota"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    // `usage --json | head -c 600`: 600 keys print far more than a pipe holds.
    let cases: [(&[&str], usize, i32); 8] = [
        (&["usage", "--json"], 600, 0),
        (&["usage"], 600, 0),
        (&["status", "--json"], 100, 0),
        (&["status"], 10, 0),
        (&["probe", "--json"], 600, 0),
        (&["probe"], 600, 0),
        (&["check", "--job", "health", "--json"], 10, 0),
        (&["validate"], 10, 0),
    ];
    for (words, take, code) in cases {
        let (exit, err) = with_closing_reader(&config, words, take).await;
        assert_eq!(exit, Some(code), "{words:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.to_lowercase().contains("broken pipe"),
            "{words:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_output_escapes_what_servers_send_and_json_stays_exact() {
    let names = [
        "\u{1b}[2J\u{1b}[31mred",
        "ok\r\nFORGED LINE: all keys fine",
        "nul\0byte",
        "\u{202e}exe.doc",
    ];
    let keys: Vec<Key> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            Key::new(
                &format!("{n}"),
                &format!("uuid-{n}\u{1b}]0;owned\u{7}"),
                name,
                0,
            )
        })
        .collect();
    let server = Hostile::start("2.3.6", keys).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &server.base_url(),
        "[quotas]\nlimit = \"1 MiB\"\nadopt = \"count\"\n",
    );
    server.set(|b| b.keys.iter_mut().for_each(|k| k.counter = 2 * MIB));
    let raw = ['\u{1b}', '\r', '\0', '\u{202e}', '\u{7}'];
    let unsafe_in = |text: &str| text.chars().any(|c| raw.contains(&c));

    let probe = keywarden(&config, &["probe"]).await;
    let shown = stdout(&probe);
    assert!(!unsafe_in(&shown), "raw control characters:\n{shown:?}");
    for escaped in [
        "\\u{1b}[2J",
        "ok\\r\\nFORGED",
        "nul\\0byte",
        "\\u{202e}exe.doc",
    ] {
        assert!(shown.contains(escaped), "{escaped} in:\n{shown}");
    }
    assert!(
        !shown.lines().any(|line| line.starts_with("FORGED")),
        "a forged line:\n{shown}"
    );
    let json = keywarden(&config, &["probe", "--json"]).await;
    let report: Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    let got: Vec<&str> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, names, "JSON is exact");

    let check = keywarden(&config, &["check", "--job", "quota"]).await;
    let shown = stdout(&check);
    assert!(shown.contains("quota_exceeded"), "{shown}");
    assert!(!unsafe_in(&shown), "raw control characters:\n{shown:?}");
    assert!(shown.contains("uuid-0\\u{1b}]0;owned\\u{7}"), "{shown}");

    let usage = keywarden(&config, &["usage"]).await;
    let shown = stdout(&usage);
    assert!(!unsafe_in(&shown), "raw control characters:\n{shown:?}");
    assert!(shown.contains("uuid-1\\u{1b}]0;owned\\u{7}"), "{shown}");
    let json = keywarden(&config, &["usage", "--json"]).await;
    let rows: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["uuid"] == "uuid-2\u{1b}]0;owned\u{7}"),
        "{rows}"
    );
}
