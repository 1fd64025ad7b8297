//! `keywarden probe`: read-only diagnostics of each configured server. It observes and
//! reports; it never changes a server.
//!
//! Longer than 400 lines on purpose: one section of diagnostics per API call, printed as
//! text and as JSON from the same data.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::quota::human_bytes;
use crate::redact::Redactor;
use crate::server_api::{
    ApiErrorKind, Capabilities, ClientSettings, HttpClients, KeyRef, ServerApi,
};
use crate::terminal::Shown;

/// What probe learned about one server. Field names are a contract (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerReport {
    pub name: String,
    /// Base URL without credentials.
    pub url: String,
    pub reachable: bool,
    pub version: Option<String>,
    pub latency_ms: Option<u64>,
    pub capabilities: Option<Capabilities>,
    pub key_count: Option<usize>,
    /// The verdict of the freshest witness (validate-sync on 2.x, config-status else).
    pub synchronized: Option<bool>,
    pub sync: Option<SyncReport>,
    pub traffic_monitor: Option<MonitorReport>,
    pub keys: Vec<KeyReport>,
    /// Xray's state (2.x) and the VLESS ports seen from outside; None when unreachable.
    pub dataplane: Option<super::probe_dataplane::DataplaneReport>,
    /// The first problem that kept probe from reading everything; None when all answered.
    pub error: Option<String>,
    /// Every problem, in the order met.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    /// `validate-sync` (reads config.json fresh) or `config-status`.
    pub witness: &'static str,
    /// What config-status said, for comparison (2.x serves it from a cache).
    pub config_status_synchronized: Option<bool>,
    pub missing_in_config: Vec<String>,
    pub extra_in_config: Vec<String>,
    pub short_id_mismatches: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorReport {
    pub precise_monitor_available: bool,
    pub active_keys: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyReport {
    pub id: String,
    pub uuid: String,
    pub name: String,
    pub active: bool,
    pub total_bytes: Option<u64>,
    /// Why total_bytes is missing, when it is.
    pub traffic_error: Option<String>,
}

impl ServerReport {
    fn new(name: &str, url: &str) -> ServerReport {
        ServerReport {
            name: name.to_string(),
            url: url.to_string(),
            reachable: false,
            version: None,
            latency_ms: None,
            capabilities: None,
            key_count: None,
            synchronized: None,
            sync: None,
            traffic_monitor: None,
            keys: Vec::new(),
            dataplane: None,
            error: None,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, text: String) {
        if self.error.is_none() {
            self.error = Some(text.clone());
        }
        self.problems.push(text);
    }
}

/// A URL fit for printing: no user name or password.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.as_str().trim_end_matches('/').to_string()
}

/// Probe one server: every read-only call keywarden's jobs rely on.
pub async fn probe_server(api: &ServerApi) -> ServerReport {
    let mut report = ServerReport::new(api.name(), &display_url(&api.settings().base_url));
    let started = Instant::now();
    match api.api_status().await {
        Ok(status) => {
            report.reachable = true;
            report.latency_ms = Some(started.elapsed().as_millis() as u64);
            report.version = Some(status.version);
        }
        Err(error) => {
            report.reachable = !matches!(
                error.kind,
                ApiErrorKind::Unreachable { .. } | ApiErrorKind::Timeout { .. }
            );
            report.problem(error.to_string());
            return report;
        }
    }
    let capabilities = match api.capabilities().await {
        Ok(capabilities) => capabilities,
        Err(error) => {
            report.problem(error.to_string());
            return report;
        }
    };
    report.capabilities = Some(capabilities.clone());
    let keys = match api.refresh_keys().await {
        Ok(keys) => keys,
        Err(error) => {
            report.problem(error.to_string());
            return report;
        }
    };
    report.key_count = Some(keys.len());
    probe_sync(api, &capabilities, &mut report).await;
    if capabilities.bulk_traffic {
        match api.monitor_status().await {
            Ok(status) => {
                report.traffic_monitor = Some(MonitorReport {
                    precise_monitor_available: status.precise_monitor_available,
                    active_keys: status.active_keys,
                })
            }
            Err(error) => report.problem(error.to_string()),
        }
    }
    let refs: Vec<KeyRef> = keys.iter().map(|key| key.key_ref()).collect();
    let readings = api.key_traffic_many(&refs).await;
    for (key, (_, reading)) in keys.iter().zip(readings) {
        let (total_bytes, traffic_error) = match reading {
            Ok(traffic) => (Some(traffic.total_bytes), None),
            // An inactive key has no traffic to read on 1.x: not a server problem.
            Err(error) if matches!(error.kind, ApiErrorKind::KeyInactive { .. }) => {
                (None, Some("key is not active".to_string()))
            }
            Err(error) => {
                report.problems.push(format!("key {}: {error}", key.id));
                (None, Some(error.kind.to_string()))
            }
        };
        report.keys.push(KeyReport {
            id: key.id.clone(),
            uuid: key.uuid.clone(),
            name: key.name.clone(),
            active: key.is_active,
            total_bytes,
            traffic_error,
        });
    }
    report
}

async fn probe_sync(api: &ServerApi, capabilities: &Capabilities, report: &mut ServerReport) {
    let config_status = match api.config_status().await {
        Ok(status) => Some(status),
        Err(error) => {
            report.problem(error.to_string());
            None
        }
    };
    if capabilities.validate_sync {
        match api.validate_sync().await {
            Ok(validation) => {
                report.synchronized = Some(validation.synced);
                report.sync = Some(SyncReport {
                    witness: "validate-sync",
                    config_status_synchronized: config_status.as_ref().map(|s| s.synchronized),
                    missing_in_config: validation.missing_in_config,
                    extra_in_config: validation.extra_in_config,
                    short_id_mismatches: validation.short_id_mismatches,
                });
                return;
            }
            Err(error) => report.problem(error.to_string()),
        }
    }
    if let Some(status) = config_status {
        let store: BTreeSet<&String> = status.key_store_uuids.iter().collect();
        let config: BTreeSet<&String> = status.config_uuids.iter().collect();
        let missing: Vec<String> = store.difference(&config).map(|s| s.to_string()).collect();
        let extra: Vec<String> = config.difference(&store).map(|s| s.to_string()).collect();
        report.synchronized = Some(status.synchronized && missing.is_empty() && extra.is_empty());
        report.sync = Some(SyncReport {
            witness: "config-status",
            config_status_synchronized: Some(status.synchronized),
            missing_in_config: missing,
            extra_in_config: extra,
            short_id_mismatches: Vec::new(),
        });
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// The text form of one report. Everything the server sent is escaped for the
/// terminal (names, ids, uuids, versions, error texts); `--json` stays exact.
pub fn render_text(report: &ServerReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  {}", Shown(&report.name), Shown(&report.url));
    match (&report.version, report.latency_ms) {
        (Some(version), Some(latency)) => {
            let _ = writeln!(
                out,
                "  reachable      yes ({latency} ms), API {}",
                Shown(version)
            );
        }
        _ => {
            let _ = writeln!(out, "  reachable      {}", yes_no(report.reachable));
        }
    }
    if let Some(caps) = &report.capabilities {
        let _ = writeln!(
            out,
            "  capabilities   generation {:?}, bulk traffic: {}, validate-sync: {}",
            caps.generation,
            yes_no(caps.bulk_traffic),
            yes_no(caps.validate_sync)
        );
    }
    if let Some(count) = report.key_count {
        let active = report.keys.iter().filter(|k| k.active).count();
        let _ = writeln!(out, "  keys           {count} ({active} active)");
    }
    if let Some(sync) = &report.sync {
        let verdict = if report.synchronized == Some(true) {
            "in sync"
        } else {
            "DRIFT"
        };
        let _ = writeln!(
            out,
            "  sync           {verdict} (witness: {})",
            sync.witness
        );
        if sync.config_status_synchronized.is_some()
            && sync.config_status_synchronized != report.synchronized
        {
            let _ = writeln!(
                out,
                "                 config-status disagrees (it reads a cached config.json)"
            );
        }
        for uuid in &sync.missing_in_config {
            let _ = writeln!(
                out,
                "                 missing in config.json: {}",
                Shown(uuid)
            );
        }
        for uuid in &sync.extra_in_config {
            let _ = writeln!(
                out,
                "                 in config.json but not a key: {}",
                Shown(uuid)
            );
        }
        for mismatch in &sync.short_id_mismatches {
            let _ = writeln!(
                out,
                "                 short_id mismatch: {}",
                Shown(mismatch)
            );
        }
    }
    if let Some(monitor) = &report.traffic_monitor {
        let _ = writeln!(
            out,
            "  traffic monitor precise monitor available: {}, active keys: {}",
            yes_no(monitor.precise_monitor_available),
            monitor.active_keys
        );
    }
    if !report.keys.is_empty() {
        let _ = writeln!(
            out,
            "  {:<36}  {:<36}  {:<6}  {:>14}  NAME",
            "ID", "UUID", "ACTIVE", "TOTAL"
        );
        for key in &report.keys {
            let total = match (key.total_bytes, &key.traffic_error) {
                (Some(bytes), _) => format!("{bytes} ({})", human_bytes(bytes)),
                (None, Some(_)) => "-".to_string(),
                (None, None) => "?".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<36}  {:<36}  {:<6}  {:>14}  {}",
                Shown(&key.id),
                Shown(&key.uuid),
                yes_no(key.active),
                total,
                Shown(&key.name)
            );
        }
    }
    if let Some(dataplane) = &report.dataplane {
        super::probe_dataplane::render(&mut out, dataplane);
    }
    for problem in &report.problems {
        let _ = writeln!(out, "  problem: {}", Shown(problem));
    }
    out
}

/// Probe the configured servers (all, or the one named) concurrently; print a report
/// per server in config order.
pub async fn run(path: &Path, only: Option<&str>, json: bool) -> anyhow::Result<u8> {
    crate::logging::init(crate::logging::LogFormat::Auto, "warn");
    let loaded = match crate::config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("{}", errors.report(path));
            return Ok(EXIT_PROBLEMS);
        }
    };
    let servers: Vec<_> = loaded
        .config
        .servers
        .iter()
        .filter(|server| only.is_none_or(|name| server.name == name))
        .collect();
    if servers.is_empty() {
        let names: Vec<&str> = loaded
            .config
            .servers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        eprintln!(
            "probe: no server named {:?} in {} (configured: {})",
            only.unwrap_or_default(),
            path.display(),
            names.join(", ")
        );
        return Ok(EXIT_PROBLEMS);
    }
    let redactor = Arc::new(Redactor::from_config(&loaded.config));
    // One HTTP client for every server with the same TLS settings (see server_api::pool).
    let clients = HttpClients::new();
    let mut tasks = Vec::new();
    for server in servers {
        let server = server.clone();
        let dataplane = loaded.config.jobs.dataplane.clone();
        let api = ClientSettings::from_config(&server).and_then(|mut settings| {
            settings.redactor = redactor.clone();
            ServerApi::with_clients(settings, &clients)
        });
        tasks.push(tokio::spawn(async move {
            match api {
                Ok(api) => {
                    let mut report = probe_server(&api).await;
                    if report.reachable && report.version.is_some() {
                        report.dataplane =
                            Some(super::probe_dataplane::gather(&api, &server, &dataplane).await);
                    }
                    report
                }
                Err(error) => {
                    let mut report = ServerReport::new(&server.name, &display_url(&server.url));
                    report.problem(error.to_string());
                    report
                }
            }
        }));
    }
    let mut all_answered = true;
    for task in tasks {
        let report = task.await?;
        all_answered &= report.error.is_none();
        if json {
            crate::outln!("{}", serde_json::to_string(&report)?)?;
        } else {
            crate::outln!("{}", render_text(&report))?;
        }
    }
    Ok(if all_answered { EXIT_OK } else { EXIT_PROBLEMS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        let url = reqwest::Url::parse("https://admin:pw@vpn.example.net/api/").unwrap();
        assert_eq!(display_url(&url), "https://vpn.example.net/api");
    }

    #[test]
    fn unreachable_report_renders() {
        let mut report = ServerReport::new("fra-1", "http://127.0.0.1:1/api");
        report.problem("GET /api/: unreachable: connection refused".into());
        let text = render_text(&report);
        assert!(text.contains("reachable      no"));
        assert!(text.contains("problem: GET /api/: unreachable"));
    }
}
