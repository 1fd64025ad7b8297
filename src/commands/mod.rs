//! The CLI commands. Each returns its exit code; `anyhow` errors mean exit 1.

use crate::cli::Command;

pub mod alert_test;
mod check;
mod probe;
mod probe_dataplane;
mod report;
mod run;
mod status;
mod store;
pub mod usage;
mod validate;

pub use check::run_all;

/// Exit code: everything fine.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and found problems (bad config, unreachable server).
pub const EXIT_PROBLEMS: u8 = 2;
/// Exit code of `run`: the state store was deleted or replaced while it ran; it stopped
/// so that a restart (systemd's `Restart=on-failure`) opens the store at its path again.
pub const EXIT_STORE_LOST: u8 = 3;

/// Run one command to completion.
pub async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Validate { config } => validate::run(&config.path),
        Command::Probe {
            config,
            server,
            json,
        } => probe::run(&config.path, server.as_deref(), json).await,
        Command::Run { config } => run::run(&config.path).await,
        Command::Check {
            config,
            job,
            server,
            dry_run,
            notify,
            json,
        } => {
            check::run(
                &config.path,
                &check::CheckArgs {
                    jobs: job.jobs(),
                    server,
                    dry_run,
                    notify,
                    json,
                },
            )
            .await
        }
        Command::AlertTest { config, sink } => alert_test::run(&config.path, sink.as_deref()).await,
        Command::Status { config, json } => status::run(&config.path, json).await,
        Command::Usage {
            config,
            server,
            json,
        } => usage::run(&config.path, server.as_deref(), json).await,
        Command::Report {
            config,
            period,
            send,
            out,
        } => report::run(&config.path, &report::ReportArgs { period, send, out }).await,
        Command::Store {
            action: crate::cli::StoreAction::Migrate { config, to },
        } => store::migrate(&config.path, to).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            crate::cli::completions(shell, &mut script);
            print_all(&script)?;
            Ok(EXIT_OK)
        }
        Command::Man { out } => {
            match out {
                Some(dir) => {
                    for page in crate::cli::man_pages(&dir)? {
                        crate::outln!("{}", page.display())?;
                    }
                }
                None => {
                    let mut page = Vec::new();
                    crate::cli::man_page(&mut page)?;
                    print_all(&page)?;
                }
            }
            Ok(EXIT_OK)
        }
        // The binary runs these itself: they need the simulator, which this library does
        // not link (see src/main.rs).
        Command::Demo { .. } | Command::Sim { .. } => {
            anyhow::bail!("`keywarden demo` and `keywarden sim` are run by the keywarden binary")
        }
    }
}

/// Write to stdout; a reader that stopped early (`| head`, `| grep -q`) is not an error.
fn print_all(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
