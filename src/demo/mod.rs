//! `keywarden demo`: the whole agent against the built-in simulated server, with a
//! scripted scenario and a readable timeline. Nothing is faked beyond the simulated
//! server: the same config validation, store, scheduler, jobs and alert pipeline as
//! `keywarden run`, with second-level schedules. Part of the binary, not the library:
//! it runs the simulator (tests/demo_scenario.rs compiles it in by path).

pub mod receiver;
pub mod scenario;
pub mod timeline;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use keywarden::agent::{Agent, AgentOptions};
use keywarden::clock::SystemClock;
use keywarden_sim::{ApiGeneration, SimOptions, SimServer};
pub use receiver::Receiver;
pub use scenario::Outcome;
use timeline::{Timeline, TimelineSink};

/// The demo's API key: a throwaway for a loopback simulator, so printing it is fine.
pub const DEMO_API_KEY: &str = "demo-key-not-secret";
/// Keys on the simulated server.
pub const DEMO_KEYS: usize = 20;
/// Keys on the second (2.x) simulated server.
pub const DEMO_V2_KEYS: usize = 3;
/// Every key's monthly allowance in the demo.
pub const DEMO_LIMIT_BYTES: u64 = 1024 * 1024 * 1024;

/// Where the demo's simulated servers are: API base URLs and their test CA files.
pub struct DemoServers<'a> {
    pub v1_url: &'a str,
    pub v1_ca: &'a std::path::Path,
    pub v2_url: &'a str,
    pub v2_ca: &'a std::path::Path,
}

/// The demo's agent.toml (validated like any other).
pub fn config_text(
    state_dir: &std::path::Path,
    servers: &DemoServers<'_>,
    hook_url: &str,
) -> String {
    format!(
        r#"[agent]
state_dir = "{state}"
timezone = "UTC"
listen = "127.0.0.1:0"

[[servers]]
name = "demo-1"
url = "{v1_url}"
api_key_env = "KEYWARDEN_DEMO_API_KEY"
timeout = "2s"
action_timeout = "5s"
reality_ca_file = "{v1_ca}"

[[servers]]
name = "demo-2"
url = "{v2_url}"
api_key_env = "KEYWARDEN_DEMO_API_KEY"
timeout = "2s"
action_timeout = "5s"
reality_ca_file = "{v2_ca}"

[jobs.health]
schedule = "*/1 * * * * *"
failures_before_alert = 2
xray_confirmations = 2
[jobs.config_sync]
schedule = "*/2 * * * * *"
confirmations = 2
max_syncs_per_hour = 10
[jobs.reality]
schedule = "*/3 * * * * *"
[jobs.quota]
schedule = "*/2 * * * * *"
[jobs.dataplane]
schedule = "*/3 * * * * *"
handshake_timeout = "2s"

[quotas]
limit = "1 GiB"
period = "monthly"
warn_at = [80, 95]
on_exceed = "reset"
# The simulated counters stand for this month's traffic: count them at first sight
# (the default, "baseline", counts only what keywarden sees happen).
adopt = "count"

[alerts]
min_severity = "warning"
group_wait = "1s"
repeat_interval = "1h"

[[alerts.webhook]]
name = "demo-hook"
url = "{hook_url}"
format = "json"
"#,
        state = state_dir.display(),
        v1_url = servers.v1_url,
        v1_ca = servers.v1_ca.display(),
        v2_url = servers.v2_url,
        v2_ca = servers.v2_ca.display(),
    )
}

/// A started demo: simulator, webhook receiver, and the agent, all on loopback.
pub struct Demo {
    pub sim: SimServer,
    /// A 2.x server, where Xray's own state can be read (and the Xray step plays).
    pub sim2: SimServer,
    pub receiver: Receiver,
    pub agent: Agent,
    pub timeline: Timeline,
    /// The agent.toml the demo runs on (its secret is the throwaway demo key).
    pub config_text: String,
    pub state_dir: std::path::PathBuf,
}

impl Demo {
    /// Start everything, with the state store in `state_dir`.
    pub async fn start(state_dir: &std::path::Path) -> anyhow::Result<Demo> {
        let timeline = Timeline::default();
        let sim =
            SimServer::start_local(SimOptions::new(ApiGeneration::V1, DEMO_KEYS, DEMO_API_KEY))
                .await
                .context("demo: starting the simulated server")?;
        let sim2 = SimServer::start_local(SimOptions::new(
            ApiGeneration::V2,
            DEMO_V2_KEYS,
            DEMO_API_KEY,
        ))
        .await
        .context("demo: starting the second simulated server")?;
        let receiver = Receiver::start(timeline.clone())
            .await
            .context("demo: starting the webhook receiver")?;
        std::fs::create_dir_all(state_dir).context("demo: creating the state directory")?;
        // The simulated VLESS ports present certificates signed by each simulator's own
        // test CA: the config trusts them through reality_ca_file.
        let (v1_ca, v2_ca) = (
            state_dir.join("demo-1-ca.pem"),
            state_dir.join("demo-2-ca.pem"),
        );
        std::fs::write(&v1_ca, sim.ca_pem()).context("demo: writing demo-1's test CA")?;
        std::fs::write(&v2_ca, sim2.ca_pem()).context("demo: writing demo-2's test CA")?;
        let servers = DemoServers {
            v1_url: &sim.base_url(),
            v1_ca: &v1_ca,
            v2_url: &sim2.base_url(),
            v2_ca: &v2_ca,
        };
        let text = config_text(state_dir, &servers, &receiver.url());
        let env = |name: &str| (name == "KEYWARDEN_DEMO_API_KEY").then(|| DEMO_API_KEY.to_string());
        let loaded =
            keywarden::config::from_str_with_env(&text, &state_dir.join("agent.toml"), &env)
                .map_err(|errors| anyhow::anyhow!("demo config invalid:\n{errors}"))?;
        let config = Arc::new(loaded.config);
        scenario::prepare(&sim.handle());
        timeline.say(
            "demo",
            &format!(
                "simulated VPN API 1.0.0 with {DEMO_KEYS} keys at {}",
                sim.base_url()
            ),
        );
        timeline.say(
            "demo",
            &format!(
                "simulated VPN API 2.3.6 with {DEMO_V2_KEYS} keys at {}; every VLESS inbound is a TLS listener on 127.0.0.1",
                sim2.base_url()
            ),
        );
        timeline.say("demo", &format!("webhook receiver at {}", receiver.url()));
        timeline.say("demo", &format!("state store in {}", state_dir.display()));
        let mut options = AgentOptions::new(Arc::new(SystemClock), &config);
        let sink_timeline = timeline.clone();
        options.wrap_sink = Some(Box::new(move |next| {
            Arc::new(TimelineSink {
                timeline: sink_timeline,
                next,
            })
        }));
        let agent = Agent::start(config, options)
            .await
            .context("demo: starting the agent")?;
        timeline.say("demo", "agent started: health every 1 s, config sync every 2 s, Reality every 3 s, quota every 2 s, VLESS ports every 3 s");
        Ok(Demo {
            sim,
            sim2,
            receiver,
            agent,
            timeline,
            config_text: text,
            state_dir: state_dir.to_path_buf(),
        })
    }

    /// Play the scripted scenario; each step waits for the agent to deal with it.
    pub async fn play(&self) -> Outcome {
        scenario::play(
            &self.sim.handle(),
            &self.sim2.handle(),
            &self.agent,
            &self.timeline,
            &self.receiver,
        )
        .await
    }

    /// Stop the agent (letting runs finish) and the simulator.
    pub async fn stop(self) {
        let _ = self.agent.shutdown(Duration::from_secs(10)).await;
        self.sim.shutdown().await;
        self.sim2.shutdown().await;
    }
}

pub async fn run(keep_running: bool) -> anyhow::Result<u8> {
    keywarden::logging::init(keywarden::logging::LogFormat::Text, "warn");
    let state = tempfile_dir()?;
    let demo = Demo::start(state.path()).await?;
    let outcome = demo.play().await;
    if keep_running {
        keep_running_until_ctrl_c(&demo).await?;
    }
    demo.stop().await;
    keywarden::outln!()?;
    keywarden::outln!("{}", outcome.summary())?;
    Ok(if outcome.all_passed() { 0 } else { 1 })
}

fn tempfile_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("keywarden-demo-")
        .tempdir()
        .context("demo: creating a temporary state directory")
}

async fn keep_running_until_ctrl_c(demo: &Demo) -> anyhow::Result<()> {
    let (agent, sim) = (&demo.agent, &demo.sim);
    let config_path = demo.state_dir.join("agent.toml");
    std::fs::write(&config_path, &demo.config_text).context("demo: writing agent.toml")?;
    keywarden::outln!()?;
    keywarden::outln!("The simulator and the agent keep running (Ctrl-C stops both).")?;
    keywarden::outln!(
        "  simulator:  {}  (admin routes under /_sim/, same X-API-Key)",
        sim.base_url()
    )?;
    keywarden::outln!(
        "  simulator:  {}  (2.x; POST /_sim/xray {{\"stopped\": true}} stops Xray)",
        demo.sim2.base_url()
    )?;
    if let Some(addr) = agent.http_addr {
        keywarden::outln!("  metrics:    http://{addr}/metrics   health: http://{addr}/healthz")?;
    }
    keywarden::outln!("  agent.toml: {}", config_path.display())?;
    keywarden::outln!()?;
    keywarden::outln!("Try, in another terminal:")?;
    keywarden::outln!("  export KEYWARDEN_DEMO_API_KEY={DEMO_API_KEY}")?;
    for command in ["probe", "check --dry-run", "status", "usage"] {
        keywarden::outln!("  keywarden {command} -c {}", config_path.display())?;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => agent.tick().await,
            result = tokio::signal::ctrl_c() => { result.context("demo: waiting for Ctrl-C")?; break; }
        }
    }
    Ok(())
}
