//! Log setup: human-readable text on a terminal, JSON for journald or when no TTY is
//! attached; `RUST_LOG` filters. Logs always go to stderr so stdout stays for results.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Text on a terminal, JSON under journald or without a TTY.
    #[default]
    Auto,
    Text,
    Json,
}

/// The default filter: info and above (RUST_LOG overrides it).
pub const DEFAULT_FILTER: &str = "info";

fn wants_json(format: LogFormat) -> bool {
    match format {
        LogFormat::Text => false,
        LogFormat::Json => true,
        LogFormat::Auto => {
            std::env::var_os("JOURNAL_STREAM").is_some() || !std::io::stderr().is_terminal()
        }
    }
}

/// Install the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if wants_json(format) {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
