//! The fault soak, long form:
//!
//! ```text
//! cargo run --release --example soak -- --servers 50 --duration 600
//! ```
//!
//! Prints one line per check and a JSON summary; exits 1 when a check fails. What it
//! does and checks: `run.rs`; figures in docs/performance.md. A 60-second run with fewer
//! servers is part of `cargo test` (tests/soak_short.rs).

#[path = "../../tests/support/smtp.rs"]
#[allow(dead_code)]
mod smtp;

mod run;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Simulated servers (half 1.x, half 2.x).
    #[arg(long, default_value_t = 50)]
    servers: usize,
    /// Seconds of faults before the checks.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seed of the fault and traffic choices.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Milliseconds between faults, on average.
    #[arg(long, default_value_t = 1500)]
    fault_every_ms: u64,
}

fn main() -> ExitCode {
    keywarden::process::tune_allocator();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut options = run::Options::new(args.servers, Duration::from_secs(args.duration));
    options.seed = args.seed;
    options.fault_every = Duration::from_millis(args.fault_every_ms);
    match runtime.block_on(run::soak(options)) {
        Ok(summary) => {
            for check in &summary.checks {
                let mark = if check.ok { "ok  " } else { "FAIL" };
                println!("{mark} {}: {}", check.name, check.detail);
            }
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::from(2)
        }
    }
}
