//! `keywarden usage`, the real binary: a quota check (also the real binary) fills the
//! ledger from an in-process simulator, then `usage` prints it as a table and as JSON.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keywarden::sim::ApiGeneration;
use serde_json::Value;
use support::{TEST_API_KEY, sim};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
const MIB: u64 = 1 << 20;

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let text = format!(
        "[agent]\nstate_dir = {:?}\n\n[[servers]]\nname = \"fra-1\"\nurl = {url:?}\napi_key_env = \"USAGE_TEST_KEY\"\ntimeout = \"2s\"\n\n\
         [quotas]\nlimit = \"100 MiB\"\nadopt = \"count\"\n\n[[quotas.rules]]\nmatch_name = \"Bob*\"\nlimit = \"unlimited\"\n",
        dir.join("state").display().to_string()
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
            .env("USAGE_TEST_KEY", TEST_API_KEY)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_prints_the_ledger_as_a_table_and_as_json() {
    let server = sim(ApiGeneration::V1, 3).await;
    let handle = server.handle();
    let keys = handle.keys();
    for (key, bytes) in keys.iter().zip([90 * MIB, 500 * MIB, 30 * MIB]) {
        handle.set_counter(&key.id, bytes);
        handle.set_connections(&key.id, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.base_url());

    let (code, text, _) = keywarden(&config, &["usage"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("no traffic recorded yet"), "{text}");

    let (code, report, stderr) = keywarden(&config, &["check", "--job", "quota", "--json"]).await;
    assert_eq!(code, 1, "a key at 90% warns: {report}\n{stderr}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["runs"][0]["findings"][0]["kind"], "quota_warning");

    let (code, json, stderr) = keywarden(&config, &["usage", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let rows: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 3);
    let fields = [
        "server",
        "key_id",
        "uuid",
        "name",
        "used_bytes",
        "limit_bytes",
        "percent",
        "period_start",
        "next_reset",
        "rule",
        "last_reset",
        "adopted",
    ];
    for row in rows {
        let mut got: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = fields.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "exactly the documented fields");
    }
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Alice iPhone", "key-003", "Bob laptop"],
        "by percent"
    );
    let alice = &rows[0];
    assert_eq!(alice["server"], "fra-1");
    assert_eq!(alice["key_id"], keys[0].id.as_str());
    assert_eq!(alice["uuid"], keys[0].uuid.as_str());
    assert_eq!(alice["used_bytes"], 90 * MIB);
    assert_eq!(alice["limit_bytes"], 100 * MIB);
    assert_eq!(alice["percent"], 90.0);
    assert_eq!(alice["rule"], "default");
    assert_eq!(alice["last_reset"], Value::Null);
    assert!(alice["next_reset"].as_str().unwrap() > alice["period_start"].as_str().unwrap());
    let bob = &rows[2];
    assert_eq!(
        (bob["limit_bytes"].clone(), bob["percent"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(bob["rule"], "rule 1 (name Bob*)");
    assert_eq!(bob["used_bytes"], 500 * MIB);

    let (code, table, _) = keywarden(&config, &["usage", "--server", "fra-1"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SERVER  NAME"), "{table}");
    assert!(
        lines[1].contains("Alice iPhone") && lines[1].contains("90.0 MiB *"),
        "{table}"
    );
    assert!(
        lines[1].contains("100.0 MiB") && lines[1].contains("90.0"),
        "{table}"
    );
    assert!(
        lines[3].contains("Bob laptop") && lines[3].contains("500.0 MiB *"),
        "{table}"
    );
    assert!(table.contains("* adopted"), "{table}");
    assert!(!table.contains(TEST_API_KEY));

    let (code, _, stderr) = keywarden(&config, &["usage", "--server", "nope"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("no server named \"nope\""), "{stderr}");
}
