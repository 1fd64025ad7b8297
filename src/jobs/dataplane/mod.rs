//! The dataplane job: can users connect? For each distinct host:port of the keys'
//! vless:// links (what users' clients dial), one TLS 1.3 handshake from outside with a
//! server name of the port's inbound, verified against the trusted roots. It owns the
//! link cache, the port probes and the rotation over many ports; it never changes a
//! server.
//!
//! `observe` (read-only: the key list, the links, the 2.x inbounds, the probes, what the
//! store remembers) -> `plan::assess` (pure) -> `execute` (the store, the findings).
//!
//! Longer than 400 lines on purpose: observing is most of it (the links fetched in
//! parallel, the probes within their concurrency, the 2.x inbounds and Xray's state), and
//! the execute step's plan lines follow what observe gathered.

pub mod plan;
pub mod report;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use plan::{Assessment, Outage, Target};
pub use tls::{ProbeOutcome, Prober};

use super::config_sync::last_restart;
use super::{Fact, JobContext, JobResult};
use crate::model::dataplane::{PortRecord, PortState, StoredLink, XrayMemory, XrayState};
use crate::model::report::{AvailabilitySample, AvailabilitySeries};
use crate::model::{Finding, FindingKind, JobKind, Severity};
use crate::server_api::{
    ApiError, Generation, KeyRef, ServerApi, ServiceState, VpnKey, XrayInbound,
};
use crate::store::{DataplaneCommit, StoreError};
use plan::ActiveKey;

/// Ports listed one by one in a run's plan lines at most.
const LISTED_PORTS: usize = 10;

/// Everything one run saw.
#[derive(Debug, Clone)]
pub struct Observed {
    pub generation: Generation,
    pub targets: Vec<Target>,
    pub probed: Vec<PortRecord>,
    pub remembered: Vec<PortRecord>,
    pub fetched: Vec<StoredLink>,
    pub forgotten: Vec<String>,
    pub cursor: Option<String>,
    pub xray: XrayMemory,
    /// 2.x: GET /health right after the probes, when every probed port was closed.
    pub xray_now: Option<XrayState>,
    pub last_restart: Option<DateTime<Utc>>,
    /// Keys whose link could not be read or had no vless:// URL in it.
    pub link_problems: Vec<String>,
    pub latencies: Vec<Duration>,
}

/// Why a run could not observe.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Tls(String),
}

/// The signature a key's link depends on.
fn key_sig(key: &VpnKey) -> String {
    format!(
        "{}|{}|{}",
        key.uuid,
        key.port.map(|p| p.to_string()).unwrap_or_default(),
        key.short_id.as_deref().unwrap_or_default()
    )
}

fn active_keys(keys: &[VpnKey]) -> Vec<ActiveKey> {
    keys.iter()
        .filter(|k| k.is_active)
        .map(|k| ActiveKey {
            id: k.id.clone(),
            uuid: k.uuid.clone(),
            name: k.name.clone(),
            sig: key_sig(k),
        })
        .collect()
}

/// Fetch the links of `ids`; each result is the link, None (no vless:// URL in the
/// answer, or the key is gone), or the error.
async fn fetch_links(
    api: &ServerApi,
    keys: &[ActiveKey],
    ids: &[String],
    now: DateTime<Utc>,
) -> Vec<(String, Result<Option<StoredLink>, ApiError>)> {
    let by_id: HashMap<&str, &ActiveKey> = keys.iter().map(|k| (k.id.as_str(), k)).collect();
    let mut tasks = JoinSet::new();
    for id in ids {
        let Some(key) = by_id.get(id.as_str()).map(|&k| k.clone()) else {
            continue;
        };
        let api = api.clone();
        tasks.spawn(async move {
            let result = match api.key_config(&KeyRef::both(&key.id, &key.uuid)).await {
                Ok(config) => Ok(config.link.map(|link| StoredLink {
                    key_id: key.id.clone(),
                    key_sig: key.sig.clone(),
                    host: link.host,
                    port: link.port,
                    sni: link.sni,
                    fetched_at: now,
                })),
                Err(error) if error.is_not_found() => Ok(None),
                Err(error) => Err(error),
            };
            (key.id, result)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(pair) = joined {
            out.push(pair);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The keys' links (remembered, fetched where needed) and the targets they make.
pub struct Links {
    pub targets: Vec<Target>,
    pub fetched: Vec<StoredLink>,
    pub forgotten: Vec<String>,
    pub problems: Vec<String>,
}

/// Read the links this run needs and derive the distinct targets. `Err` only when every
/// fetch failed with a transport error and nothing is remembered.
pub async fn links(
    api: &ServerApi,
    keys: &[VpnKey],
    remembered: Vec<StoredLink>,
    inbounds: Option<&[XrayInbound]>,
    vless_host: Option<&str>,
    max_fetches: usize,
    now: DateTime<Utc>,
) -> Result<Links, ApiError> {
    let active = active_keys(keys);
    let mut known: HashMap<String, StoredLink> = remembered
        .into_iter()
        .map(|l| (l.key_id.clone(), l))
        .collect();
    let link_plan = plan::links_to_fetch(&active, &known, max_fetches, now);
    for id in &link_plan.forget {
        known.remove(id);
    }
    let mut fetched = Vec::new();
    let mut problems = Vec::new();
    let mut first_error = None;
    let results = fetch_links(api, &active, &link_plan.fetch, now).await;
    let all_failed = !results.is_empty() && results.iter().all(|(_, r)| r.is_err());
    let names: HashMap<&str, &str> = active
        .iter()
        .map(|k| (k.id.as_str(), k.name.as_str()))
        .collect();
    for (id, result) in results {
        let name = names.get(id.as_str()).copied().unwrap_or_default();
        match result {
            Ok(Some(link)) => {
                known.insert(id.clone(), link.clone());
                fetched.push(link);
            }
            Ok(None) => problems.push(format!("{name}: its client config holds no vless:// link")),
            Err(error) => {
                problems.push(format!("{name}: {error}"));
                first_error.get_or_insert(error);
            }
        }
    }
    if all_failed
        && known.is_empty()
        && let Some(error) = first_error
    {
        return Err(error);
    }
    Ok(Links {
        targets: plan::targets(&active, &known, inbounds, vless_host),
        fetched,
        forgotten: link_plan.forget,
        problems,
    })
}

/// Probe `targets` with at most `concurrency` handshakes in flight.
pub async fn probe_targets(
    prober: &Arc<Prober>,
    targets: &[Target],
    timeout: Duration,
    concurrency: usize,
    now: DateTime<Utc>,
) -> Vec<(PortRecord, Option<Duration>)> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (index, target) in targets.iter().cloned().enumerate() {
        let (prober, permits) = (prober.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok();
            let outcome = match &target.server_name {
                Some(name) => prober.probe(&target.host, target.port, name, timeout).await,
                None => ProbeOutcome {
                    state: PortState::TlsFailed,
                    latency: None,
                    detail: "neither the link nor the inbound names a server name (sni)".into(),
                },
            };
            (index, target, outcome)
        });
    }
    let mut out: Vec<(usize, PortRecord, Option<Duration>)> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, target, outcome)) = joined else {
            continue;
        };
        let detail = match outcome.state {
            PortState::Open => format!("sni {}", target.server_name.unwrap_or_default()),
            _ => outcome.detail,
        };
        let record = PortRecord {
            endpoint: target.endpoint,
            state: outcome.state,
            detail,
            latency_ms: outcome.latency.map(|d| d.as_millis() as u64),
            probed_at: now,
        };
        out.push((index, record, outcome.latency));
    }
    out.sort_by_key(|(index, _, _)| *index);
    out.into_iter()
        .map(|(_, record, latency)| (record, latency))
        .collect()
}

/// The 2.x inbound listing, when the server has it.
pub async fn inbounds(api: &ServerApi, generation: Generation) -> Option<Vec<XrayInbound>> {
    if generation == Generation::V1 {
        return None;
    }
    match api.xray_inbounds().await {
        Ok(list) => Some(list),
        Err(error) => {
            tracing::debug!(server = %api.name(), %error, "dataplane: no inbound listing");
            None
        }
    }
}

/// Observe `ctx.server`.
pub async fn observe(ctx: &JobContext<'_>) -> Result<Observed, ObserveError> {
    let server = ctx.server.name.as_str();
    let settings = &ctx.config.jobs.dataplane;
    let now = ctx.clock.now();
    let generation = ctx.api.capabilities().await?.generation;
    let keys = ctx.api.list_keys().await?;
    let inbounds = inbounds(ctx.api, generation).await;
    let remembered_links = ctx.store.dataplane().links(server).await?;
    let links = links(
        ctx.api,
        &keys,
        remembered_links,
        inbounds.as_deref(),
        ctx.server.vless_host.as_deref(),
        settings.max_ports_per_run,
        now,
    )
    .await?;
    let memory = ctx.store.dataplane().memory(server).await?;
    let (chosen, cursor) = plan::this_run(
        &links.targets,
        memory.cursor.as_deref(),
        settings.max_ports_per_run,
    );
    let batch: Vec<Target> = chosen.iter().map(|&i| links.targets[i].clone()).collect();
    if !batch.is_empty() {
        ctx.prober
            .client_config()
            .await
            .map_err(ObserveError::Tls)?;
    }
    let results = probe_targets(
        ctx.prober,
        &batch,
        settings.handshake_timeout,
        ctx.server.dataplane_concurrency,
        now,
    )
    .await;
    let latencies = results.iter().filter_map(|(_, l)| *l).collect();
    let probed: Vec<PortRecord> = results.into_iter().map(|(record, _)| record).collect();
    // Every port closed: on 2.x, is Xray itself stopped? (The health job reports and
    // restarts that; read after the probes, so a restart made meanwhile is seen below.)
    let all_closed = !probed.is_empty() && probed.iter().all(|p| p.state == PortState::Closed);
    let xray_now = match all_closed && generation != Generation::V1 {
        true => match ctx.api.health().await.map(|h| h.xray) {
            Ok(Some(ServiceState::Stopped)) => Some(XrayState::Stopped),
            Ok(Some(ServiceState::Running)) => Some(XrayState::Running),
            _ => None,
        },
        false => None,
    };
    let since = ctx.clock.now() - plan::SETTLE;
    Ok(Observed {
        generation,
        targets: links.targets,
        probed,
        remembered: ctx.store.dataplane().ports(server).await?,
        fetched: links.fetched,
        forgotten: links.forgotten,
        cursor,
        xray: ctx.store.servers().xray(server).await?,
        xray_now,
        last_restart: last_restart(&ctx.store.sync().attempts_since(server, since).await?),
        link_problems: links.problems,
        latencies,
    })
}

/// Run the job once on `ctx.server`.
pub async fn run(ctx: &JobContext<'_>) -> JobResult {
    let observed = match observe(ctx).await {
        Ok(observed) => observed,
        Err(error) => return observe_failed(ctx, error),
    };
    let now = ctx.clock.now();
    let endpoints: Vec<String> = observed
        .targets
        .iter()
        .map(|t| t.endpoint.clone())
        .collect();
    let assessment = plan::assess(
        &endpoints,
        &observed.probed,
        &observed.remembered,
        observed.xray_now,
        &observed.xray,
        observed.last_restart,
        now,
    );
    tracing::debug!(server = %ctx.server.name, ?assessment, "dataplane assessment");
    execute(ctx, &observed, endpoints, &assessment, now).await
}

async fn execute(
    ctx: &JobContext<'_>,
    observed: &Observed,
    endpoints: Vec<String>,
    assessment: &Assessment,
    now: DateTime<Utc>,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let commit = DataplaneCommit {
        fetched: observed.fetched.clone(),
        forgotten: observed.forgotten.clone(),
        probed: observed.probed.clone(),
        endpoints,
        cursor: observed.cursor.clone(),
        now,
    };
    if let Err(error) = ctx.store.dataplane().commit(server, commit).await {
        // The next run probes again and fetches the links again: nothing is lost.
        tracing::error!(server, %error, "dataplane: cannot save the probes");
    }
    // The usage report's availability: one sample per port probed.
    let samples: Vec<AvailabilitySample> = observed
        .probed
        .iter()
        .map(|p| AvailabilitySample {
            series: AvailabilitySeries::VlessPorts,
            up: p.state == PortState::Open,
        })
        .collect();
    let report = ctx.store.report();
    if let Err(error) = report.record_availability(server, now, &samples).await {
        tracing::error!(server, %error, "dataplane: cannot record the availability samples");
    }
    let keys: HashMap<String, Vec<String>> = observed
        .targets
        .iter()
        .map(|t| (t.endpoint.clone(), t.keys.clone()))
        .collect();
    let mut result = JobResult {
        findings: report::findings(server, assessment, &observed.probed, &keys),
        ..JobResult::default()
    };
    result.plan.push(report::summary_line(
        server,
        assessment,
        observed.targets.len(),
    ));
    // One line per port when there are few; else the ports that are not open (the run's
    // lines are stored with it: a server with hundreds of ports must not fill the store).
    let listed: Vec<&PortRecord> = observed
        .probed
        .iter()
        .filter(|r| observed.probed.len() <= LISTED_PORTS || r.state != PortState::Open)
        .collect();
    for record in listed.iter().take(LISTED_PORTS) {
        let latency = record
            .latency_ms
            .map(|ms| format!(" in {ms} ms"))
            .unwrap_or_default();
        result.plan.push(format!(
            "  {} {}{latency}: {}",
            record.endpoint,
            record.state.as_str(),
            record.detail
        ));
    }
    if listed.len() > LISTED_PORTS {
        result.plan.push(format!(
            "  ... and {} more ports not open",
            listed.len() - LISTED_PORTS
        ));
    }
    for problem in observed.link_problems.iter().take(LISTED_PORTS) {
        result.plan.push(format!("  link not read: {problem}"));
    }
    result.facts.push(Fact::VlessPorts {
        probed: assessment.probed,
        open: assessment.open,
        latencies: observed.latencies.clone(),
    });
    result
}

/// Transient trouble is the runner's to back off; anything else is a finding.
fn observe_failed(ctx: &JobContext<'_>, error: ObserveError) -> JobResult {
    let server = ctx.server.name.as_str();
    let (summary, seen, next) = match &error {
        ObserveError::Api(api) if api.is_transient() => {
            return JobResult {
                transport_failure: Some(error.to_string()),
                ..JobResult::default()
            };
        }
        ObserveError::Store(_) => {
            return JobResult {
                transport_failure: Some(format!("dataplane not run: {error}")),
                ..JobResult::default()
            };
        }
        ObserveError::Api(api) => (
            format!("{server}: the keys' links could not be read: {}", api.kind),
            api.to_string(),
            "check the API key and version (keywarden probe).".to_string(),
        ),
        ObserveError::Tls(reason) => (
            format!("{server}: the VLESS ports cannot be checked: no trusted roots"),
            reason.clone(),
            "install the system's CA certificates (ca-certificates), or set reality_ca_file for private setups.".to_string(),
        ),
    };
    JobResult::default().with_finding(Finding {
        server: server.to_string(),
        job: JobKind::Dataplane,
        kind: FindingKind::ApiError,
        subject: report::SUBJECT.to_string(),
        severity: Severity::Warning,
        summary,
        details: format!("Seen: {seen}\nDone: nothing was probed.\nNext: {next}"),
    })
}
