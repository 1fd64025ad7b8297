//! Command-line definitions (clap). Parsing only: the commands live in `commands/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Default location of the agent's configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/keywarden/agent.toml";

#[derive(Debug, Parser)]
#[command(
    name = "keywarden",
    version,
    about = "Watchdog for Xray (VLESS + Reality) servers behind the VPN Key Management API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration file is: `-c/--config`, else `KEYWARDEN_CONFIG`, else the default.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Path of the agent's TOML configuration.
    #[arg(short = 'c', long = "config", env = "KEYWARDEN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration file and print a summary (exit 0), or every problem (exit 2).
    Validate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Read-only diagnostics of each configured server (exit 0 when all answered, 2 otherwise).
    Probe {
        #[command(flatten)]
        config: ConfigArg,
        /// Probe only this server (by its `name`).
        #[arg(long)]
        server: Option<String>,
        /// Print one JSON object per server instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The daemon: run every job on its schedule until SIGTERM/SIGINT; SIGHUP reloads.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run jobs once now and exit like a Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Which job to run.
        #[arg(long, value_enum, default_value = "all")]
        job: JobArg,
        /// Check only this server (by its `name`).
        #[arg(long)]
        server: Option<String>,
        /// Observe and plan, but perform no POST or DELETE.
        #[arg(long)]
        dry_run: bool,
        /// Also send the findings as alerts (otherwise they are only recorded).
        #[arg(long)]
        notify: bool,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what the state store knows: servers, last runs, open findings, recent actions.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send a test notification to every alert sink (or one) now; print per sink
    /// "delivered" or the error. Exit 0 if all delivered, 2 otherwise.
    AlertTest {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this sink (by its `name`).
        #[arg(long)]
        sink: Option<String>,
    },
    /// The whole agent against the built-in simulated server, with a scripted scenario.
    Demo {
        /// Leave the simulator and the agent running afterwards, with a ready agent.toml.
        #[arg(long)]
        keep_running: bool,
    },
    /// Traffic per key this period, from the state store: used, limit, percent, next reset.
    Usage {
        #[command(flatten)]
        config: ConfigArg,
        /// Only keys of this server (by its `name`).
        #[arg(long)]
        server: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The usage report of a period, from the state store: written to a directory to look
    /// at (report.html, report.txt, report.json, PNG charts), or sent with --send.
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// last-week, last-month or a month (YYYY-MM). Default: [reports].period.
        #[arg(long, value_parser = parse_period)]
        period: Option<crate::report::PeriodSpec>,
        /// Send it to [reports].sinks now (exit 2 unless every sink took it).
        #[arg(long)]
        send: bool,
        /// Write the files here (default without --send: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The state store itself: `store migrate --to postgres` copies the SQLite store into
    /// an empty PostgreSQL schema.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command into --out.
    Man {
        /// Write keywarden.1 and keywarden-COMMAND.1 pages into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Run the simulated VPN Key Management API standalone (for trying keywarden out).
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        /// API generation to simulate.
        #[arg(long, value_enum, default_value = "1")]
        api: ApiGenerationArg,
        /// Number of keys to create at start.
        #[arg(long, default_value_t = 5)]
        keys: usize,
        /// API key the simulator expects in X-API-Key.
        #[arg(long, env = "KEYWARDEN_SIM_API_KEY", default_value = "sim-api-key")]
        api_key: String,
        /// Where to write the test CA of the inbounds' TLS certificates (for
        /// `reality_ca_file`); default: a file in the temporary directory.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// `keywarden store ...`
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Copy the SQLite store of [agent].state_dir, every table, into the empty PostgreSQL
    /// schema of [store.postgres] in one transaction, and print the rows per table. Stop
    /// the SQLite agent first. Exit 2 when the schema already holds data.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The backend to copy into.
        #[arg(long, value_enum)]
        to: MigrateTarget,
    },
}

/// Where `store migrate` copies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateTarget {
    /// The schema of [store.postgres] (with [agent] store = "postgres").
    Postgres,
}

fn parse_period(text: &str) -> Result<crate::report::PeriodSpec, String> {
    text.parse()
}

/// The clap definition the binary parses (completions and man pages come from it).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Write the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut command(), "keywarden", out);
}

/// Write the main man page (keywarden.1).
pub fn man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(command()).render(out)
}

/// Write keywarden.1 and one page per command into `dir`; returns the files written.
pub fn man_pages(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut main = Vec::new();
    man_page(&mut main)?;
    let path = dir.join("keywarden.1");
    std::fs::write(&path, main)?;
    written.push(path);
    let mut command = command();
    command.build();
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("keywarden-{}", sub.get_name());
        let mut page = Vec::new();
        // clap names are &'static str without its `string` feature: a few bytes per page,
        // once per process.
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(sub.clone().name(leaked)).render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page)?;
        written.push(path);
    }
    Ok(written)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiGenerationArg {
    /// 1.x servers (API "1.0.0"): keys.json, bulk traffic endpoints.
    #[value(name = "1")]
    V1,
    /// 2.x servers (API "2.3.6"): SQLite store, per-key traffic, validate-sync, rate limits.
    #[value(name = "2")]
    V2,
}

/// `check --job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobArg {
    Health,
    #[value(name = "config-sync")]
    ConfigSync,
    Reality,
    Quota,
    Dataplane,
    All,
}

impl JobArg {
    /// The jobs this choice stands for, in the order they run.
    pub fn jobs(self) -> Vec<crate::config::JobKind> {
        use crate::config::JobKind;
        match self {
            JobArg::Health => vec![JobKind::Health],
            JobArg::ConfigSync => vec![JobKind::ConfigSync],
            JobArg::Reality => vec![JobKind::Reality],
            JobArg::Quota => vec![JobKind::Quota],
            JobArg::Dataplane => vec![JobKind::Dataplane],
            JobArg::All => JobKind::ALL.to_vec(),
        }
    }
}
