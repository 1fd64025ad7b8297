//! `keywarden status`: what the state store knows, per server: last seen up/down, API
//! version, the last run of each job, open findings, the last actions taken. It reads
//! the store only; it never calls a server. With the PostgreSQL store it also shows
//! which agent leads which server (the advisory locks granted in the database, mapped
//! back to server names, and the `agents` rows).

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{EXIT_OK, EXIT_PROBLEMS};
use crate::model::dataplane::{PortRecord, PortState, XrayMemory, XrayState};
use crate::model::{AuditEntry, RunRecord, ServerState, StoredFinding};
use crate::store::{Store, StoreError};
use crate::terminal::{Shown, escape};

/// Audit entries shown per server.
pub const RECENT_ACTIONS: usize = 10;

#[derive(Debug, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub state: Option<ServerState>,
    pub last_runs: Vec<RunRecord>,
    pub open_findings: Vec<StoredFinding>,
    pub recent_actions: Vec<AuditEntry>,
    /// 2.x: Xray's state as the health job last read it (None: never read, or 1.x).
    pub xray: Option<XrayMemory>,
    /// The last probe of each VLESS port (the dataplane job).
    pub vless_ports: Vec<PortRecord>,
    /// With the PostgreSQL store: which agent leads this server (absent with SQLite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leadership: Option<ServerLeader>,
}

/// Who leads a server of a shared fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerLeader {
    /// The agent holding its lock; `None`: nobody does right now.
    pub leader: Option<String>,
}

/// Gather the status of `servers` (config order) from the store.
pub async fn gather(store: &Store, servers: &[String]) -> Result<Vec<ServerStatus>, StoreError> {
    let states = store.servers().states().await?;
    let runs = store.runs().last_runs().await?;
    let mut out = Vec::new();
    for name in servers {
        out.push(ServerStatus {
            name: name.clone(),
            state: states.iter().find(|s| &s.server == name).cloned(),
            last_runs: runs.iter().filter(|r| &r.server == name).cloned().collect(),
            open_findings: store.findings().open(Some(name)).await?,
            recent_actions: store.audit().recent(Some(name), RECENT_ACTIONS).await?,
            xray: Some(store.servers().xray(name).await?).filter(|m| m.state.is_some()),
            vless_ports: store.dataplane().ports(name).await?,
            leadership: None,
        });
    }
    Ok(out)
}

fn when(at: Option<DateTime<Utc>>, tz: Tz) -> String {
    at.map(|t| {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    })
    .unwrap_or_else(|| "never".into())
}

/// The text form (pure). Text that came from servers is escaped for the terminal.
pub fn render_text(statuses: &[ServerStatus], tz: Tz) -> String {
    let mut out = String::new();
    for status in statuses {
        let _ = writeln!(out, "{}", status.name);
        if let Some(led) = &status.leadership {
            let leader = led
                .leader
                .as_deref()
                .unwrap_or("NOBODY (no agent holds its lock)");
            let _ = writeln!(out, "  led by          {}", Shown(leader));
        }
        match &status.state {
            Some(state) => {
                let _ = writeln!(
                    out,
                    "  API version     {}",
                    Shown(state.version.as_deref().unwrap_or("unknown"))
                );
                let _ = writeln!(out, "  last seen up    {}", when(state.last_up_at, tz));
                let _ = writeln!(out, "  last seen down  {}", when(state.last_down_at, tz));
                if state.consecutive_failures > 0 {
                    let error = state.last_error.as_deref().unwrap_or("");
                    let _ = writeln!(
                        out,
                        "  DOWN            {} failed checks in a row: {}",
                        state.consecutive_failures,
                        Shown(error)
                    );
                }
            }
            None => {
                let _ = writeln!(out, "  no health check recorded yet");
            }
        }
        data_plane(&mut out, status, tz);
        for run in &status.last_runs {
            let _ = writeln!(
                out,
                "  {:<15} {} {} ({} ms){}",
                run.job,
                when(Some(run.started_at), tz),
                run.outcome.as_str(),
                run.duration_ms,
                if run.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", escape(&run.detail))
                }
            );
        }
        if status.open_findings.is_empty() {
            let _ = writeln!(out, "  open findings   none");
        }
        for finding in &status.open_findings {
            let _ = writeln!(
                out,
                "  [{}] {} (since {})",
                finding.severity.as_str().to_uppercase(),
                Shown(&finding.summary),
                when(Some(finding.first_seen), tz)
            );
        }
        if !status.recent_actions.is_empty() {
            let _ = writeln!(out, "  recent actions");
        }
        for action in &status.recent_actions {
            let detail = if action.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", escape(&action.detail))
            };
            let _ = writeln!(
                out,
                "    {} {} {} {}{detail}",
                when(Some(action.at), tz),
                action.action,
                Shown(&action.target),
                action.result
            );
        }
        out.push('\n');
    }
    out
}

/// Xray's state and the VLESS ports: an API that answers is not a server users can use.
fn data_plane(out: &mut String, status: &ServerStatus, tz: Tz) {
    if let Some(xray) = &status.xray {
        let _ = match xray.state {
            Some(XrayState::Stopped) => writeln!(
                out,
                "  XRAY STOPPED    since {} ({} reads in a row): nobody can connect",
                when(xray.first_stopped_at, tz),
                xray.stopped_reads
            ),
            _ => writeln!(
                out,
                "  xray            running (checked {})",
                when(xray.checked_at, tz)
            ),
        };
    }
    if status.vless_ports.is_empty() {
        return;
    }
    let open = status
        .vless_ports
        .iter()
        .filter(|p| p.state == PortState::Open)
        .count();
    let last = status.vless_ports.iter().map(|p| p.probed_at).max();
    let _ = writeln!(
        out,
        "  vless ports     {open} of {} answer TLS correctly (last probed {})",
        status.vless_ports.len(),
        when(last, tz)
    );
    for port in status
        .vless_ports
        .iter()
        .filter(|p| p.state != PortState::Open)
    {
        let _ = writeln!(
            out,
            "    {} {}: {}",
            Shown(&port.endpoint),
            port.state.as_str(),
            Shown(&port.detail)
        );
    }
}

/// Who leads what, read from PostgreSQL on a pooled connection (it takes no lock).
async fn fleet(
    pg: &crate::config::PgConfig,
    servers: &[String],
) -> anyhow::Result<crate::lead::fleet::FleetView> {
    let connector = crate::store::postgres::PgConnector::from_config(pg)?;
    let client = connector.pooled().await?;
    crate::lead::postgres::fleet_view(&client, &pg.schema, servers)
        .await
        .map_err(|error| {
            let detail = crate::store::postgres::error_text(&error);
            anyhow::anyhow!(
                "reading leadership from {}: {}",
                connector.location(),
                connector.redact(&detail)
            )
        })
}

pub async fn run(path: &Path, json: bool) -> anyhow::Result<u8> {
    crate::logging::init(crate::logging::LogFormat::Auto, "warn");
    // status reads only the store: it needs state_dir, the server names and the time
    // zone, not the secrets, so unset *_env variables must not stop it.
    let text = crate::config::read_text(path).unwrap_or_default();
    let any_secret = |_: &str| Some("[not needed by status]".to_string());
    let lenient = crate::config::from_str_with_env(&text, path, &any_secret);
    let config = match lenient
        .map_err(|_| ())
        .or_else(|_| crate::app::load_config(path))
    {
        Ok(loaded) => loaded.config,
        Err(report) => {
            eprint!("{report}");
            return Ok(EXIT_PROBLEMS);
        }
    };
    let store = crate::app::open_store_for_reading(&config).await?;
    let names: Vec<String> = config.servers.iter().map(|s| s.name.clone()).collect();
    let mut statuses = gather(&store, &names).await?;
    let fleet = match config.store.postgres() {
        Some(pg) => Some(fleet(pg, &names).await?),
        None => None,
    };
    if let Some(fleet) = &fleet {
        for status in &mut statuses {
            status.leadership = Some(ServerLeader {
                leader: fleet.leaders.get(&status.name).cloned(),
            });
        }
    }
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&statuses)?)?;
    } else {
        let mut text = String::new();
        if let Some(fleet) = &fleet {
            text.push_str(&crate::lead::fleet::render(
                fleet,
                &names,
                config.agent.timezone,
            ));
        }
        text.push_str(&render_text(&statuses, config.agent.timezone));
        crate::output::print(&text)?;
    }
    Ok(EXIT_OK)
}
