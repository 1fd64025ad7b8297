//! The fault soak: the whole agent (scheduler, runner, jobs, alert pipeline, dispatcher,
//! email and webhook sinks) on second-level schedules against simulated servers of both
//! generations that fail at random with every fault the simulator has, while the SMTP
//! relay and the webhook receiver go down and up. Traffic grows all the time. At the end
//! the faults stop, everything heals, and it checks: no panic; RSS growth within 10%
//! from the warm-up mark to the end; every notice delivered, none lost, each firing
//! alert at most once per repeat window; the usage ledger equal to the simulator's true
//! traffic within the documented tolerance (docs/performance.md).
//!
//! Shared by `examples/soak` (the long run) and `tests/soak_short.rs` (60 s in `cargo
//! test`), which include this file by path; it uses `crate::smtp` (tests/support).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keywarden::agent::{Agent, AgentOptions};
use keywarden::alert::DispatchOptions;
use keywarden::clock::SystemClock;
use keywarden::config::{Config, JobKind};
use keywarden::jobs::RunMode;
use keywarden::jobs::runner::RunOptions;
use keywarden_sim::{ApiGeneration, Fault, Route, SimHandle, SimOptions, SimServer};
use serde::Serialize;

use crate::smtp::{Security, SmtpServer};

const API_KEY: &str = "soak-api-key-7d1e";
/// Repeat window of firing alerts (short, so that a soak sees many).
const REPEAT_SECS: i64 = 20;
/// Keys per simulated server.
const KEYS: usize = 12;

/// How to soak.
#[derive(Debug, Clone)]
pub struct Options {
    pub servers: usize,
    pub duration: Duration,
    /// Seed of the fault and traffic choices (the same seed, the same choices).
    pub seed: u64,
    /// One fault injected this often on average.
    pub fault_every: Duration,
    /// RSS growth is measured from this point of the run to its end.
    pub warm_up: Duration,
}

impl Options {
    pub fn new(servers: usize, duration: Duration) -> Options {
        Options {
            servers,
            duration,
            seed: 11,
            fault_every: Duration::from_millis(1500),
            // Minute 2 for a long run; a third of a short one.
            warm_up: Duration::from_secs(120).min(duration / 3),
        }
    }
}

/// One checked property.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What the soak saw.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub servers: usize,
    pub duration_s: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub runs: u64,
    pub webhook_notices: usize,
    pub mails: usize,
    pub rss_mib_at_warm_up: f64,
    pub rss_mib_at_end: f64,
    pub checks: Vec<Check>,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Panics anywhere in the process since `install_panic_counter`.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn install_panic_counter() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// A loopback webhook receiver that can go down (503, nothing recorded).
struct Hook {
    url: String,
    up: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start() -> anyhow::Result<Hook> {
        let up = Arc::new(AtomicBool::new(true));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (u, r) = (up.clone(), received.clone());
        let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (up, received) = (u.clone(), r.clone());
            async move {
                if !up.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                match serde_json::from_slice(&body) {
                    Ok(json) => {
                        lock(&received).push(json);
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Hook {
            url,
            up,
            received,
            task,
        })
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn config(
    dir: &std::path::Path,
    servers: &[SimServer],
    smtp_port: u16,
    hook: &str,
) -> anyhow::Result<Arc<Config>> {
    let mut text = format!(
        "[agent]\nstate_dir = {:?}\nlisten = \"\"\n\n\
         [jobs.health]\nschedule = \"*/2 * * * * *\"\nfailures_before_alert = 2\n\
         [jobs.config_sync]\nschedule = \"*/5 * * * * *\"\nmax_syncs_per_hour = 30\n\
         [jobs.reality]\nschedule = \"*/10 * * * * *\"\n\
         [jobs.quota]\nschedule = \"*/3 * * * * *\"\n\
         [jobs.dataplane]\nschedule = \"*/7 * * * * *\"\nhandshake_timeout = \"2s\"\n\n\
         [quotas]\nlimit = \"1000 GiB\"\n\n\
         [alerts]\nrepeat_interval = \"{REPEAT_SECS}s\"\nsend_resolved = true\ngroup_wait = \"1s\"\n\n\
         [[alerts.email]]\nname = \"mail\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n\
         from = \"keywarden <alerts@example.net>\"\nto = [\"ops@example.net\"]\ntimeout = \"3s\"\n\n\
         [[alerts.webhook]]\nname = \"hook\"\nurl = {hook:?}\nformat = \"json\"\ntimeout = \"3s\"\n",
        dir.join("state").display().to_string()
    );
    for (index, server) in servers.iter().enumerate() {
        let ca = dir.join(format!("ca-{index}.pem"));
        std::fs::write(&ca, server.ca_pem())?;
        text.push_str(&format!(
            "\n[[servers]]\nname = \"s{index:02}\"\nurl = {:?}\napi_key_env = \"SOAK_KEY\"\n\
             timeout = \"2s\"\naction_timeout = \"5s\"\nreality_ca_file = {:?}\n",
            server.base_url(),
            ca.display().to_string()
        ));
    }
    let env = |name: &str| (name == "SOAK_KEY").then(|| API_KEY.to_string());
    let loaded = keywarden::config::from_str_with_env(&text, &dir.join("agent.toml"), &env)
        .map_err(|errors| anyhow::anyhow!("soak config: {errors}"))?;
    Ok(Arc::new(loaded.config))
}

/// The faults injected, by name.
const FAULTS: [&str; 14] = [
    "down",
    "hang",
    "html_page",
    "truncated_json",
    "status_401",
    "status_429",
    "status_500",
    "ignored_reset",
    "noop_sync",
    "drift_returns",
    "counter_drop",
    "xray_stopped",
    "smtp_down",
    "webhook_down",
];

/// What the traffic and the faults did to the usage keywarden can know.
#[derive(Default, Clone)]
struct Truth {
    /// Bytes added per server since the baseline.
    added: HashMap<String, u64>,
    /// Bytes no reading could see: added after keywarden's last reading of a key whose
    /// counter then dropped to 0 (a reset by someone else).
    unseen: HashMap<String, u64>,
}

/// Everything the injector needs.
struct World {
    names: Vec<String>,
    handles: Vec<SimHandle>,
    smtp: Arc<SmtpServer>,
    hook_up: Arc<AtomicBool>,
    store: Arc<keywarden::store::Store>,
    truth: Mutex<Truth>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
}

impl World {
    /// Inject one fault on server `at`; switches undo themselves after `hold`.
    async fn inject(self: &Arc<Self>, fault: &'static str, at: usize, rng: &mut fastrand::Rng) {
        *lock(&self.faults).entry(fault).or_default() += 1;
        let handle = self.handles[at].clone();
        let hold = Duration::from_millis(rng.u64(3_000..12_000));
        let calls = rng.usize(1..4);
        let key = handle.keys()[rng.usize(..KEYS)].clone();
        match fault {
            "down" => handle.set_down_for(hold),
            "hang" => handle.fail_next(Route::Any, calls, Fault::Delay(Duration::from_secs(4))),
            "html_page" => handle.fail_next(Route::Any, calls, Fault::Html { status: 502 }),
            "truncated_json" => handle.fail_next(Route::Any, calls, Fault::TruncatedJson),
            "status_401" => handle.fail_next(
                Route::Any,
                calls,
                status(
                    401,
                    "Invalid API key. Use X-API-Key header with the correct key.",
                ),
            ),
            "status_429" => handle.fail_next(
                Route::Any,
                calls,
                Fault::RateLimited {
                    retry_after: Some(1),
                },
            ),
            "status_500" => handle.fail_next(
                Route::Any,
                calls,
                status(500, "Failed to read keys: disk I/O error"),
            ),
            "ignored_reset" => {
                handle.set_resets_ignored(true);
                self.later(hold, move || handle.set_resets_ignored(false));
            }
            "noop_sync" => {
                handle.set_sync_noop(true);
                self.later(hold, move || handle.set_sync_noop(false));
            }
            "drift_returns" => {
                handle.set_drift_returns(true);
                handle.remove_config_client(&key.uuid);
                self.later(hold, move || handle.set_drift_returns(false));
            }
            "counter_drop" => {
                // What keywarden last read of this key; the bytes since are lost to it.
                let name = &self.names[at];
                let seen = self
                    .store
                    .quota()
                    .ledger(name)
                    .await
                    .ok()
                    .and_then(|ledger| {
                        ledger
                            .into_iter()
                            .find(|e| e.uuid == key.uuid)
                            .and_then(|e| e.counter)
                    });
                let now = handle
                    .keys()
                    .into_iter()
                    .find(|k| k.uuid == key.uuid)
                    .map(|k| k.total_bytes);
                if let (Some(seen), Some(now)) = (seen, now) {
                    *lock(&self.truth).unseen.entry(name.clone()).or_default() +=
                        now.saturating_sub(seen);
                    handle.set_counter(&key.id, 0);
                }
            }
            "xray_stopped" => handle.stop_xray().await,
            "smtp_down" => {
                self.smtp.set_down(true);
                let smtp = self.smtp.clone();
                self.later(hold, move || smtp.set_down(false));
            }
            "webhook_down" => {
                self.hook_up.store(false, Ordering::SeqCst);
                let up = self.hook_up.clone();
                self.later(hold, move || up.store(true, Ordering::SeqCst));
            }
            _ => unreachable!("every fault is listed"),
        }
    }

    fn later(&self, after: Duration, undo: impl FnOnce() + Send + 'static) {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            undo();
        });
    }

    /// Grow a few keys of every server (each with a connection, so 1.x lists it).
    fn traffic(&self, rng: &mut fastrand::Rng) {
        let mut truth = lock(&self.truth);
        for (handle, name) in self.handles.iter().zip(&self.names) {
            let keys = handle.keys();
            for _ in 0..3 {
                let key = &keys[rng.usize(..keys.len())];
                let bytes = rng.u64(100_000..5_000_000);
                handle.add_traffic(&key.id, bytes);
                *truth.added.entry(name.clone()).or_default() += bytes;
            }
        }
    }

    /// Every fault off, every relay up; Xray running.
    async fn heal(&self) {
        for handle in &self.handles {
            handle.clear_faults();
            handle.set_down(false);
            handle.set_resets_ignored(false);
            handle.set_sync_noop(false);
            handle.set_drift_returns(false);
            if !handle.xray_running() {
                handle.start_xray().await;
            }
        }
        self.smtp.set_down(false);
        self.hook_up.store(true, Ordering::SeqCst);
    }
}

fn status(status: u16, detail: &str) -> Fault {
    Fault::Status {
        status,
        detail: detail.to_string(),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

const FINAL: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: false,
};

/// Run the soak; `Err` only when it could not be set up.
pub async fn soak(options: Options) -> anyhow::Result<Summary> {
    install_panic_counter();
    keywarden::tls::install_crypto_provider();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let mut servers = Vec::new();
    for index in 0..options.servers {
        let generation = if index % 2 == 0 {
            ApiGeneration::V1
        } else {
            ApiGeneration::V2
        };
        let sim_options = SimOptions {
            seed: options.seed + index as u64,
            ..SimOptions::new(generation, KEYS, API_KEY)
        };
        let server = SimServer::start_local(sim_options).await?;
        let handle = server.handle();
        handle.set_request_log_limit(0);
        for key in handle.keys() {
            handle.set_connections(&key.id, 1);
        }
        servers.push(server);
    }
    let smtp = Arc::new(SmtpServer::start(Security::Plain, None).await);
    let hook = Hook::start().await?;
    let dir = tempfile::tempdir()?;
    let config = config(dir.path(), &servers, smtp.addr.port(), &hook.url)?;
    let mut agent_options = AgentOptions::new(Arc::new(SystemClock), &config);
    agent_options.dispatch = DispatchOptions {
        backoff_base: Duration::from_millis(500),
        backoff_max: Duration::from_secs(4),
        max_age: Duration::from_secs(3600),
        max_idle: Duration::from_millis(200),
    };
    let agent = Agent::start(config.clone(), agent_options).await?;
    let names: Vec<String> = config.servers.iter().map(|s| s.name.clone()).collect();
    let world = Arc::new(World {
        names: names.clone(),
        handles: servers.iter().map(SimServer::handle).collect(),
        smtp: smtp.clone(),
        hook_up: hook.up.clone(),
        store: agent.store.clone(),
        truth: Mutex::new(Truth::default()),
        faults: Mutex::new(BTreeMap::new()),
    });

    // The baseline: every server's ledger adopted before traffic and faults start.
    let targets = keywarden::app::targets(&config, None)?;
    for target in &targets {
        agent.runner.run(target, JobKind::Quota, FINAL).await;
    }

    let started = Instant::now();
    let stop = tokio_util::sync::CancellationToken::new();
    let chaos = {
        let (world, stop, every) = (world.clone(), stop.clone(), options.fault_every);
        let mut rng = fastrand::Rng::with_seed(options.seed);
        tokio::spawn(async move {
            let tick = Duration::from_millis(250);
            let chance = tick.as_secs_f64() / every.as_secs_f64().max(0.001);
            for n in 0u64.. {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(tick) => {}
                }
                if n % 2 == 0 {
                    world.traffic(&mut rng);
                }
                if rng.f64() < chance {
                    let fault = FAULTS[rng.usize(..FAULTS.len())];
                    let at = rng.usize(..world.handles.len());
                    world.inject(fault, at, &mut rng).await;
                }
            }
        })
    };
    let mut rss_at_warm_up = None;
    while started.elapsed() < options.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        agent.tick().await;
        if rss_at_warm_up.is_none() && started.elapsed() >= options.warm_up {
            rss_at_warm_up = Some(rss_kib());
        }
    }
    stop.cancel();
    let _ = chaos.await;
    let rss_at_end = rss_kib();

    // Heal, let the agent see it (the switches' undo timers may still be pending: they
    // only turn faults off), then read every server's traffic once more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.heal().await;
    let settle_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        agent.tick().await;
    }
    for target in &targets {
        agent.runner.run(target, JobKind::Quota, FINAL).await;
    }
    // Every notice out: the dispatcher retries until the outbox is empty.
    let drained_by = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = agent.store.alerts().counts().await.unwrap_or_default();
        if counts.iter().all(|c| c.pending == 0) || Instant::now() > drained_by {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        agent.tick().await;
    };
    let ended_at = Utc::now();
    let runs = agent.runner.stats().runs;
    let mut checks = Vec::new();

    let panics = PANICS.load(Ordering::SeqCst) - panics_before + agent.runner.stats().panics;
    checks.push(Check {
        name: "no panics",
        ok: panics == 0,
        detail: format!("{panics} panics"),
    });

    let warm = rss_at_warm_up.unwrap_or(rss_at_end).max(1);
    let growth = (rss_at_end as f64 - warm as f64) / warm as f64 * 100.0;
    checks.push(Check {
        name: "RSS growth <= 10% after warm-up",
        ok: growth <= 10.0,
        detail: format!(
            "{:.1} MiB -> {:.1} MiB ({growth:+.1}%)",
            warm as f64 / 1024.0,
            rss_at_end as f64 / 1024.0
        ),
    });

    let (pending, dropped, delivered): (u64, u64, u64) =
        counts.iter().fold((0, 0, 0), |(p, d, v), c| {
            (p + c.pending, d + c.dropped, v + c.delivered)
        });
    checks.push(Check {
        name: "no notice lost",
        ok: pending == 0 && dropped == 0 && delivered > 0,
        detail: format!("{delivered} delivered, {pending} pending, {dropped} dropped ({counts:?})"),
    });

    let received = lock(&hook.received).clone();
    let hook_delivered = counts
        .iter()
        .filter(|c| c.sink == "hook")
        .map(|c| c.delivered)
        .sum::<u64>();
    let (items, windows) = repeat_windows(&received, ended_at);
    checks.push(Check {
        name: "every webhook notice received once",
        ok: items as u64 == hook_delivered,
        detail: format!("{items} alert notices received, {hook_delivered} delivered by the outbox"),
    });
    checks.push(Check {
        name: "each firing alert at most once per repeat window",
        ok: windows.is_empty(),
        detail: if windows.is_empty() {
            format!("{} notices checked against a {REPEAT_SECS}s window", items)
        } else {
            windows.join("; ")
        },
    });
    let mails = smtp.mails().len();
    checks.push(Check {
        name: "email delivered",
        ok: mails > 0,
        detail: format!("{mails} mails"),
    });

    let truth = lock(&world.truth).clone();
    let usage = usage_check(&agent.store, &names, &truth).await;
    checks.push(usage);

    let faults = lock(&world.faults).clone();
    let summary = Summary {
        servers: options.servers,
        duration_s: options.duration.as_secs(),
        faults,
        runs,
        webhook_notices: items,
        mails,
        rss_mib_at_warm_up: (warm as f64 / 102.4).round() / 10.0,
        rss_mib_at_end: (rss_at_end as f64 / 102.4).round() / 10.0,
        checks,
    };
    agent.shutdown(Duration::from_secs(10)).await;
    drop(servers);
    Ok(summary)
}

/// Alert notices received, and every firing alert notified more often than once per
/// repeat window: an episode (fingerprint, started_at) may be notified firing at most
/// 1 + (its length / window) times, plus once per change of severity.
fn repeat_windows(received: &[serde_json::Value], end: DateTime<Utc>) -> (usize, Vec<String>) {
    #[derive(Default)]
    struct Episode {
        firing: u32,
        resolved: u32,
        severities: std::collections::BTreeSet<String>,
        ended: Option<DateTime<Utc>>,
    }
    let mut episodes: BTreeMap<(String, String), Episode> = BTreeMap::new();
    let mut items = 0;
    for body in received {
        for alert in body["alerts"].as_array().into_iter().flatten() {
            items += 1;
            let key = (
                alert["fingerprint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                alert["started_at"].as_str().unwrap_or_default().to_string(),
            );
            let episode = episodes.entry(key).or_default();
            if alert["status"] == "resolved" {
                episode.resolved += 1;
                episode.ended = alert["ended_at"].as_str().and_then(|t| t.parse().ok());
            } else {
                episode.firing += 1;
                episode.severities.insert(alert["severity"].to_string());
            }
        }
    }
    let mut violations = Vec::new();
    for ((fingerprint, started), episode) in &episodes {
        let start: DateTime<Utc> = started.parse().unwrap_or(end);
        let length = (episode.ended.unwrap_or(end) - start).num_seconds().max(0);
        let allowed = 1 + length / REPEAT_SECS + episode.severities.len().saturating_sub(1) as i64;
        if i64::from(episode.firing) > allowed
            || episode.resolved > 1
            || (episode.resolved == 1 && episode.firing == 0)
        {
            violations.push(format!(
                "{fingerprint} from {started}: {} firing (at most {allowed}), {} resolved",
                episode.firing, episode.resolved
            ));
        }
    }
    (items, violations)
}

/// The ledger's usage next to the true traffic, per server. Tolerance: exact, except
/// for bytes no reading could see (added between keywarden's last reading of a key and
/// an outside drop of its counter), which are subtracted from the truth; a race of
/// that bookkeeping with a reading in flight is allowed 1% of the server's traffic.
async fn usage_check(store: &keywarden::store::Store, names: &[String], truth: &Truth) -> Check {
    let mut worst = 0.0f64;
    let mut lines = Vec::new();
    let (mut total_true, mut total_seen) = (0u64, 0u64);
    for name in names {
        let ledger = store.quota().ledger(name).await.unwrap_or_default();
        let seen: u64 = ledger.iter().map(|e| e.period_total).sum();
        let added = truth.added.get(name).copied().unwrap_or(0);
        let unseen = truth.unseen.get(name).copied().unwrap_or(0);
        let expected = added.saturating_sub(unseen);
        let off = (seen as f64 - expected as f64).abs() / (added.max(1) as f64) * 100.0;
        worst = worst.max(off);
        total_true += expected;
        total_seen += seen;
        if off > 1.0 {
            lines.push(format!(
                "{name}: ledger {seen}, true {expected} (added {added}, unseen {unseen})"
            ));
        }
    }
    Check {
        name: "usage equals the true traffic (tolerance 1%)",
        ok: lines.is_empty() && total_true > 0,
        detail: if lines.is_empty() {
            format!("ledger {total_seen} B, true {total_true} B, worst server {worst:.3}% off")
        } else {
            lines.join("; ")
        },
    }
}
