//! Every command that opens the store follows `[agent] store = "postgres"`: `check` (the
//! real binary, against an in-process simulator) records into PostgreSQL, `status` and
//! `usage` read it back from there, and no SQLite file appears in the state directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keywarden::model::JobKind;
use keywarden::store::{DB_FILE, Store};
use keywarden_sim::ApiGeneration;
use support::pg::skip_without_pg;
use support::{TEST_API_KEY, sim};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");

fn write_config(dir: &Path, api: &str) -> PathBuf {
    let text = format!(
        "[agent]\nstate_dir = {:?}\nstore = \"postgres\"\n\n[store.postgres]\nurl_env = \"KW_PG_CMD_URL\"\nagent_name = \"cmd-test\"\n\n\
         [[servers]]\nname = \"fra-1\"\nurl = {api:?}\napi_key_env = \"KW_PG_CMD_KEY\"\ntimeout = \"2s\"\n",
        dir.join("state").display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Run the binary off the async runtime, so the in-process simulator keeps serving.
async fn keywarden(config: &Path, url: &str, words: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = vec![words[0].into(), "-c".into(), config.display().to_string()];
    args.extend(words[1..].iter().map(|w| w.to_string()));
    let url = url.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env("KW_PG_CMD_URL", url)
            .env("KW_PG_CMD_KEY", TEST_API_KEY)
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
async fn check_status_and_usage_use_the_postgres_store() {
    let Some(pg) = skip_without_pg("check_status_and_usage_use_the_postgres_store") else {
        return;
    };
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.base_url());
    let database = pg.database().await;
    let url = pg.url(&database);

    let (code, out, err) = keywarden(&config, &url, &["check", "--job", "health"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = keywarden(&config, &url, &["check", "--job", "quota"]).await;
    assert_eq!(code, 0, "{out}{err}");

    // What check recorded is in PostgreSQL.
    let store = Store::open_postgres(&pg.config(&database, "reader"))
        .await
        .unwrap();
    let runs = store
        .runs()
        .recent("fra-1", JobKind::Health, 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let state = store
        .servers()
        .state("fra-1")
        .await
        .unwrap()
        .expect("server state");
    assert_eq!(state.version.as_deref(), Some("1.0.0"));
    assert_eq!(store.quota().ledger("fra-1").await.unwrap().len(), 2);

    // status and usage read it from there.
    let (code, out, err) = keywarden(&config, &url, &["status"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fra-1") && out.contains("1.0.0"), "{out}");
    let (code, out, err) = keywarden(&config, &url, &["usage", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let usage: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(usage.as_array().map(Vec::len), Some(2), "{usage}");

    assert!(
        !dir.path().join("state").join(DB_FILE).exists(),
        "no SQLite store is written when the store is PostgreSQL"
    );
}
