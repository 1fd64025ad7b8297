//! One quota run against a 1.x simulator with 10 000 keys: fetch (key list + bulk
//! traffic over loopback HTTP), parse, ledger update, evaluate, commit. Prints the wall
//! time per run (median of several) and the process's peak memory (VmHWM, which also
//! holds the in-process simulator). Run with `cargo bench --bench quota_run`; not part
//! of `cargo test`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use keywarden::clock::ManualClock;
use keywarden::jobs::{JobContext, RunMode, quota};
use keywarden::server_api::{ClientSettings, ServerApi};
use keywarden::sim::{ApiGeneration, SimOptions, SimServer};
use keywarden::store::Store;

const KEYS: usize = 10_000;
const STEADY_RUNS: usize = 7;
const API_KEY: &str = "bench-api-key";

fn config(state_dir: &std::path::Path, url: &str) -> keywarden::config::Config {
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[[servers]]\nname = \"bench\"\nurl = {url:?}\napi_key_env = \"K\"\ntimeout = \"30s\"\n\
         [quotas]\nlimit = \"100 GiB\"\nwarn_at = [80, 95]\n",
        state_dir.display().to_string()
    );
    keywarden::config::from_str_with_env(&text, &state_dir.join("agent.toml"), &|_| {
        Some(API_KEY.to_string())
    })
    .expect("bench config")
    .config
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    keywarden::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let sim = SimServer::start_local(SimOptions::new(ApiGeneration::V1, KEYS, API_KEY))
        .await
        .expect("sim");
    let handle = sim.handle();
    let keys = handle.keys();
    // Every key busy: each one is in the bulk answer and its counter moves every run.
    for (i, key) in keys.iter().enumerate() {
        handle.set_counter(&key.id, 1_000_000 + i as u64 * 1_000);
        handle.set_connections(&key.id, 1 + (i % 4) as u32);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(config(dir.path(), &sim.base_url()));
    let store = Store::open(dir.path()).expect("store");
    let api = ServerApi::new(ClientSettings::from_config(&config.servers[0]).expect("settings"))
        .expect("client");
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap());
    let before = peak_kib();
    let prober = Arc::new(keywarden::jobs::dataplane::Prober::new(Vec::new()));
    let ctx = JobContext {
        config: &config,
        server: &config.servers[0],
        api: &api,
        store: &store,
        clock: &clock,
        dry_run: false,
        mode: RunMode::Daemon,
        prober: &prober,
    };

    let started = Instant::now();
    let first = quota::run(&ctx).await;
    let adoption = started.elapsed();
    assert!(first.transport_failure.is_none(), "{first:?}");

    let mut steady = Vec::new();
    for _ in 0..STEADY_RUNS {
        for key in &keys {
            handle.add_traffic(&key.id, 65_536);
        }
        clock.advance(chrono::Duration::minutes(10));
        let started = Instant::now();
        let result = quota::run(&ctx).await;
        steady.push(started.elapsed());
        assert!(result.transport_failure.is_none(), "{result:?}");
    }
    let ledger = store.quota_ledger("bench").expect("ledger");
    assert_eq!(ledger.len(), KEYS);
    assert!(
        ledger
            .iter()
            .all(|e| e.used == e.period_total && e.used > 0)
    );

    let fmt = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mib = |kib: Option<u64>| {
        kib.map_or("n/a".to_string(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    println!();
    println!("quota run, 1 server (API 1.x, simulated in-process), {KEYS} keys, every key busy");
    println!("| what | wall time |");
    println!("|---|---|");
    println!("| first run (adopts {KEYS} keys) | {} |", fmt(adoption));
    println!(
        "| steady run, median of {STEADY_RUNS} | {} |",
        fmt(median(steady.clone()))
    );
    println!(
        "| steady run, min / max | {} / {} |",
        fmt(*steady.iter().min().unwrap()),
        fmt(*steady.iter().max().unwrap())
    );
    println!(
        "| peak memory (VmHWM) before the first run | {} |",
        mib(before)
    );
    println!(
        "| peak memory (VmHWM) after all runs | {} |",
        mib(peak_kib())
    );
    sim.shutdown().await;
}
