//! The `keywarden` binary: parse the command line, set up logs, run a command, and map
//! its outcome to an exit code (0 ok, 1 internal error, 2 problems found).
//!
//! `demo` and `sim` live here rather than in the library: they run the simulated API
//! (the `keywarden-sim` crate), which the agent's library must never link.

mod demo;
mod sim_command;

use std::process::ExitCode;

use clap::Parser;
use keywarden::cli::{Cli, Command};

fn main() -> ExitCode {
    keywarden::process::tune_allocator();
    let cli = Cli::parse();
    keywarden::tls::install_crypto_provider();
    // `check` is one short burst of runs that mostly wait on servers: one thread serves
    // it without cross-thread wake-ups (a measurable share of a per-key read's CPU); the
    // store still works on its own blocking threads. Everything else (the daemon above
    // all) gets the multi-threaded runtime of runtime.rs.
    let built = match cli.command {
        Command::Check { .. } => keywarden::runtime::build_current_thread(),
        _ => keywarden::runtime::build(),
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keywarden: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Demo { keep_running } => demo::run(keep_running).await,
            Command::Sim {
                listen,
                api,
                keys,
                api_key,
                ca_file,
                latency_ms,
            } => {
                let latency = std::time::Duration::from_millis(latency_ms);
                sim_command::run(listen, api, keys, api_key, ca_file, latency).await
            }
            command => keywarden::commands::dispatch(command).await,
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("keywarden: {err:#}");
            ExitCode::from(1)
        }
    }
}
