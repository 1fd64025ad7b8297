//! What one cycle of every job costs at fleet scale:
//!
//! ```text
//! cargo run --release --example fleet -- --servers 500 --keys 200 --api 1 [--latency-ms L]
//! ```
//!
//! N simulated servers run in child processes of this example (`--serve`, below), so the
//! memory and CPU it reports are keywarden's alone. This process runs one cycle of every
//! job through the real scheduler (each job once on every server, due at the same
//! second), the real runner, the shared HTTP clients and a fresh SQLite store, one job
//! after another, and prints one JSON line: wall seconds per job, requests the servers
//! answered, peak RSS, CPU, store size and bytes written. Figures and targets are in
//! docs/performance.md.
//!
//! `--serve` only starts the servers (`--first`, `--servers`), prints one JSON line with
//! their base URLs and test CAs, then answers `count` (requests answered so far) on stdin
//! until stdin closes: benches/python_compare.py uses it too.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use clap::Parser;
use keywarden::clock::{Clock, SystemClock};
use keywarden::config::{Config, JobKind, Schedule};
use keywarden::jobs::RunMode;
use keywarden::jobs::runner::{RunOptions, Runner};
use keywarden::scheduler::{ScheduledTask, Scheduler};
use keywarden_sim::{ApiGeneration, SimOptions, SimServer};
use serde::{Deserialize, Serialize};

const API_KEY: &str = "fleet-bench-api-key";
/// Listening sockets one server process may hold (the file limit here is 20 000).
const LISTENERS_PER_PROCESS: usize = 15_000;

#[derive(Parser, Debug)]
struct Args {
    /// Simulated servers.
    #[arg(long, default_value_t = 500)]
    servers: usize,
    /// Keys per server (2.x servers hold at most 100).
    #[arg(long, default_value_t = 200)]
    keys: usize,
    /// API generation: 1 or 2.
    #[arg(long, default_value_t = 1)]
    api: u8,
    /// Milliseconds every API request waits before it is answered.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Only serve the servers (see the module docs).
    #[arg(long)]
    serve: bool,
    /// With --serve: the index of the first server (seeds and addresses follow it).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Cycles to run on one store: the first meets empty memories (every ledger
    /// adopted, every key's link fetched), the later ones are the daemon's steady state.
    #[arg(long, default_value_t = 2)]
    cycles: usize,
}

/// One served server, as `--serve` prints it.
#[derive(Debug, Serialize, Deserialize)]
struct Served {
    url: String,
    ca_pem: String,
}

fn generation(api: u8) -> ApiGeneration {
    if api == 2 {
        ApiGeneration::V2
    } else {
        ApiGeneration::V1
    }
}

/// Server `index`'s own loopback address for its VLESS listeners: 127.0.0.1 alone has
/// too few ports for 500 servers of 100 ports each.
fn dataplane_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1 + (index / 250) as u8, 0, 1 + (index % 250) as u8)
}

fn main() -> anyhow::Result<()> {
    keywarden::process::tune_allocator();
    let args = Args::parse();
    keywarden::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.serve {
        runtime.block_on(serve(&args))
    } else {
        let report = runtime.block_on(cycle(&args))?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

async fn serve(args: &Args) -> anyhow::Result<()> {
    let mut servers = Vec::with_capacity(args.servers);
    for index in args.first..args.first + args.servers {
        let options = SimOptions {
            seed: index as u64,
            latency: Duration::from_millis(args.latency_ms),
            dataplane_ip: dataplane_ip(index),
            ..SimOptions::new(generation(args.api), args.keys, API_KEY)
        };
        let server = SimServer::start_local(options).await?;
        let handle = server.handle();
        handle.seed_traffic();
        // Count requests without keeping a record of each.
        handle.set_request_log_limit(0);
        // A cycle asks for the key list once per server; a second cycle within the
        // minute must not meet the 2.x limit of 30 a minute either.
        handle.set_keys_rate_limit(1_000_000, Duration::from_secs(60));
        servers.push(server);
    }
    let served: Vec<Served> = servers
        .iter()
        .map(|s| Served {
            url: s.base_url(),
            ca_pem: s.ca_pem(),
        })
        .collect();
    println!("{}", serde_json::to_string(&served)?);
    std::io::stdout().flush()?;
    let handles: Vec<_> = servers.iter().map(SimServer::handle).collect();
    // Lines from stdin on a blocking thread; the servers keep serving meanwhile.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim() == "count" {
            let total: u64 = handles.iter().map(|h| h.request_count()).sum();
            println!("{total}");
            std::io::stdout().flush()?;
        }
    }
    drop(servers);
    Ok(())
}

/// Child processes serving the fleet.
struct Fleet {
    children: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
    servers: Vec<Served>,
}

impl Fleet {
    fn start(args: &Args) -> anyhow::Result<Fleet> {
        let per_server = if args.api == 2 { args.keys.min(100) } else { 1 } + 1;
        let per_process = (LISTENERS_PER_PROCESS / per_server).max(1);
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        let mut servers = Vec::new();
        let mut first = 0;
        while first < args.servers {
            let count = per_process.min(args.servers - first);
            let mut child = Command::new(&exe)
                .args(["--serve", "--first", &first.to_string()])
                .args(["--servers", &count.to_string()])
                .args(["--keys", &args.keys.to_string()])
                .args(["--api", &args.api.to_string()])
                .args(["--latency-ms", &args.latency_ms.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let stdin = child.stdin.take().expect("piped stdin");
            let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            let batch: Vec<Served> = serde_json::from_str(&line)
                .map_err(|e| anyhow::anyhow!("fleet server process: {e}: {line:?}"))?;
            servers.extend(batch);
            children.push((child, stdin, stdout));
            first += count;
        }
        Ok(Fleet { children, servers })
    }

    /// Requests the servers answered so far.
    fn requests(&mut self) -> anyhow::Result<u64> {
        let mut total = 0;
        for (_, stdin, stdout) in &mut self.children {
            writeln!(stdin, "count")?;
            stdin.flush()?;
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            total += line.trim().parse::<u64>()?;
        }
        Ok(total)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (mut child, stdin, _) in self.children.drain(..) {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn config(dir: &Path, args: &Args, servers: &[Served]) -> anyhow::Result<Arc<Config>> {
    // One bundle of every server's test CA: one TLS setting for the whole fleet (a real
    // fleet's Reality ports show certificates of public CAs, and need no bundle at all).
    let bundle = dir.join("fleet-ca.pem");
    let pems: String = servers.iter().map(|s| s.ca_pem.as_str()).collect();
    std::fs::write(&bundle, pems)?;
    let mut text = format!(
        "[agent]\nstate_dir = {:?}\n\n[quotas]\nlimit = \"100 GiB\"\nwarn_at = [80, 95]\n",
        dir.join("state").display().to_string()
    );
    for (index, server) in servers.iter().enumerate() {
        text.push_str(&format!(
            "\n[[servers]]\nname = \"srv-{index:04}\"\nurl = {:?}\napi_key_env = \"FLEET_KEY\"\n\
             timeout = \"30s\"\nreality_ca_file = {:?}\n",
            server.url,
            bundle.display().to_string()
        ));
    }
    let env = |name: &str| (name == "FLEET_KEY").then(|| API_KEY.to_string());
    let loaded = keywarden::config::from_str_with_env(&text, &dir.join("agent.toml"), &env)
        .map_err(|errors| anyhow::anyhow!("fleet config: {errors}"))?;
    // Each (job, server) is started by the scheduler at one due time below; the
    // configured schedules are not used.
    let _ = args;
    Ok(Arc::new(loaded.config))
}

/// A cron schedule due at `at` (UTC, to the second) and next a day later: the cycle
/// is over long before.
fn once_at(at: chrono::DateTime<Utc>) -> Schedule {
    let expr = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    Schedule::parse(&expr).expect("a daily schedule")
}

#[derive(Debug, Serialize)]
struct JobFigures {
    job: &'static str,
    /// From the first run's start to the last run's end.
    wall_s: f64,
    /// CPU seconds (user + sys) of this process while the job ran.
    cpu_s: f64,
    requests: u64,
    /// Runs that did not end OK (errors, warnings, criticals, skips).
    not_ok: usize,
    first_problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct CycleFigures {
    jobs: Vec<JobFigures>,
    wall_s: f64,
    requests: u64,
    cpu_s: f64,
    store_written_mib: f64,
    /// VmHWM at the end of this cycle (peak since start).
    peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    servers: usize,
    keys: usize,
    api: u8,
    latency_ms: u64,
    cycles: Vec<CycleFigures>,
    peak_rss_mib: f64,
    store_mib: f64,
}

const SCHEDULED: RunOptions = RunOptions {
    dry_run: false,
    mode: RunMode::Daemon,
    respect_backoff: true,
};

type Ended = Arc<Mutex<Vec<(Instant, Instant, keywarden::jobs::runner::RunReport)>>>;

async fn cycle(args: &Args) -> anyhow::Result<Report> {
    let mut fleet = Fleet::start(args)?;
    let dir = tempfile::tempdir()?;
    let config = config(dir.path(), args, &fleet.servers)?;
    let store = keywarden::app::open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(keywarden::metrics::Metrics::new(
        config.agent.metrics_per_key,
    ));
    let pipeline = keywarden::alert::Pipeline::new(store.clone(), clock.clone(), &config.alerts)
        .with_metrics(metrics.clone());
    let sink = Arc::new(keywarden::jobs::AlertSink(Arc::new(pipeline)));
    let runner = Arc::new(
        Runner::new(
            store.clone(),
            clock.clone(),
            sink,
            config.agent.max_concurrent_runs,
        )
        .with_metrics(metrics.clone()),
    );
    let targets = keywarden::app::targets_with_metrics(&config, None, Some(metrics.clone()))?;
    let scheduler = Scheduler::start(chrono_tz::UTC, Vec::new()).await?;
    let mut cycles = Vec::new();
    for _ in 0..args.cycles.max(1) {
        cycles.push(one_cycle(&scheduler, &runner, &targets, &mut fleet).await?);
    }
    scheduler.shutdown(Duration::from_secs(5)).await;
    Ok(Report {
        servers: args.servers,
        keys: args.keys,
        api: args.api,
        latency_ms: args.latency_ms,
        cycles,
        peak_rss_mib: round(status_kib("VmHWM:") as f64 / 1024.0),
        store_mib: round(dir_size(&config.agent.state_dir) as f64 / (1024.0 * 1024.0)),
    })
}

/// Every job once on every server, one job after the other.
async fn one_cycle(
    scheduler: &Scheduler,
    runner: &Arc<Runner>,
    targets: &[keywarden::jobs::runner::Target],
    fleet: &mut Fleet,
) -> anyhow::Result<CycleFigures> {
    let written_before = written_bytes();
    let cpu_before = cpu_seconds();
    let mut jobs = Vec::new();
    let mut total_wall = 0.0;
    for job in JobKind::ALL {
        let requests_before = fleet.requests()?;
        let job_cpu_before = cpu_seconds();
        let ended: Ended = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(tokio::sync::Notify::new());
        let due = once_at(Utc::now() + chrono::Duration::seconds(1));
        let mut tasks = Vec::new();
        for target in targets {
            let (runner, target, ended, done) =
                (runner.clone(), target.clone(), ended.clone(), done.clone());
            let expected = targets.len();
            let id = format!("{}/{}", target.server.name, job.as_str());
            tasks.push(ScheduledTask::new(id, due.clone(), move |_| {
                let (runner, target, ended, done) =
                    (runner.clone(), target.clone(), ended.clone(), done.clone());
                async move {
                    let started = Instant::now();
                    let report = runner.run(&target, job, SCHEDULED).await;
                    let mut ended = ended.lock().unwrap_or_else(|p| p.into_inner());
                    ended.push((started, Instant::now(), report));
                    if ended.len() == expected {
                        done.notify_one();
                    }
                }
            }));
        }
        scheduler.replace(chrono_tz::UTC, tasks).await?;
        tokio::time::timeout(Duration::from_secs(600), done.notified())
            .await
            .map_err(|_| anyhow::anyhow!("{} did not finish within 10 minutes", job.as_str()))?;
        let ended = std::mem::take(&mut *ended.lock().unwrap_or_else(|p| p.into_inner()));
        let first = ended.iter().map(|(s, _, _)| *s).min().expect("runs");
        let last = ended.iter().map(|(_, e, _)| *e).max().expect("runs");
        let wall = last.duration_since(first).as_secs_f64();
        total_wall += wall;
        let problems: Vec<_> = ended
            .iter()
            .filter(|(_, _, r)| r.outcome != keywarden::model::RunOutcome::Ok)
            .collect();
        jobs.push(JobFigures {
            job: job.as_str(),
            wall_s: round(wall),
            cpu_s: round(cpu_seconds() - job_cpu_before),
            requests: fleet.requests()? - requests_before,
            not_ok: problems.len(),
            first_problem: problems.first().map(|(_, _, r)| {
                let finding = r.findings.first().map(|f| f.summary.clone());
                format!(
                    "{}: {:?} {}",
                    r.server,
                    r.outcome,
                    r.error.clone().or(finding).unwrap_or_default()
                )
            }),
        });
    }
    Ok(CycleFigures {
        requests: jobs.iter().map(|j| j.requests).sum(),
        jobs,
        wall_s: round(total_wall),
        cpu_s: round(cpu_seconds() - cpu_before),
        store_written_mib: round(
            written_bytes().saturating_sub(written_before) as f64 / (1024.0 * 1024.0),
        ),
        peak_rss_mib: round(status_kib("VmHWM:") as f64 / 1024.0),
    })
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// User + system CPU of this process, in seconds (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Bytes this process caused to be written to storage (the store is all it writes).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            let line = s
                .lines()
                .find(|l| l.starts_with("write_bytes:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path: PathBuf = e.path();
            if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
