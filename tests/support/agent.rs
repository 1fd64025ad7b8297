//! Building agents for tests: a config pointing at simulators, a store in a temp dir,
//! a manual clock, and a runner.

use std::path::Path;
use std::sync::Arc;

use chrono::TimeZone;
use keywarden::clock::ManualClock;
use keywarden::config::Config;
use keywarden::jobs::LogSink;
use keywarden::jobs::runner::{Runner, Target};
use keywarden::store::Store;

use super::TEST_API_KEY;

/// A `[[servers]]` block for a simulator at `url`, plus `extra` lines.
pub fn server_block(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\napi_key_env = \"TEST_KEY\"\ntimeout = \"2s\"\naction_timeout = \"5s\"\n{extra}\n"
    )
}

/// Parse a config; `TEST_KEY` resolves to the test API key.
pub fn config(dir: &Path, body: &str) -> Arc<Config> {
    let text = format!(
        "[agent]\nstate_dir = \"{}\"\n{body}",
        dir.join("state").display()
    );
    let env = |name: &str| (name == "TEST_KEY").then(|| TEST_API_KEY.to_string());
    let loaded = keywarden::config::from_str_with_env(&text, &dir.join("agent.toml"), &env)
        .unwrap_or_else(|errors| panic!("test config invalid:\n{errors}\n{text}"));
    Arc::new(loaded.config)
}

pub fn targets(config: &Arc<Config>) -> Vec<Target> {
    keywarden::app::targets(config, None).expect("targets")
}

pub fn clock() -> ManualClock {
    ManualClock::new(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
            .unwrap(),
    )
}

/// A runner over a store in `config`'s state dir.
pub fn runner(config: &Config, clock: &ManualClock) -> Arc<Runner> {
    let store = Arc::new(Store::open(&config.agent.state_dir).expect("open store"));
    Arc::new(Runner::new(
        store,
        Arc::new(clock.clone()),
        Arc::new(LogSink),
        4,
    ))
}
