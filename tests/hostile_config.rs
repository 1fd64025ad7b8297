//! Configuration a careless operator (or a broken disk) would hand keywarden: a dozen
//! values of the wrong type, a secret typed as a number, a huge or endless file,
//! non-UTF-8 bytes, secret files anyone may read, an endless server name, durations of
//! millennia, key lists beyond the old 8 MiB cap. Real files and the real binary where
//! the case is about what the operator sees.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keywarden::alert::{DispatchOptions, Dispatcher, SinkOptions};
use keywarden::config::{JobKind, Severity};
use keywarden::finding::FindingKind;
use keywarden::server_api::ApiErrorKind;
use support::alerts::{Harness, eventually, finding};
use support::hooks::Receiver;
use support::hostile::{Hostile, Key};
use support::{TEST_API_KEY, within};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

fn keywarden(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("CFG_TEST_KEY", TEST_API_KEY)
        .output()
        .expect("run keywarden")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const SERVER: &str = "[[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key_env = \"CFG_TEST_KEY\"\n";

#[test]
fn every_type_error_is_listed_in_one_pass_with_its_place_and_no_secret_value() {
    let dir = tempfile::tempdir().unwrap();
    // Twelve values of the wrong type, one of them a secret typed as a number.
    let text = "\
[agent]
dry_run = \"yes\"
listen = 9477
metrics_per_key = 1
[[servers]]
name = 7
url = \"http://127.0.0.1:9/api\"
api_key = 987654321012
concurrency = \"eight\"
skip_jobs = [\"health\", 3]
[jobs.health]
failures_before_alert = \"three\"
[quotas]
warn_at = [80, \"95\"]
period_day = 1.5
[alerts]
send_resolved = \"no\"
[[alerts.email]]
port = \"587\"
";
    let path = write(dir.path(), "agent.toml", text);
    let output = keywarden(&["validate", "-c", path.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let report = stderr(&output);
    let want = [
        ":2:11: agent.dry_run: invalid type: expected true or false, found a string",
        ":3:10: agent.listen: invalid type: expected a string, found an integer",
        ":4:19: agent.metrics_per_key:",
        ":6:8: servers[0].name:",
        ":8:11: servers[0].api_key: invalid type: expected a string, found an integer",
        ":9:15: servers[0].concurrency:",
        ":10:24: servers[0].skip_jobs[1]:",
        ":12:25: jobs.health.failures_before_alert:",
        ":14:16: quotas.warn_at[1]:",
        ":15:14: quotas.period_day:",
        ":17:17: alerts.send_resolved:",
        ":19:8: alerts.email[0].port:",
    ];
    for line in want {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    assert!(report.contains("12 problems in"), "{report}");
    assert!(
        !report.contains("987654321012"),
        "the secret is echoed:\n{report}"
    );
}

#[test]
fn a_huge_or_endless_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(dir.path(), "big.toml", "# x\n".repeat(600_000));
    for path in [big.as_path(), Path::new("/dev/urandom")] {
        let started = Instant::now();
        let output = keywarden(&["validate", "-c", path.to_str().unwrap()], dir.path());
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("larger than 1024 KiB"),
            "{}",
            stderr(&output)
        );
        // Reading stops at the cap: no minutes of parsing, no gigabytes.
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[test]
fn non_utf8_bytes_are_placed_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"[agent]\nstate_dir = \"/tmp/x\"\ntimezone = \"Eur".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"\n");
    let path = write(dir.path(), "agent.toml", bytes);
    let output = keywarden(&["validate", "-c", path.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("agent.toml:3:16: not UTF-8: byte 0xff"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn thousands_of_problems_are_all_placed_on_their_own_lines() {
    // Placing each problem used to scan the file from the top (quadratic; the timing
    // lives in `cargo bench --bench config_errors`). Here: every one is there, right.
    let mut text = String::from(SERVER);
    for index in 0..5000 {
        text.push_str(&format!(
            "[[quotas.rules]]\nmatch_name = \"k{index}\"\ngrace = \"forever\"\n"
        ));
    }
    let loaded =
        keywarden::config::from_str_with_env(&text, Path::new("/a.toml"), &|_| Some("key".into()));
    let problems = loaded.expect_err("invalid").problems;
    assert_eq!(problems.len(), 5000);
    for (index, problem) in problems.iter().enumerate() {
        assert_eq!(problem.line, Some(5 + 3 * index + 2), "{problem}");
        assert_eq!(problem.path, format!("quotas.rules[{index}].grace"));
    }
}

#[test]
fn secret_files_anyone_may_read_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "fra-1.key", "the-api-key\n");
    let text = "[[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key_file = \"fra-1.key\"\n";
    let path = write(dir.path(), "agent.toml", text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let output = keywarden(&["validate", "-c", path.to_str().unwrap()], dir.path());
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let said = stderr(&output).contains("is readable by group or others");
        assert_eq!(said, warned, "mode {mode:o}: {}", stderr(&output));
    }
}

#[test]
fn run_warns_about_a_readable_secret_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "fra-1.key", "the-api-key\n");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "[agent]\nstate_dir = {:?}\nlisten = \"\"\nlog_format = \"text\"\n[[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key_file = \"fra-1.key\"\n",
        dir.path().join("state").display().to_string()
    );
    let path = write(dir.path(), "agent.toml", text);
    let log = dir.path().join("run.log");
    let mut child = Command::new(BIN)
        .args(["run", "-c", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut seen = String::new();
    while started.elapsed() < Duration::from_secs(20) {
        seen = std::fs::read_to_string(&log).unwrap_or_default();
        if seen.contains("keywarden running") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(seen.contains("keywarden running"), "{seen}");
    assert!(
        seen.contains("fra-1.key is readable by group or others (mode 0644)"),
        "{seen}"
    );
}

fn problem_text(text: &str) -> String {
    match keywarden::config::from_str_with_env(text, Path::new("/a.toml"), &|_| Some("key".into()))
    {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn server_names_are_bounded() {
    let long = "a".repeat(65);
    let text = SERVER.replace("fra-1", &long);
    let report = problem_text(&text);
    assert!(
        report.contains("server name is 65 characters long (at most 64)"),
        "{report}"
    );
    let ok = SERVER.replace("fra-1", &"a".repeat(64));
    assert!(
        keywarden::config::from_str_with_env(&ok, Path::new("/a.toml"), &|_| Some("k".into()))
            .is_ok()
    );
}

#[test]
fn durations_beyond_their_maximum_are_refused() {
    let cases = [
        (
            "[quotas]\ngrace = \"99999999999999d\"\n",
            "quotas.grace",
            "at most 36500d",
        ),
        (
            "[quotas]\ngrace = \"8000years\"\n",
            "quotas.grace",
            "at most 36500d",
        ),
        (
            "[alerts]\nmax_age = \"300000y\"\n",
            "alerts.max_age",
            "at most 365d",
        ),
        (
            "[alerts]\nrepeat_interval = \"2y\"\n",
            "alerts.repeat_interval",
            "at most 365d",
        ),
        (
            "[alerts]\ngroup_wait = \"2h\"\n",
            "alerts.group_wait",
            "at most 1h",
        ),
        (
            "[[servers]]\nname = \"b\"\nurl = \"http://127.0.0.1:9/api\"\napi_key = \"k\"\ntimeout = \"1h\"\n",
            "servers[1].timeout",
            "at most 5m",
        ),
        (
            "[[servers]]\nname = \"b\"\nurl = \"http://127.0.0.1:9/api\"\napi_key = \"k\"\naction_timeout = \"2h\"\n",
            "servers[1].action_timeout",
            "at most 30m",
        ),
    ];
    for (extra, path, limit) in cases {
        let report = problem_text(&format!("{SERVER}{extra}"));
        assert!(
            report.contains(path) && report.contains("too long"),
            "{report}"
        );
        assert!(report.contains(limit), "{report}");
    }
    // At the limit is fine.
    let text = format!("{SERVER}[quotas]\ngrace = \"36500d\"\n[alerts]\nmax_age = \"365d\"\n");
    assert!(
        keywarden::config::from_str_with_env(&text, Path::new("/a.toml"), &|_| Some("k".into()))
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_survives_an_unvalidated_endless_max_age() {
    // Validation refuses it now; the arithmetic must not panic on it either
    // (DateTime - TimeDelta overflowed while /healthz stayed 200).
    let hook = Receiver::start().await;
    let h = Harness::new(&format!(
        "[alerts]\ngroup_wait = \"0s\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = {:?}\n",
        hook.url("/hook")
    ));
    let options = DispatchOptions {
        max_age: Duration::MAX,
        max_idle: Duration::from_millis(20),
        ..support::alerts::options()
    };
    let dispatcher = Dispatcher::start(
        h.pipeline.clone(),
        h.sinks(&SinkOptions::default()),
        options,
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
        "delivery",
        eventually("a notice delivered", || !hook.requests().is_empty()),
    )
    .await;
    assert!(
        dispatcher.shutdown(Duration::from_secs(5)).await,
        "no panicked sink task"
    );
}

/// A key list of `count` keys, as a 2.x server writes it (~250 bytes a key).
fn key_list(count: usize) -> String {
    let keys: Vec<String> = (0..count)
        .map(|n| {
            format!(
                r#"{{"id":"{n:08}-0000-4000-8000-000000000000","name":"customer-{n:06}@example.net","uuid":"{n:08}-1111-4111-8111-111111111111","created_at":"2026-01-01T00:00:00.000000","is_active":true,"port":443,"short_id":"{:08x}"}}"#,
                n
            )
        })
        .collect();
    format!("[{}]", keys.join(","))
}

async fn list_with(server: &Hostile, extra: &str) -> Result<usize, ApiErrorKind> {
    let dir = tempfile::tempdir().unwrap();
    let config = support::agent::config(
        dir.path(),
        &support::agent::server_block("fra-1", &server.base_url(), extra),
    );
    let target = keywarden::app::targets(&config, None).unwrap().remove(0);
    within("key list", target.api.list_keys())
        .await
        .map(|keys| keys.len())
        .map_err(|error| error.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_cap_is_a_server_option_whose_default_fits_200_000_keys() {
    keywarden::tls::install_crypto_provider();
    let server = Hostile::start("2.3.6", vec![Key::new("1", "u1", "a", 0)]).await;
    let list = Arc::new(key_list(200_000));
    assert!(list.len() > 40 << 20, "{} bytes", list.len());
    server.set(|b| b.raw_key_list = Some(list.clone()));
    assert_eq!(
        list_with(&server, "").await,
        Ok(200_000),
        "the default holds it"
    );
    let small = list_with(&server, "max_response_size = \"64 KiB\"\n").await;
    assert_eq!(
        small,
        Err(ApiErrorKind::BodyTooLarge {
            limit_bytes: 65_536
        })
    );
    let report = problem_text(&format!("{SERVER}max_response_size = \"2 GiB\"\n"));
    assert!(report.contains("between 64 KiB and 1 GiB"), "{report}");
}
