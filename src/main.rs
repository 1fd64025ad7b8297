//! The `keywarden` binary: parse the command line, set up logs, run a command, and map
//! its outcome to an exit code (0 ok, 1 internal error, 2 problems found).

use std::process::ExitCode;

use clap::Parser;
use keywarden::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    keywarden::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keywarden: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(keywarden::commands::dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("keywarden: {err:#}");
            ExitCode::from(1)
        }
    }
}
