//! Two real `keywarden run` processes on one PostgreSQL (issue 13): 20 simulated servers
//! split about half and half; one agent killed with SIGKILL while a quota reset of its
//! is in flight; the survivor holds all 20 within one health interval, repairs drift
//! injected after the kill exactly once, settles the interrupted reset without a second
//! one, and sends no alert twice. And the partition: an agent whose lock connection is
//! cut with `pg_terminate_backend` stops acting at once and resumes after reconnecting,
//! with one repair per drift.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keywarden::lead::fleet::FleetView;
use keywarden::lead::postgres::fleet_view;
use keywarden_sim::{ApiGeneration, Fault, Route, SimServer};
use support::hooks::Receiver;
use support::pg::{PgServer, skip_without_pg};
use support::{TEST_API_KEY, sim};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
/// The health job's interval in these tests: takeover must happen within it.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const MIB: u64 = 1024 * 1024;

/// Two daemons and 20 simulators are a load for two cores: one such test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(90), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Everything both agents share, and what differs (name, state directory).
fn config_text(dir: &Path, agent: &str, servers: &[(String, String)], hook: &str) -> String {
    let mut text = format!(
        r#"[agent]
state_dir = {state:?}
log_format = "json"
listen = "127.0.0.1:0"
store = "postgres"

[store.postgres]
url_env = "KW_PG_URL"
agent_name = "{agent}"
renew_interval = "1s"

[jobs.health]
schedule = "*/5 * * * * *"
failures_before_alert = 1
[jobs.config_sync]
schedule = "*/2 * * * * *"
confirmations = 1
[jobs.quota]
schedule = "*/2 * * * * *"
[jobs.reality]
schedule = "0 0 0 1 1 *"
[jobs.dataplane]
schedule = "0 0 0 1 1 *"

[quotas]
limit = "100 MiB"
warn_at = []
on_exceed = "reset"

[alerts]
group_wait = "0s"
[[alerts.webhook]]
name = "hook"
url = "{hook}"
"#,
        state = dir.join(format!("state-{agent}")).display().to_string(),
    );
    for (name, url) in servers {
        text.push_str(&format!(
            "\n[[servers]]\nname = {name:?}\nurl = {url:?}\napi_key_env = \"KW_API_KEY\"\ntimeout = \"2s\"\naction_timeout = \"10s\"\n"
        ));
    }
    text
}

struct Agent {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(dir: &Path, name: &str, config: &str, pg_url: &str) -> Agent {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&path)
            .env("KW_PG_URL", pg_url)
            .env("KW_API_KEY", TEST_API_KEY)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn keywarden run");
        Agent {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where its /metrics and /healthz are (logged at start; port 0 was asked for).
    async fn http_addr(&self) -> String {
        within(&format!("{} serves /metrics", self.name), async {
            loop {
                let log = self.log();
                if let Some(line) = log.lines().find(|l| l.contains("serving /metrics"))
                    && let Some(at) = line.find("\"addr\":\"")
                {
                    let rest = &line[at + 8..];
                    return rest[..rest.find('"').unwrap()].to_string();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gauge of `keywarden_<name>` from an agent's /metrics.
async fn gauge(addr: &str, name: &str) -> i64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("keywarden_{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

struct Fleet {
    sims: Vec<SimServer>,
    names: Vec<String>,
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        let mut sims = Vec::new();
        for _ in 0..n {
            sims.push(sim(ApiGeneration::V1, 2).await);
        }
        let names = (1..=n).map(|i| format!("srv-{i:02}")).collect();
        Fleet { sims, names }
    }

    fn servers(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .zip(&self.sims)
            .map(|(name, sim)| (name.clone(), sim.base_url()))
            .collect()
    }

    fn sim(&self, name: &str) -> &SimServer {
        &self.sims[self.names.iter().position(|n| n == name).unwrap()]
    }

    fn syncs(&self) -> BTreeMap<String, usize> {
        self.names
            .iter()
            .zip(&self.sims)
            .map(|(name, sim)| (name.clone(), sim.handle().sync_count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

fn requests_to(sim: &SimServer, needle: &str) -> usize {
    sim.handle()
        .requests()
        .iter()
        .filter(|r| r.path.contains(needle))
        .count()
}

async fn view(pg: &PgServer, database: &str, names: &[String]) -> FleetView {
    let admin = pg.admin(database).await;
    fleet_view(&admin, "keywarden", names)
        .await
        .unwrap_or_default()
}

fn led_by(view: &FleetView, agent: &str) -> BTreeSet<String> {
    view.leaders
        .iter()
        .filter(|(_, a)| *a == agent)
        .map(|(s, _)| s.clone())
        .collect()
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// Every (fingerprint, status) the webhook received, with how often.
fn notices(hook: &Receiver) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for request in hook.requests() {
        let body = request.json();
        for alert in body["alerts"].as_array().cloned().unwrap_or_default() {
            let key = (
                alert["fingerprint"].as_str().unwrap_or("").to_string(),
                alert["status"].as_str().unwrap_or("").to_string(),
            );
            *seen.entry(key).or_default() += 1;
        }
    }
    seen
}

async fn split_half_and_half(pg: &PgServer, database: &str, fleet: &Fleet) -> FleetView {
    let mut last = FleetView::default();
    within("both agents lead 10 servers", async {
        loop {
            last = view(pg, database, &fleet.names).await;
            if led_by(&last, "agent-a").len() == 10 && led_by(&last, "agent-b").len() == 10 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivor_takes_over_and_nothing_is_done_twice() {
    let Some(pg) = skip_without_pg("the_survivor_takes_over_and_nothing_is_done_twice") else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let database = within("database", pg.database()).await;
    let url = pg.url(&database);
    let fleet = Fleet::start(20).await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hook_url = hook.url("/hook");
    let servers = fleet.servers();
    let a = Agent::start(
        dir.path(),
        "agent-a",
        &config_text(dir.path(), "agent-a", &servers, &hook_url),
        &url,
    );
    let mut b = Agent::start(
        dir.path(),
        "agent-b",
        &config_text(dir.path(), "agent-b", &servers, &hook_url),
        &url,
    );
    let split = split_half_and_half(pg, &database, &fleet).await;
    let of_b: Vec<String> = led_by(&split, "agent-b").into_iter().collect();
    let (quota_server, drift_server, down_server) = (&of_b[0], &of_b[1], &of_b[2]);
    let a_addr = a.http_addr().await;

    // An alert from agent-b's part of the fleet: delivered once, by the dispatcher.
    fleet.sim(down_server).handle().set_down(true);
    let down_fingerprint = |n: &BTreeMap<(String, String), usize>| {
        n.iter()
            .filter(|((fp, status), _)| fp.contains(down_server.as_str()) && status == "firing")
            .map(|(_, count)| *count)
            .sum::<usize>()
    };
    wait_until("the down alert is delivered", || async {
        down_fingerprint(&notices(&hook)) >= 1
    })
    .await;

    // A quota reset of agent-b's in flight when it is killed: the server does the reset
    // at once but answers only after 4 s.
    let quota_sim = fleet.sim(quota_server);
    let key = quota_sim.handle().keys()[0].id.clone();
    quota_sim.handle().set_counter(&key, 10 * MIB);
    // A 1.x counter moves only for a key with open connections.
    quota_sim.handle().set_connections(&key, 1);
    let reads_before = requests_to(quota_sim, "traffic");
    wait_until("two quota runs read the key (adopted)", || async {
        requests_to(quota_sim, "traffic") >= reads_before + 2
    })
    .await;
    quota_sim
        .handle()
        .fail_next(Route::ResetTraffic, 1, Fault::Delay(Duration::from_secs(4)));
    quota_sim.handle().add_traffic(&key, 150 * MIB);
    wait_until("agent-b's reset reaches the server", || async {
        quota_sim.handle().reset_count() >= 1
    })
    .await;
    b.kill_9();
    let killed_at = Instant::now();

    // Drift after the kill, on a server agent-b led.
    let drift_sim = fleet.sim(drift_server);
    let uuid = drift_sim.handle().config_uuids()[0].clone();
    drift_sim.handle().remove_config_client(&uuid);

    // The survivor holds all 20 within one health interval.
    wait_until("agent-a leads all 20", || async {
        led_by(&view(pg, &database, &fleet.names).await, "agent-a").len() == 20
    })
    .await;
    let took = killed_at.elapsed();
    eprintln!("agent-a held all 20 servers {took:?} after agent-b was killed");
    assert!(
        took < HEALTH_INTERVAL,
        "taken over in {took:?}, more than one health interval"
    );
    assert_eq!(gauge(&a_addr, "leading_servers").await, 20);

    // The drift is repaired once; the interrupted reset is not repeated.
    wait_until("the drift is repaired", || async {
        drift_sim.handle().config_uuids().contains(&uuid)
    })
    .await;
    let reads_after = requests_to(quota_sim, "traffic");
    wait_until("three more config_sync and quota runs", || async {
        requests_to(quota_sim, "traffic") >= reads_after + 3
    })
    .await;
    assert_eq!(
        fleet.syncs(),
        BTreeMap::from([(drift_server.clone(), 1)]),
        "one sync, for the one drift"
    );
    assert_eq!(
        quota_sim.handle().reset_count(),
        1,
        "one reset across the kill"
    );
    assert_eq!(requests_to(quota_sim, "traffic/reset"), 1);

    // No alert twice; the down alert was not sent again by the survivor.
    let seen = notices(&hook);
    assert_eq!(down_fingerprint(&seen), 1, "{seen:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let log = a.log();
    assert!(!log.contains(support::pg::PG_PASSWORD));
    assert!(!log.contains(TEST_API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_agent_stops_acting_and_resumes_without_acting_twice() {
    let Some(pg) = skip_without_pg("a_cut_agent_stops_acting_and_resumes_without_acting_twice")
    else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let database = within("database", pg.database()).await;
    let url = pg.url(&database);
    let fleet = Fleet::start(20).await;
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let hook_url = hook.url("/hook");
    let servers = fleet.servers();
    let a = Agent::start(
        dir.path(),
        "agent-a",
        &config_text(dir.path(), "agent-a", &servers, &hook_url),
        &url,
    );
    let b = Agent::start(
        dir.path(),
        "agent-b",
        &config_text(dir.path(), "agent-b", &servers, &hook_url),
        &url,
    );
    let split = split_half_and_half(pg, &database, &fleet).await;
    let of_b: Vec<String> = led_by(&split, "agent-b").into_iter().collect();
    let b_addr = b.http_addr().await;
    assert_eq!(gauge(&b_addr, "leading_servers").await, 10);

    // Cut agent-b's lock connection and make drift on one of its servers at once.
    let cut = pg.terminate_backends(&database, Some("agent-b")).await;
    assert_eq!(cut, 1, "agent-b's lock connection");
    let drift_sim = fleet.sim(&of_b[0]);
    let uuid = drift_sim.handle().config_uuids()[0].clone();
    drift_sim.handle().remove_config_client(&uuid);

    // It noticed at once (its log says so), reconnected and leads its share again.
    wait_until("agent-b noticed", || async {
        let log = b.log();
        log.contains("leadership connection to PostgreSQL lost")
            || log.contains("leadership round failed")
    })
    .await;
    split_half_and_half(pg, &database, &fleet).await;
    wait_until("agent-b's gauge is back", || async {
        gauge(&b_addr, "leading_servers").await == 10
    })
    .await;
    wait_until("the drift is repaired", || async {
        drift_sim.handle().config_uuids().contains(&uuid)
    })
    .await;
    // A few more config_sync rounds: still one sync.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fleet.syncs(), BTreeMap::from([(of_b[0].clone(), 1)]));
    let twice: Vec<_> = notices(&hook).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    drop(a);
}
