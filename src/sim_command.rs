//! `keywarden sim`: run the simulated VPN Key Management API standalone until Ctrl-C or
//! SIGTERM. Prints where it listens on stdout; logs go to stderr; the API key is never
//! printed or logged. Part of the binary, not the library: it runs the simulator.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use keywarden::cli::ApiGenerationArg;
use keywarden_sim::{ApiGeneration, SimOptions, SimServer};

/// How long a sync or a key deletion "restarts Xray" on the real servers (about 2 s on
/// 1.x, 6 s on 2.x), scaled down so that trying things out stays quick while clients still
/// meet a slow call.
fn restart_delay(generation: ApiGeneration) -> Duration {
    match generation {
        ApiGeneration::V1 => Duration::from_millis(500),
        ApiGeneration::V2 => Duration::from_millis(1500),
    }
}

pub async fn run(
    listen: SocketAddr,
    api: ApiGenerationArg,
    keys: usize,
    api_key: String,
    ca_file: Option<std::path::PathBuf>,
    latency: Duration,
) -> anyhow::Result<u8> {
    keywarden::logging::init(
        keywarden::logging::LogFormat::Auto,
        keywarden::logging::DEFAULT_FILTER,
    );
    let generation = match api {
        ApiGenerationArg::V1 => ApiGeneration::V1,
        ApiGenerationArg::V2 => ApiGeneration::V2,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("sim: cannot listen on {listen}"))?;
    let options = SimOptions {
        latency,
        ..SimOptions::new(generation, keys, api_key)
    };
    let server = SimServer::start(listener, options)
        .await
        .context("sim: cannot start")?;
    let handle = server.handle();
    handle.seed_traffic();
    handle.set_restart_delay(restart_delay(generation));
    if generation == ApiGeneration::V1 {
        // The 1.x monitor also counts uuids that are no key (seen in Xray's access log).
        handle.add_stranger_traffic("87c5ee57-dbf6-4db2-b1f2-dbec6b604db0", 0, 1);
    }

    keywarden::outln!(
        "keywarden sim: VPN Key Management API {}",
        generation.version()
    )?;
    keywarden::outln!("  base URL: {}", server.base_url())?;
    // The inbounds' TLS certificates chain to this CA: point reality_ca_file at it.
    let ca_path = ca_file.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("keywarden-sim-ca-{}.pem", server.addr().port()))
    });
    std::fs::write(&ca_path, server.ca_pem())
        .with_context(|| format!("sim: cannot write the test CA to {}", ca_path.display()))?;
    keywarden::outln!("  test CA:  {} (reality_ca_file)", ca_path.display())?;
    let ports: Vec<String> = handle
        .listening()
        .iter()
        .map(|(_, port)| port.to_string())
        .collect();
    keywarden::outln!("  VLESS:    127.0.0.1 ports {}", ports.join(", "))?;
    let created = handle.keys().len();
    keywarden::outln!("  keys:     {created}")?;
    if created < keys {
        tracing::warn!(
            asked = keys,
            created,
            "sim: 2.x has 100 ports, so 100 keys at most"
        );
    }
    keywarden::outln!(
        "  admin:    POST {}/_sim/... with the same X-API-Key (see `sim` module docs); GET /_sim/state to look",
        server.base_url().trim_end_matches("/api")
    )?;
    tracing::info!(
        addr = %server.addr(),
        version = generation.version(),
        keys = created,
        "sim: listening"
    );

    wait_for_stop_signal().await?;
    tracing::info!("sim: stopping");
    server.shutdown().await;
    Ok(keywarden::commands::EXIT_OK)
}

/// Ctrl-C, or SIGTERM on Unix.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("sim: cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("sim: cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("sim: cannot listen for Ctrl-C")?;
    Ok(())
}
