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

/// With a shared fleet, `check --notify` delivers only when it can take the alert
/// dispatcher's lock; while an agent holds it, the notices are left to that agent
/// (both would send them otherwise), and nothing is lost: once the lock is free, the
/// next `check --notify` delivers what was queued, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_notify_leaves_the_outbox_to_the_dispatcher_lock_holder() {
    let Some(pg) = skip_without_pg("check_notify_leaves_the_outbox_to_the_dispatcher_lock_holder")
    else {
        return;
    };
    let hook = support::hooks::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\nstore = \"postgres\"\n\n[store.postgres]\nurl_env = \"KW_PG_CMD_URL\"\nagent_name = \"cmd-test\"\n\n\
             [jobs.health]\nfailures_before_alert = 1\n\n\
             [[servers]]\nname = \"fra-1\"\nurl = \"http://127.0.0.1:9/api\"\napi_key_env = \"KW_PG_CMD_KEY\"\ntimeout = \"1s\"\n\n\
             [alerts]\ngroup_wait = \"0s\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
            dir.path().join("state").display().to_string(),
            hook.url("/hook")
        ),
    )
    .unwrap();
    let database = pg.database().await;
    let url = pg.url(&database);
    // An agent of the fleet holds the dispatcher's lock (the default schema's key).
    let holder = pg.admin(&database).await;
    let key = keywarden::lead::plan::dispatcher_lock_key("keywarden");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();

    let words = ["check", "--notify", "--job", "health"];
    let (code, out, err) = keywarden(&config, &url, &words).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("notifications: 0 delivered"), "{out}");
    assert!(
        out.contains("not delivered here: the agent holding the alert dispatcher lock"),
        "{out}"
    );
    assert!(
        out.contains("hook: 1 not delivered, left queued for it"),
        "{out}"
    );
    assert!(
        hook.requests().is_empty(),
        "delivered beside the lock holder"
    );

    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let (code, out, err) = keywarden(&config, &url, &words).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("notifications: 1 delivered"), "{out}");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "the queued notice, once");
    assert_eq!(
        requests[0].json()["alerts"][0]["kind"],
        "server_unreachable"
    );
}
