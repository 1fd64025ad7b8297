//! Reality on 2.x servers, read-only and per inbound. `POST verify-reality` reads only the
//! first inbound, which on the usual 2.x layout (`GET /api/system/xray/config-status`
//! says `api_inbound: true`) is Xray's API inbound, so there it can only fail: it is never
//! called on that layout. Instead `GET /api/system/xray/inbounds` lists every VLESS
//! inbound with `dest`, `server_names`, `short_ids` and `port`, and `validate-sync`
//! reports `short_id_mismatches`. After `confirmations` invalid reads in a row,
//! `POST /api/system/fix-reality-keys` puts the central private key and each key's short
//! id back (it restarts Xray: within the shared sync budget, intent first), and the
//! listing is read again.
//!
//! `observe` (read-only) -> `plan` (pure) -> `execute` (the streak, the fix, findings).
//!
//! Longer than 400 lines on purpose (about 150 of them tests): the job's three steps, the
//! problems it names and the text of its findings belong together, as in `xray.rs`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::restart;
use super::{JobContext, JobResult, ObserveError, RunMode};
use crate::config::RealityJobConfig;
use crate::model::dataplane::RealityMemory;
use crate::model::{AttemptKind, AuditResult, Finding, FindingKind, JobKind, Severity};
use crate::server_api::{ApiError, ApiErrorKind, VpnKey, XrayInbound};

/// Problems named one by one in a finding at most.
const NAMED: usize = 10;

/// What is wrong with one inbound.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    EmptyDest {
        inbound: String,
    },
    MalformedDest {
        inbound: String,
        dest: String,
    },
    NoServerNames {
        inbound: String,
    },
    NoShortIds {
        inbound: String,
    },
    MalformedShortId {
        inbound: String,
        short_id: String,
    },
    /// The key's short id (key store) is not among the inbound's.
    ShortIdMismatch {
        inbound: String,
        key: String,
        expected: String,
    },
    /// validate-sync reported a mismatch keywarden could not place in an inbound.
    ReportedMismatch {
        what: String,
    },
}

impl Problem {
    pub fn describe(&self) -> String {
        match self {
            Problem::EmptyDest { inbound } => format!("{inbound}: dest is empty"),
            Problem::MalformedDest { inbound, dest } => {
                format!("{inbound}: dest {dest:?} is not host:port")
            }
            Problem::NoServerNames { inbound } => format!("{inbound}: no server names"),
            Problem::NoShortIds { inbound } => format!("{inbound}: no short ids"),
            Problem::MalformedShortId { inbound, short_id } => {
                format!("{inbound}: short id {short_id:?} is not 0-16 hex digits")
            }
            Problem::ShortIdMismatch {
                inbound,
                key,
                expected,
            } => format!("{inbound}: key {key}'s short id {expected} is not among the inbound's"),
            Problem::ReportedMismatch { what } => {
                format!("validate-sync reports a short id mismatch: {what}")
            }
        }
    }
}

fn valid_dest(dest: &str) -> bool {
    if dest.chars().any(char::is_whitespace) {
        return false;
    }
    if dest.bytes().all(|b| b.is_ascii_digit()) {
        return dest.parse::<u16>().is_ok_and(|p| p > 0);
    }
    match dest.rsplit_once(':') {
        Some((host, port)) => {
            !host.trim_matches(['[', ']']).is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn valid_short_id(id: &str) -> bool {
    id.len() <= 16 && id.len().is_multiple_of(2) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An inbound as findings name it: its tag and port.
fn label(inbound: &XrayInbound) -> String {
    match inbound.port {
        Some(port) => format!("inbound {} (port {port})", inbound.tag),
        None => format!("inbound {}", inbound.tag),
    }
}

/// Every problem of the listed inbounds (pure). `mismatches` are validate-sync's.
pub fn problems(inbounds: &[XrayInbound], keys: &[VpnKey], mismatches: &[String]) -> Vec<Problem> {
    let mut found = Vec::new();
    for inbound in inbounds {
        let name = label(inbound);
        let dest = inbound.dest.trim();
        if dest.is_empty() {
            found.push(Problem::EmptyDest {
                inbound: name.clone(),
            });
        } else if !valid_dest(dest) {
            found.push(Problem::MalformedDest {
                inbound: name.clone(),
                dest: dest.to_string(),
            });
        }
        if inbound.server_names.iter().all(|n| n.trim().is_empty()) {
            found.push(Problem::NoServerNames {
                inbound: name.clone(),
            });
        }
        if inbound.short_ids.is_empty() {
            found.push(Problem::NoShortIds {
                inbound: name.clone(),
            });
        }
        for short_id in inbound.short_ids.iter().filter(|id| !valid_short_id(id)) {
            found.push(Problem::MalformedShortId {
                inbound: name.clone(),
                short_id: short_id.clone(),
            });
        }
        for key in keys
            .iter()
            .filter(|k| k.is_active && inbound.uuids.contains(&k.uuid))
        {
            let Some(expected) = key.short_id.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            if !inbound.short_ids.is_empty() && !inbound.short_ids.iter().any(|s| s == expected) {
                found.push(Problem::ShortIdMismatch {
                    inbound: name.clone(),
                    key: format!("{:?} ({})", key.name, key.uuid),
                    expected: expected.to_string(),
                });
            }
        }
    }
    let placed = |what: &str| {
        found
            .iter()
            .any(|p| matches!(p, Problem::ShortIdMismatch { key, .. } if key.contains(what)))
    };
    let unplaced: Vec<Problem> = mismatches
        .iter()
        .filter(|m| !placed(m))
        .map(|what| Problem::ReportedMismatch { what: what.clone() })
        .collect();
    found.extend(unplaced);
    found.sort();
    found.dedup();
    found
}

/// A stable description of a set of problems, to tell one from another.
pub fn signature(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What observe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// This run's reads (problems of each), oldest first.
    pub reads: Vec<Vec<Problem>>,
    pub memory: RealityMemory,
    pub sync_attempts: Vec<DateTime<Utc>>,
    /// The layout has no API inbound: verify-reality may be used too.
    pub also_verify: bool,
}

/// Why a confirmed problem is not repaired now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocker {
    AutoFixOff,
    DryRun,
    BudgetSpent {
        syncs: u32,
        max: u32,
        frees_at: DateTime<Utc>,
    },
    /// A fix-reality-keys was already made for exactly these problems and did not cure them.
    FixDidNotHelp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Plan {
    Valid,
    WaitForConfirmation { n: u32, of: u32 },
    Fix { n: u32 },
    Blocked { n: u32, reason: Blocker },
}

/// Consecutive invalid reads up to this run's last read.
pub fn streak(observed: &Observed) -> u32 {
    let invalid = |read: &Vec<Problem>| !read.is_empty();
    restart::streak(&observed.reads, observed.memory.confirmations, invalid)
}

/// Decide (pure).
pub fn plan(
    observed: &Observed,
    settings: &RealityJobConfig,
    max_syncs_per_hour: u32,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Plan {
    let Some(problems) = observed.reads.last().filter(|p| !p.is_empty()) else {
        return Plan::Valid;
    };
    let n = streak(observed);
    let of = settings.confirmations.max(1);
    if n < of {
        return Plan::WaitForConfirmation { n, of };
    }
    let fixed_before = observed.memory.fixed_signature.as_deref();
    let own = if !settings.auto_fix {
        Some(Blocker::AutoFixOff)
    } else if fixed_before == Some(signature(problems).as_str()) {
        Some(Blocker::FixDidNotHelp)
    } else {
        None
    };
    let budget = (&observed.sync_attempts[..], max_syncs_per_hour, now);
    let spent = |syncs, max, frees_at| Blocker::BudgetSpent {
        syncs,
        max,
        frees_at,
    };
    match restart::hold(own, budget, spent, dry_run.then_some(Blocker::DryRun)) {
        Some(reason) => Plan::Blocked { n, reason },
        None => Plan::Fix { n },
    }
}

/// One read (read-only): the inbounds, the keys, validate-sync's mismatches.
pub async fn read(ctx: &JobContext<'_>) -> Result<Vec<Problem>, ApiError> {
    let inbounds = ctx.api.xray_inbounds().await?;
    let keys = ctx.api.list_keys().await?;
    let mismatches = match ctx.api.validate_sync().await {
        Ok(validation) => validation.short_id_mismatches,
        Err(error) if error.is_not_found() => Vec::new(),
        Err(error) => return Err(error),
    };
    Ok(problems(&inbounds, &keys, &mismatches))
}

/// On a layout without the API inbound, where it works: verify-reality too, once the
/// inbounds read valid (a POST that may fix maxTimeDiff; not in a dry run). The finding
/// and audit entries are the 1.x job's.
async fn verify_too(ctx: &JobContext<'_>, job: JobKind, result: &mut JobResult) {
    if ctx.dry_run {
        return;
    }
    let (verdict, finding) = super::reality::verify(ctx, job).await;
    if let super::reality::Verdict::Verified = verdict {
        result.plan.push(format!(
            "{}: verify-reality confirmed the first inbound",
            ctx.server.name
        ));
    }
    result.findings.extend(finding);
}

/// Observe (read-only, but for verify-reality on layouts where it works). A sync budget
/// the store cannot read is an error: no fix (it restarts Xray) on an unknown budget.
pub async fn observe(ctx: &JobContext<'_>, also_verify: bool) -> Result<Observed, ObserveError> {
    let server = ctx.server.name.as_str();
    let mut reads = vec![read(ctx).await?];
    if let RunMode::Check { reread_interval } = ctx.mode {
        let wanted = ctx.config.jobs.reality.confirmations.max(1) as usize;
        while reads.len() < wanted && reads.last().is_some_and(|r| !r.is_empty()) {
            tokio::time::sleep(reread_interval).await;
            reads.push(read(ctx).await?);
        }
    }
    let memory = ctx
        .store
        .reality()
        .memory(server)
        .await
        .unwrap_or_else(|error| {
            tracing::error!(server, %error, "cannot read the Reality streak; starting a new one");
            RealityMemory::default()
        });
    let sync_attempts = restart::budget(ctx).await?;
    Ok(Observed {
        reads,
        memory,
        sync_attempts,
        also_verify,
    })
}

/// The reality job on a 2.x server.
pub async fn run(ctx: &JobContext<'_>, also_verify: bool) -> JobResult {
    let observed = match observe(ctx, also_verify).await {
        Ok(observed) => observed,
        Err(ObserveError::Api(error)) => return observe_failed(ctx, &error),
        // The store is local; without the budget no fix may be made.
        Err(ObserveError::Store(error)) => {
            return JobResult {
                transport_failure: Some(format!("reality not run: {error}")),
                ..JobResult::default()
            };
        }
    };
    let now = ctx.clock.now();
    let max = ctx.config.jobs.config_sync.max_syncs_per_hour;
    let plan = plan(&observed, &ctx.config.jobs.reality, max, ctx.dry_run, now);
    tracing::debug!(server = %ctx.server.name, ?plan, "reality plan (2.x)");
    execute(ctx, &observed, &plan, now).await
}

fn observe_failed(ctx: &JobContext<'_>, error: &ApiError) -> JobResult {
    if error.is_transient() {
        return JobResult {
            transport_failure: Some(error.to_string()),
            ..JobResult::default()
        };
    }
    let server = ctx.server.name.as_str();
    JobResult::default().with_finding(Finding {
        server: server.to_string(),
        job: JobKind::Reality,
        kind: FindingKind::ApiError,
        subject: "reality".into(),
        severity: Severity::Warning,
        summary: format!("{server}: the Reality settings could not be read: {}", error.kind),
        details: format!(
            "Seen: {error}\nDone: nothing: Reality cannot be judged without the inbound listing.\nNext: check the API key and version (keywarden probe)."
        ),
    })
}

fn memory_for(
    observed: &Observed,
    n: u32,
    problems: &[Problem],
    now: DateTime<Utc>,
) -> RealityMemory {
    let continued = observed.memory.confirmations > 0 && n as usize > observed.reads.len();
    RealityMemory {
        confirmations: n,
        first_seen: observed
            .memory
            .first_seen
            .filter(|_| continued)
            .or(Some(now)),
        signature: signature(problems),
        fixed_signature: observed.memory.fixed_signature.clone(),
        fixed_at: observed.memory.fixed_at,
    }
}

async fn execute(
    ctx: &JobContext<'_>,
    observed: &Observed,
    plan: &Plan,
    now: DateTime<Utc>,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let problems = observed.reads.last().cloned().unwrap_or_default();
    let mut result = JobResult::default();
    let memory = match plan {
        Plan::Valid => {
            result.plan.push(format!(
                "{server}: Reality settings of every inbound are valid"
            ));
            if observed.also_verify {
                verify_too(ctx, JobKind::Reality, &mut result).await;
            }
            RealityMemory::default()
        }
        Plan::WaitForConfirmation { n, of } => {
            result.plan.push(format!(
                "{server}: Reality settings invalid ({n} of {of} reads before a fix): {}",
                signature(&problems)
            ));
            result.findings.push(invalid(
                server,
                Severity::Warning,
                &problems,
                Done::Waiting(*n, *of),
            ));
            memory_for(observed, *n, &problems, now)
        }
        Plan::Blocked { n, reason } => {
            if *reason == Blocker::DryRun {
                restart::dry_run(
                    ctx,
                    AttemptKind::RealityFix,
                    "reality",
                    &signature(&problems),
                )
                .await;
            }
            result.plan.push(format!(
                "{server}: Reality settings invalid ({n} reads); not fixed: {}",
                blocked_words(reason)
            ));
            result.findings.push(invalid(
                server,
                Severity::Critical,
                &problems,
                Done::Blocked(reason.clone()),
            ));
            memory_for(observed, *n, &problems, now)
        }
        Plan::Fix { n } => {
            let memory = memory_for(observed, *n, &problems, now);
            return fix(ctx, memory, problems, result).await;
        }
    };
    save(ctx, &memory).await;
    result
}

async fn save(ctx: &JobContext<'_>, memory: &RealityMemory) {
    let now = ctx.clock.now();
    if let Err(error) = ctx
        .store
        .reality()
        .save(&ctx.server.name, memory, now)
        .await
    {
        tracing::error!(server = %ctx.server.name, %error, "cannot save the Reality streak");
    }
}

/// fix-reality-keys, then read the listing again.
async fn fix(
    ctx: &JobContext<'_>,
    mut memory: RealityMemory,
    before: Vec<Problem>,
    mut result: JobResult,
) -> JobResult {
    let server = ctx.server.name.as_str();
    let attempt =
        match restart::begin(ctx, AttemptKind::RealityFix, "reality", &signature(&before)).await {
            Ok(attempt) => attempt,
            Err(error) => {
                result.plan.push(format!(
                    "{server}: Reality settings invalid; not fixed: {error}"
                ));
                result.findings.push(invalid(
                    server,
                    Severity::Critical,
                    &before,
                    Done::NoIntent(error),
                ));
                save(ctx, &memory).await;
                return result;
            }
        };
    tracing::info!(
        server,
        problems = before.len(),
        "repairing Reality with fix-reality-keys"
    );
    let answer = ctx.api.fix_reality_keys().await.map(|_| ());
    if let Err(error) = &answer
        && matches!(error.kind, ApiErrorKind::RateLimited { .. })
    {
        restart::deferred(ctx, &attempt, &error.to_string()).await;
        result.plan.push(format!(
            "{server}: fix-reality-keys deferred: rate limited, retrying next run"
        ));
        result.findings.push(invalid(
            server,
            Severity::Critical,
            &before,
            Done::Deferred(error.to_string()),
        ));
        save(ctx, &memory).await;
        return result;
    }
    let answered = answer.err().map(|e| e.to_string());
    let after = read(ctx).await;
    let now = ctx.clock.now();
    let outcome = match &after {
        Ok(left) if left.is_empty() => {
            result.plan.push(format!(
                "{server}: fix-reality-keys repaired the Reality settings"
            ));
            result
                .findings
                .push(repaired(server, &before, answered.as_deref()));
            memory = RealityMemory::default();
            AuditResult::Ok
        }
        Ok(left) => {
            result.plan.push(format!(
                "{server}: fix-reality-keys ran; still invalid: {}",
                signature(left)
            ));
            result.findings.push(invalid(
                server,
                Severity::Critical,
                left,
                Done::Persists(answered.clone()),
            ));
            memory.signature = signature(left);
            memory.fixed_signature = Some(signature(left));
            memory.fixed_at = Some(now);
            AuditResult::Persists
        }
        Err(error) => {
            result.plan.push(format!(
                "{server}: fix-reality-keys ran; the listing could not be read back ({error})"
            ));
            result.findings.push(invalid(
                server,
                Severity::Warning,
                &before,
                Done::Unconfirmed(error.to_string()),
            ));
            AuditResult::Unconfirmed
        }
    };
    restart::finished(
        ctx,
        &attempt,
        outcome,
        &answered.unwrap_or_else(|| "fix-reality-keys answered fixed".into()),
    )
    .await;
    if let Some(note) = attempt.pre_read.loss_note() {
        for finding in &mut result.findings {
            finding.details.push('\n');
            finding.details.push_str(&note);
        }
    }
    save(ctx, &memory).await;
    result
}

/// After a sync on 2.x: one read-only look at the inbounds (no confirmation, no fix: the
/// reality job repairs). `None` when valid.
pub async fn check_after_sync(
    ctx: &JobContext<'_>,
    also_verify: bool,
) -> (String, Option<Finding>) {
    let server = ctx.server.name.as_str();
    match read(ctx).await {
        Ok(problems) if problems.is_empty() && also_verify => {
            let mut result = JobResult::default();
            verify_too(ctx, JobKind::ConfigSync, &mut result).await;
            (
                format!("Reality settings of {server} valid after the sync"),
                result.findings.pop(),
            )
        }
        Ok(problems) if problems.is_empty() => (
            format!("Reality settings of {server} valid after the sync"),
            None,
        ),
        Ok(problems) => {
            let mut finding = invalid(server, Severity::Critical, &problems, Done::AfterSync);
            finding.job = JobKind::ConfigSync;
            finding.subject = "reality (after sync)".into();
            (
                format!("Reality settings of {server} invalid after the sync"),
                Some(finding),
            )
        }
        Err(error) => (
            format!("Reality settings of {server} not read after the sync: {error}"),
            None,
        ),
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn problem_lines(problems: &[Problem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .take(NAMED)
        .map(|p| format!("  {}", p.describe()))
        .collect();
    if problems.len() > NAMED {
        lines.push(format!("  ... and {} more", problems.len() - NAMED));
    }
    lines.join("\n")
}

enum Done {
    Waiting(u32, u32),
    Blocked(Blocker),
    Deferred(String),
    NoIntent(String),
    Persists(Option<String>),
    Unconfirmed(String),
    AfterSync,
}

fn blocked_words(reason: &Blocker) -> String {
    match reason {
        Blocker::AutoFixOff => "[jobs.reality].auto_fix is false, so keywarden only reports".into(),
        Blocker::DryRun => "dry run; without it keywarden would have run fix-reality-keys now".into(),
        Blocker::BudgetSpent { syncs, max, frees_at } => format!(
            "{syncs} syncs, restarts and fixes in the last hour spent the hourly budget of {max} (max_syncs_per_hour, shared with config_sync); possible again from {}",
            time(*frees_at)
        ),
        Blocker::FixDidNotHelp => "fix-reality-keys already ran for exactly these problems and did not cure them; it is not repeated until they change".into(),
    }
}

fn invalid(server: &str, severity: Severity, problems: &[Problem], done: Done) -> Finding {
    let done = match done {
        Done::Waiting(n, of) => format!(
            "nothing yet: fix-reality-keys restarts Xray, so keywarden repairs only after {of} invalid reads in a row (this was {n})."
        ),
        Done::Blocked(reason) => format!("nothing: {}.", blocked_words(&reason)),
        Done::Deferred(error) => format!(
            "asked the server to run fix-reality-keys; it refused with 429 ({error}): nothing ran and no budget was spent. keywarden tries again next run."
        ),
        Done::NoIntent(error) => format!("nothing: {error}, so keywarden did not act."),
        Done::Persists(answered) => format!(
            "ran POST /api/system/fix-reality-keys ({}; Xray restarted); the inbound listing still shows the problems above. keywarden does not repeat the fix for them.",
            answered
                .map(|a| format!("it answered: {a}"))
                .unwrap_or_else(|| "it answered fixed".into())
        ),
        Done::Unconfirmed(error) => format!(
            "ran POST /api/system/fix-reality-keys; reading the inbounds afterwards failed ({error}). The next run reads them again."
        ),
        Done::AfterSync => {
            "nothing more: the reality job repairs Reality settings after its confirmations.".into()
        }
    };
    let first = problems.first().map(Problem::describe).unwrap_or_default();
    Finding {
        server: server.to_string(),
        job: JobKind::Reality,
        kind: FindingKind::RealityInvalid,
        subject: "reality".into(),
        severity,
        summary: crate::jobs::one_line(&format!(
            "{server}: Reality settings are invalid ({} problem(s)): {first}",
            problems.len()
        )),
        details: format!(
            "Seen: the inbound listing (GET /api/system/xray/inbounds) and validate-sync show:\n{}\nDone: {done}\nNext: check dest, serverNames and shortIds of these inbounds in config.json; POST /api/system/fix-reality-keys rewrites the private key and each key's short id from the key store.",
            problem_lines(problems)
        ),
    }
}

fn repaired(server: &str, before: &[Problem], answered: Option<&str>) -> Finding {
    let note = answered
        .map(|a| format!(" It answered an error ({a}), but the listing is valid now."))
        .unwrap_or_default();
    Finding {
        server: server.to_string(),
        job: JobKind::Reality,
        kind: FindingKind::RealityRepaired,
        subject: "reality".into(),
        severity: Severity::Warning,
        summary: format!("{server}: invalid Reality settings repaired by fix-reality-keys"),
        details: format!(
            "Seen: the inbound listing showed:\n{}\nDone: ran POST /api/system/fix-reality-keys (Xray restarted; users reconnected); the inbound listing now shows valid settings.{note}\nNext: nothing, unless it repeats: then find what edits config.json behind the API.",
            problem_lines(before)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Schedule;
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 5, 0, 0).unwrap()
    }

    fn inbound(tag: &str, uuid: &str, short_id: &str, dest: &str) -> XrayInbound {
        XrayInbound {
            tag: tag.into(),
            port: Some(10001),
            uuids: vec![uuid.into()],
            short_ids: vec![short_id.into()],
            dest: dest.into(),
            server_names: vec!["www.microsoft.com".into()],
        }
    }

    fn key(uuid: &str, short_id: &str) -> VpnKey {
        VpnKey {
            id: format!("id-{uuid}"),
            uuid: uuid.into(),
            name: format!("key {uuid}"),
            created_at: None,
            is_active: true,
            port: Some(10001),
            short_id: Some(short_id.into()),
        }
    }

    #[test]
    fn problems_per_inbound() {
        let keys = vec![key("u1", "0039847e"), key("u2", "96b6510f")];
        let good = vec![
            inbound("a", "u1", "0039847e", "www.microsoft.com:443"),
            inbound("b", "u2", "96b6510f", "www.microsoft.com:443"),
        ];
        assert_eq!(problems(&good, &keys, &[]), vec![]);
        let kinds = |list: Vec<Problem>| -> Vec<String> {
            list.iter()
                .map(|p| {
                    serde_json::to_value(p).unwrap()["kind"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let mut bad = good.clone();
        bad[0].dest = String::new();
        bad[1].short_ids = vec!["ffffffff".into()];
        assert_eq!(
            kinds(problems(&bad, &keys, &[])),
            ["empty_dest", "short_id_mismatch"]
        );
        let mut odd = good.clone();
        odd[0].dest = "no-port".into();
        odd[0].server_names.clear();
        odd[1].short_ids = vec!["xyz".into(), "96b6510f".into()];
        assert_eq!(
            kinds(problems(&odd, &keys, &[])),
            ["malformed_dest", "no_server_names", "malformed_short_id"]
        );
        let mut none = good.clone();
        none[0].short_ids.clear();
        assert_eq!(kinds(problems(&none, &keys, &[])), ["no_short_ids"]);
        assert_eq!(
            kinds(problems(&good, &keys, &["u9".to_string()])),
            ["reported_mismatch"]
        );
        assert_eq!(
            problems(&bad, &keys, &["u2".to_string()]).len(),
            2,
            "a placed mismatch is not repeated"
        );
        for dest in ["1.2.3.4:443", "[::1]:8443", "8443", "www.microsoft.com:443"] {
            assert!(valid_dest(dest), "{dest}");
        }
        for dest in [
            "www.microsoft.com",
            ":443",
            "host:0",
            "host:99999",
            "a b:443",
        ] {
            assert!(!valid_dest(dest), "{dest}");
        }
        assert!(valid_short_id("") && valid_short_id("0123456789abcdef"));
        assert!(!valid_short_id("abc") && !valid_short_id("0123456789abcdef00"));
    }

    fn settings(confirmations: u32, auto_fix: bool) -> RealityJobConfig {
        RealityJobConfig {
            schedule: Schedule::parse("0 7 * * * *").expect("schedule"),
            confirmations,
            auto_fix,
        }
    }

    fn observed(
        reads: Vec<Vec<Problem>>,
        remembered: u32,
        fixed: Option<&str>,
        attempts: &[i64],
    ) -> Observed {
        Observed {
            reads,
            memory: RealityMemory {
                confirmations: remembered,
                first_seen: None,
                signature: String::new(),
                fixed_signature: fixed.map(str::to_string),
                fixed_at: None,
            },
            sync_attempts: attempts
                .iter()
                .map(|m| now() - TimeDelta::minutes(*m))
                .collect(),
            also_verify: false,
        }
    }

    #[test]
    fn plans() {
        let broken = || {
            vec![Problem::EmptyDest {
                inbound: "inbound a (port 10001)".into(),
            }]
        };
        let sig = signature(&broken());
        #[rustfmt::skip]
        let table: Vec<(&str, Observed, RealityJobConfig, bool, Plan)> = vec![
            ("valid", observed(vec![vec![]], 0, None, &[]), settings(2, true), false, Plan::Valid),
            ("valid again", observed(vec![vec![]], 3, Some(&sig), &[]), settings(2, true), false, Plan::Valid),
            ("first invalid read waits", observed(vec![broken()], 0, None, &[]), settings(2, true), false, Plan::WaitForConfirmation { n: 1, of: 2 }),
            ("confirmed: fix", observed(vec![broken()], 1, None, &[]), settings(2, true), false, Plan::Fix { n: 2 }),
            ("check: re-reads confirm", observed(vec![broken(), broken()], 0, None, &[]), settings(2, true), false, Plan::Fix { n: 2 }),
            ("auto_fix off", observed(vec![broken()], 1, None, &[]), settings(2, false), false, Plan::Blocked { n: 2, reason: Blocker::AutoFixOff }),
            ("a fix that did not help is not repeated", observed(vec![broken()], 1, Some(&sig), &[]), settings(2, true), false, Plan::Blocked { n: 2, reason: Blocker::FixDidNotHelp }),
            ("another problem may be fixed", observed(vec![broken()], 1, Some("other"), &[]), settings(2, true), false, Plan::Fix { n: 2 }),
            ("budget shared and spent", observed(vec![broken()], 1, None, &[10, 20, 30, 40]), settings(2, true), false, Plan::Blocked { n: 2, reason: Blocker::BudgetSpent { syncs: 4, max: 4, frees_at: now() + TimeDelta::minutes(20) } }),
            ("dry run", observed(vec![broken()], 1, None, &[]), settings(2, true), true, Plan::Blocked { n: 2, reason: Blocker::DryRun }),
        ];
        for (name, observed, settings, dry_run, expected) in table {
            assert_eq!(
                plan(&observed, &settings, 4, dry_run, now()),
                expected,
                "{name}"
            );
        }
    }
}
