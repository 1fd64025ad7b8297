//! The real daemon on a damaged store: a disk that takes no more writes (/healthz must
//! prove a committed write and say 503), `state.db` deleted while it runs (it must stop
//! with exit 3 rather than write on into the unlinked file), and a `check` beside it
//! (no two processes run one job on one server at once: the store's lease). Real
//! processes, real files, the simulator on loopback.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keywarden_sim::{ApiGeneration, Fault, Route};
use support::{TEST_API_KEY, sim, within};

const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
const EVERY_SECOND: &str = "* * * * * *";

/// A config whose health job runs on `health` and the others never; `listen` as given.
fn write_config(dir: &Path, url: &str, health: &str, listen: &str) -> PathBuf {
    let never = "0 0 0 1 1 *";
    let text = format!(
        "[agent]\nstate_dir = {:?}\nlisten = {listen:?}\nlog_format = \"json\"\n\n\
         [jobs.health]\nschedule = {health:?}\n[jobs.config_sync]\nschedule = {never:?}\n\
         [jobs.reality]\nschedule = {never:?}\n[jobs.quota]\nschedule = {never:?}\n\
         [jobs.dataplane]\nschedule = {never:?}\n\n\
         [[servers]]\nname = \"fra-1\"\nurl = {url:?}\napi_key_env = \"PROC_TEST_KEY\"\ntimeout = \"5s\"\n",
        dir.join("state").display().to_string()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A daemon whose stderr is collected through a pipe (a file would count against a
/// file-size limit the test sets).
struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn spawn(mut command: Command) -> Daemon {
        let mut child = command
            .env("PROC_TEST_KEY", TEST_API_KEY)
            .env("RUST_LOG", "info,tokio_cron_scheduler=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keywarden run");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Daemon { child, log }
    }

    fn start(config: &Path) -> Daemon {
        let mut command = Command::new(BIN);
        command.arg("run").arg("-c").arg(config);
        Daemon::spawn(command)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log holds `text` (20 s at most).
    async fn said(&self, text: &str) {
        let started = Instant::now();
        while !self.log().contains(text) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never said {text:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where /healthz is served, from the daemon's own log line.
    async fn addr(&self) -> String {
        self.said("serving /metrics and /healthz").await;
        self.log()
            .lines()
            .filter(|line| line.contains("serving /metrics and /healthz"))
            .find_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .and_then(|entry| entry["fields"]["addr"].as_str().map(str::to_string))
            .expect("the address in the log")
    }

    async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(started.elapsed() < within, "did not exit:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store made and closed (migrated, its WAL folded in and removed).
fn prepared_store(dir: &Path) {
    drop(keywarden::store::Store::open(&dir.join("state")).unwrap());
}

async fn healthz(addr: &str) -> (u16, String) {
    let response = within(
        "GET /healthz",
        reqwest::get(format!("http://{addr}/healthz")),
    )
    .await
    .expect("GET /healthz");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// No file may grow beyond 32 KiB (RLIMIT_FSIZE, SIGXFSZ ignored): the daemon opens its
/// store (the `-shm` file is exactly 32 KiB) and the first commits go through, until
/// the WAL reaches the limit, as when a disk fills up; from then on no commit reaches the
/// disk. /healthz must turn 503 with the reason. The old probe, an INSERT rolled back
/// before its commit, never wrote to the WAL and answered 200 here for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_503_when_no_commit_reaches_the_disk() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: no prlimit on this machine");
        return;
    }
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let never = "0 0 0 1 1 *";
    let config = write_config(dir.path(), &server.base_url(), never, "127.0.0.1:0");
    prepared_store(dir.path());
    let mut command = Command::new("prlimit");
    command
        .arg("--fsize=32768:32768")
        .args(["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(BIN)
        .arg("run")
        .arg("-c")
        .arg(&config);
    let daemon = Daemon::spawn(command);
    let addr = daemon.addr().await;
    // Each probe commits a page (4 KiB) into the WAL: it is full within 8 probes.
    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(healthz(&addr).await);
        if answers.last().unwrap().0 == 503 {
            break;
        }
    }
    let (status, body) = answers.last().unwrap().clone();
    assert_eq!(status, 503, "{answers:?}\n{}", daemon.log());
    assert!(answers.len() > 1, "the first probes commit: {answers:?}");
    assert!(body.contains("state store is not writable"), "{body}");
    assert!(body.contains("state.db"), "names the store: {body}");
}

/// The same daemon with nothing wrong says 200, and the probe's row shows its commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_commits_its_probe() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let never = "0 0 0 1 1 *";
    let config = write_config(dir.path(), &server.base_url(), never, "127.0.0.1:0");
    let daemon = Daemon::start(&config);
    let addr = daemon.addr().await;
    for _ in 0..2 {
        let (status, body) = healthz(&addr).await;
        assert_eq!(status, 200, "{body}");
    }
    let db = dir.path().join("state").join(keywarden::store::DB_FILE);
    let reader = rusqlite::Connection::open(&db).unwrap();
    let writes: i64 = reader
        .query_row("SELECT writes FROM store_probe", [], |row| row.get(0))
        .unwrap();
    assert_eq!(writes, 2, "each probe committed its write");
}

/// `state.db` deleted under a running daemon: it notices within a cycle, says so as a
/// critical line, and stops with exit 3 (systemd restarts it on a fresh store) instead
/// of writing on into the unlinked file until the stop loses it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_deleted_under_the_daemon_stops_it_with_exit_3() {
    let server = sim(ApiGeneration::V1, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.base_url(), EVERY_SECOND, "");
    let mut daemon = Daemon::start(&config);
    daemon.said("keywarden running").await;
    let db = dir.path().join("state").join(keywarden::store::DB_FILE);
    std::fs::remove_file(&db).unwrap();
    let code = daemon.exit_code(Duration::from_secs(15)).await;
    let log = daemon.log();
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("CRITICAL: the state store is gone"), "{log}");
    assert!(log.contains("was deleted"), "{log}");
    assert!(
        !db.exists(),
        "nothing recreated it behind the operator's back"
    );
}

/// Whether `holder` took the health lease of fra-1 within the last 500 ms.
fn fresh_lease(db: &Path, holder: &str) -> bool {
    let Ok(reader) = rusqlite::Connection::open(db) else {
        return false;
    };
    let row: Option<(String, String)> = reader
        .query_row(
            "SELECT holder, acquired_at FROM job_leases WHERE server = 'fra-1' AND job = 'health'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ok();
    row.is_some_and(|(who, at)| {
        let at = keywarden::model::parse_stamp(&at).unwrap();
        who.starts_with(holder) && chrono::Utc::now() - at < chrono::Duration::milliseconds(500)
    })
}

/// `keywarden check` beside a daemon that is in the middle of the same job on the same
/// server: the check skips it, says who holds it, and that is no failure (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_beside_a_running_daemon_skips_the_job_the_daemon_holds() {
    let server = sim(ApiGeneration::V1, 2).await;
    // Every answer to GET /api/ takes 3 s: the daemon's health runs are long.
    server
        .handle()
        .fail_next(Route::Root, 1000, Fault::Delay(Duration::from_secs(3)));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.base_url(), EVERY_SECOND, "");
    let daemon = Daemon::start(&config);
    daemon.said("keywarden running").await;
    // Wait for a daemon run that has just taken its lease (it lasts 3 s more at least).
    let db = dir.path().join("state").join(keywarden::store::DB_FILE);
    let started = Instant::now();
    while !fresh_lease(&db, "keywarden run") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no health run:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut command = Command::new(BIN);
    command
        .args(["check", "--job", "health", "-c"])
        .arg(&config)
        .env("PROC_TEST_KEY", TEST_API_KEY)
        .env("RUST_LOG", "warn");
    let output = within(
        "keywarden check",
        tokio::task::spawn_blocking(move || command.output().unwrap()),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("SKIPPED"), "{stdout}");
    let holder = format!("keywarden run, pid {}", daemon.child.id());
    assert!(
        stdout.contains("skipped: fra-1 health is running in another process")
            && stdout.contains(&holder),
        "{stdout}"
    );
}
