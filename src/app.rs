//! Wiring shared by the commands: config -> store -> clients -> runner targets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, ConfigErrors, Loaded, StoreChoice};
use crate::jobs::dataplane::Prober;
use crate::jobs::runner::Target;
use crate::metrics::Metrics;
use crate::server_api::{ClientSettings, HttpClients, ServerApi};
use crate::store::Store;

/// Load and validate the configuration; on failure, the report to print.
pub fn load_config(path: &Path) -> Result<Loaded, String> {
    crate::config::load(path).map_err(|errors: ConfigErrors| errors.report(path))
}

/// Open the state store `[agent] store` names, migrating it: the SQLite file in
/// `[agent].state_dir` (on a blocking thread) or the PostgreSQL schema.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<Store>> {
    if let StoreChoice::Postgres(pg) = &config.store {
        let store = Store::open_postgres(pg)
            .await
            .context("opening the state store")?;
        return Ok(Arc::new(store));
    }
    let dir = config.agent.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .context("opening the state store")?
        .context("opening the state store")?;
    Ok(Arc::new(store))
}

/// Open the state store only to read it (`status`, `usage`): no write, no migration,
/// so it works beside the daemon and on a read-only state directory.
pub async fn open_store_for_reading(config: &Config) -> anyhow::Result<Arc<Store>> {
    if let StoreChoice::Postgres(pg) = &config.store {
        let store = Store::open_postgres_for_reading(pg)
            .await
            .context("opening the state store (read-only)")?;
        return Ok(Arc::new(store));
    }
    let dir = config.agent.state_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_for_reading(&dir))
        .await
        .context("opening the state store (read-only)")?
        .context("opening the state store (read-only)")?;
    Ok(Arc::new(store))
}

/// One runner target per configured server (optionally only `only`), in config order.
pub fn targets(config: &Arc<Config>, only: Option<&str>) -> anyhow::Result<Vec<Target>> {
    targets_with_metrics(config, only, None)
}

/// Like [`targets`], with every API call counted in `metrics`.
pub fn targets_with_metrics(
    config: &Arc<Config>,
    only: Option<&str>,
    metrics: Option<Arc<Metrics>>,
) -> anyhow::Result<Vec<Target>> {
    targets_with_clients(config, only, metrics, &HttpClients::new())
}

/// Like [`targets_with_metrics`], on the HTTP clients of `clients`: every server that
/// shares TLS settings shares one client (one pool, one root store); one more is built
/// per distinct `ca_file`. One cache per configuration load.
pub fn targets_with_clients(
    config: &Arc<Config>,
    only: Option<&str>,
    metrics: Option<Arc<Metrics>>,
    clients: &HttpClients,
) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    // One prober per set of trusted roots: each loads the system's root store once.
    let mut probers: HashMap<Vec<PathBuf>, Arc<Prober>> = HashMap::new();
    // Every configured secret, not only the server's own key: an error page may quote
    // anything the process ever sent.
    let redactor = Arc::new(crate::redact::Redactor::from_config(config));
    let chosen = config
        .servers
        .iter()
        .filter(|s| only.is_none_or(|name| s.name == name));
    for server in chosen {
        let context = || format!("server {}", server.name);
        let mut settings = ClientSettings::from_config(server).with_context(context)?;
        settings.metrics = metrics.clone();
        settings.redactor = redactor.clone();
        let api = ServerApi::with_clients(settings, clients).with_context(context)?;
        let prober = probers
            .entry(Prober::roots_of(server))
            .or_insert_with_key(|roots| Arc::new(Prober::new(roots.clone())))
            .clone();
        targets.push(Target {
            config: config.clone(),
            server: server.clone(),
            api,
            prober,
        });
    }
    if targets.is_empty()
        && let Some(name) = only
    {
        let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no server named {name:?} in the configuration (configured: {})",
            names.join(", ")
        );
    }
    Ok(targets)
}
