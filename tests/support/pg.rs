//! A real PostgreSQL server on loopback for the integration tests (issue 13).
//!
//! `shared()` starts one server per test binary (`initdb` into a temporary directory,
//! `postgres -k <dir> -p <ephemeral port> -c listen_addresses=127.0.0.1`) and every test
//! takes a database of its own from it (`PgServer::database`), so tests run in parallel.
//! `PgServer::start()` gives a test a private server it may stop and restart (the
//! partition tests) without disturbing the others.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the `postgres` user
//! (privileges dropped in `pre_exec`). The shared server lives in a static that is never
//! dropped, so it is tied to the test process with `PR_SET_PDEATHSIG` (set after the
//! uid change, which would clear it), from a spawner thread that lives as long as the
//! process (the signal follows the thread that forked, not the process); directories
//! left by earlier runs whose process is gone are removed at the next start.
//!
//! Without server binaries the tests skip loudly (`skip_without_pg`); `.ci/run` installs
//! them, so CI never skips.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use keywarden::config::{PgConfig, SecretSource};
use keywarden::secret::Secret;

/// The superuser's password; tests assert it never reaches a message.
pub const PG_PASSWORD: &str = "kw-pg-test-pass-7d1e93c4";
/// The superuser.
pub const PG_USER: &str = "kw";

/// Where the server binaries are (`initdb`, `postgres`), if anywhere.
pub fn bin_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    // The newest major version first ("15" > "14"; numerically, so "9" < "15").
    candidates.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = candidates.pop() {
        return Some(bin);
    }
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    bin.join("initdb").exists().then_some(bin)
}

/// The shared server of this test binary, or `None` (with a message saying so) when
/// there are no server binaries. Use as
/// `let Some(pg) = support::pg::skip_without_pg("test name") else { return };`
pub fn skip_without_pg(test: &str) -> Option<&'static PgServer> {
    let server = shared();
    if server.is_none() {
        eprintln!(
            "SKIPPED {test}: no PostgreSQL server binaries (initdb, postgres under /usr/lib/postgresql/*/bin or `pg_config --bindir`); install postgresql (.ci/run does)"
        );
    }
    server
}

/// The one server of this test binary, started on first use.
pub fn shared() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let bin = bin_dir()?;
            Some(PgServer::start_with(bin).expect("start the shared PostgreSQL test server"))
        })
        .as_ref()
}

/// A PostgreSQL server of the tests: its directory, port and process.
pub struct PgServer {
    bin: PathBuf,
    /// The temporary directory: `data/` (the cluster), the socket, the log.
    root: PathBuf,
    pub port: u16,
    child: Mutex<Option<Child>>,
    /// Dropping removes the directory (private servers only; the shared one is never
    /// dropped).
    owned: bool,
    /// More `-c name=value` settings of the server (TLS).
    settings: Vec<String>,
}

impl PgServer {
    /// A private server (stopped and removed when dropped), or `None` without binaries.
    pub fn start() -> Option<PgServer> {
        let bin = bin_dir()?;
        let mut server = PgServer::start_with(bin).expect("start a PostgreSQL test server");
        server.owned = true;
        Some(server)
    }

    /// A private server that also speaks TLS with this certificate chain and key (PEM),
    /// or `None` without binaries.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<PgServer> {
        let bin = bin_dir()?;
        let mut server = PgServer::start_with(bin).expect("start a PostgreSQL test server");
        server.owned = true;
        server.stop();
        let user = server_user().expect("the server user");
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = server.root.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = user {
                chown(&path, uid, gid).unwrap();
            }
        }
        server.settings = vec![
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", server.root.join("server.crt").display()),
            format!("ssl_key_file={}", server.root.join("server.key").display()),
        ];
        server.run().expect("restart PostgreSQL with TLS");
        Some(server)
    }

    fn start_with(bin: PathBuf) -> Result<PgServer, String> {
        remove_stale_dirs();
        let root =
            std::env::temp_dir().join(format!("keywarden-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        let user = server_user()?;
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, PG_PASSWORD).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            chown(&root, uid, gid)?;
            chown(&pwfile, uid, gid)?;
        }
        let data = root.join("data");
        let output = as_server_user(Command::new(bin.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "-E", "UTF8", "--no-sync"])
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let mut server = PgServer {
            bin,
            root,
            port: 0,
            child: Mutex::new(None),
            owned: false,
            settings: Vec::new(),
        };
        // An ephemeral port may be taken between asking and binding: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.run() {
                Ok(()) => return Ok(server),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Start the server process (again) on its port; returns once it accepts connections.
    fn run(&self) -> Result<(), String> {
        let user = server_user()?;
        let log = std::fs::File::create(self.root.join("log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            chown(&self.root.join("log"), uid, gid)?;
        }
        let _ = std::fs::remove_file(self.root.join("data/postmaster.pid"));
        let mut command = as_server_user(Command::new(self.bin.join("postgres")), user);
        command
            .arg("-D")
            .arg(self.root.join("data"))
            .arg("-k")
            .arg(&self.root)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=16MB"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = spawn_tied(command)?;
        *self.child.lock().unwrap() = Some(child);
        self.wait_ready()
    }

    /// Wait for postmaster.pid to say "ready" (PostgreSQL 10+ writes the state there).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid_file = self.root.join("data/postmaster.pid");
        while Instant::now() < deadline {
            if let Some(child) = self.child.lock().unwrap().as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
                ));
            }
            let state = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if state
                .lines()
                .nth(7)
                .is_some_and(|line| line.trim() == "ready")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "postgres did not become ready within 60 s: {}",
            std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
        ))
    }

    /// Stop the server (fast shutdown: sessions are cut, as when a database host goes
    /// away cleanly) and wait for it.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SIGINT: "fast" shutdown.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// Start the server again after `stop` (same port, same data).
    pub fn restart(&self) {
        self.stop();
        self.run().expect("restart PostgreSQL");
    }

    /// A connection URL for `database` (no TLS: loopback).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// A superuser connection to `database`.
    pub async fn admin(&self, database: &str) -> tokio_postgres::Client {
        let url = self.url(database).replace("?sslmode=disable", "");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server as its superuser");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// A new, empty database for one test; returns its name.
    pub async fn database(&self) -> String {
        let name = format!("kw_{}_{}", std::process::id(), unique());
        let admin = self.admin("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e:?}"));
        name
    }

    /// `[store.postgres]` settings for `database` (schema "keywarden", no TLS).
    pub fn config(&self, database: &str, agent_name: &str) -> PgConfig {
        PgConfig {
            url: Secret::new(self.url(database)),
            url_source: SecretSource::Env("KEYWARDEN_TEST_PG_URL".to_owned()),
            schema: "keywarden".to_owned(),
            pool_size: 4,
            ca_file: None,
            agent_name: agent_name.to_owned(),
            tls: false,
        }
    }

    /// Cut the sessions of `database` whose application_name is `application_name`
    /// (`None`: every session of it) with `pg_terminate_backend`; returns how many.
    pub async fn terminate_backends(&self, database: &str, application_name: Option<&str>) -> u64 {
        let admin = self.admin("postgres").await;
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND ($2::TEXT IS NULL OR application_name = $2)
                   AND pid <> pg_backend_pid()",
                &[&database, &application_name],
            )
            .await
            .expect("terminate backends");
        row.get::<_, i64>(0) as u64
    }

    /// The directory of the cluster and its log.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A number unique in this process (with the time, unique across runs too).
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{nanos}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("an ephemeral port")
}

/// As root: the uid and gid of `postgres` (the server refuses root). Otherwise none.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
        .map(|fields| {
            Some((
                fields[2].parse().unwrap_or(0),
                fields[3].parse().unwrap_or(0),
            ))
        })
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run the server as".to_owned()
        })
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

/// The command, run as the server user when we are root.
fn as_server_user(mut command: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        // HOME etc. of root would be unreadable for postgres; initdb does not need them.
        command.current_dir("/");
        unsafe {
            command.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command
}

/// Spawn from a thread that lives as long as the process, with `PR_SET_PDEATHSIG`
/// (SIGQUIT: PostgreSQL's immediate shutdown) so the server dies with the tests.
fn spawn_tied(mut command: Command) -> Result<Child, String> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, receive) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pg-spawner".to_owned())
            .spawn(move || {
                // Never returns while the process lives: the death signal is tied to
                // this thread.
                for (mut command, reply) in receive {
                    let _ = reply.send(command.spawn());
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the pg-spawner thread");
        Mutex::new(jobs)
    });
    unsafe {
        command.pre_exec(|| {
            // After the uid change (which clears it): it survives the exec.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap()
        .send((command, reply))
        .map_err(|e| e.to_string())?;
    answer
        .recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("spawn postgres: {e}"))
}

/// Directories of earlier runs whose process is gone (a static is never dropped).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("keywarden-pg-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive && pid as u32 != std::process::id() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
