//! The data-plane part of `keywarden probe`: Xray's state (2.x `GET /health`) and one TLS
//! handshake per distinct VLESS port of the keys' links, with its result and latency.
//! Read-only, like the rest of probe: nothing is stored.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{DataplaneJobConfig, ServerConfig};
use crate::jobs::dataplane::{self, Prober};
use crate::server_api::{ServerApi, ServiceState};
use crate::store::PortState;
use crate::terminal::Shown;

/// What probe saw of the data plane. Field names are a contract (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataplaneReport {
    /// 2.x: `services.xray` of GET /health ("running", "stopped", or what it said);
    /// None on 1.x (no such endpoint).
    pub xray: Option<String>,
    /// Active keys, and how many of their links were read.
    pub keys: usize,
    pub links_read: usize,
    pub ports: Vec<PortReport>,
    /// Why the ports could not be probed at all.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortReport {
    /// `host:port` as probed.
    pub endpoint: String,
    pub server_name: Option<String>,
    /// Keys whose links point here.
    pub keys: usize,
    /// open | closed | tls_failed | cert_invalid
    pub result: PortState,
    pub latency_ms: Option<u64>,
    pub detail: String,
}

/// Look at Xray and the VLESS ports of one server.
pub async fn gather(
    api: &ServerApi,
    server: &ServerConfig,
    settings: &DataplaneJobConfig,
) -> DataplaneReport {
    let mut report = DataplaneReport {
        xray: None,
        keys: 0,
        links_read: 0,
        ports: Vec::new(),
        error: None,
    };
    let generation = match api.capabilities().await {
        Ok(capabilities) => capabilities.generation,
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    report.xray = match api.health().await {
        Ok(health) => health.xray.map(|state| match state {
            ServiceState::Running => "running".to_string(),
            ServiceState::Stopped => "stopped".to_string(),
            ServiceState::Other(word) => word,
        }),
        Err(error) if error.is_not_found() => None,
        Err(error) => Some(format!("unknown ({error})")),
    };
    let keys = match api.list_keys().await {
        Ok(keys) => keys,
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    report.keys = keys.iter().filter(|k| k.is_active).count();
    let inbounds = dataplane::inbounds(api, generation).await;
    let now = chrono::Utc::now();
    let links = match dataplane::links(
        api,
        &keys,
        Vec::new(),
        inbounds.as_deref(),
        server.vless_host.as_deref(),
        settings.max_ports_per_run,
        now,
    )
    .await
    {
        Ok(links) => links,
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    report.links_read = links.fetched.len();
    let prober = Arc::new(Prober::for_server(server));
    if let Err(error) = prober.client_config().await
        && !links.targets.is_empty()
    {
        report.error = Some(error);
        return report;
    }
    let targets: Vec<_> = links
        .targets
        .into_iter()
        .take(settings.max_ports_per_run)
        .collect();
    let results = dataplane::probe_targets(
        &prober,
        &targets,
        settings.handshake_timeout,
        server.dataplane_concurrency,
        now,
    )
    .await;
    for (target, (record, _)) in targets.iter().zip(results) {
        report.ports.push(PortReport {
            endpoint: record.endpoint,
            server_name: target.server_name.clone(),
            keys: target.keys.len(),
            result: record.state,
            latency_ms: record.latency_ms,
            detail: record.detail,
        });
    }
    report
}

/// The text lines of the report. What the server sent (its words for Xray's state,
/// hosts and server names from its links, errors) is escaped for the terminal.
pub fn render(out: &mut String, report: &DataplaneReport) {
    if let Some(xray) = &report.xray {
        let warning = if xray == "running" {
            ""
        } else {
            "  <- nobody can connect"
        };
        let _ = writeln!(out, "  xray           {}{warning}", Shown(xray));
    }
    let open = report
        .ports
        .iter()
        .filter(|p| p.result == PortState::Open)
        .count();
    let _ = writeln!(
        out,
        "  vless ports    {open} of {} answered TLS correctly ({} active keys, {} links read)",
        report.ports.len(),
        report.keys,
        report.links_read
    );
    for port in &report.ports {
        let latency = port
            .latency_ms
            .map(|ms| format!(" in {ms} ms"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "                 {} {}{latency} (sni {}, {} keys){}",
            Shown(&port.endpoint),
            port.result.as_str(),
            Shown(port.server_name.as_deref().unwrap_or("none")),
            port.keys,
            if port.result == PortState::Open {
                String::new()
            } else {
                format!(": {}", Shown(&port.detail))
            }
        );
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "                 not probed: {}", Shown(error));
    }
}
