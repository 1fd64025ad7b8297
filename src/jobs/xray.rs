//! The health job's check of Xray itself on 2.x servers: `GET /health` reports
//! `services.xray` ("running" or "stopped") while its top-level `status` stays "healthy"
//! either way. A stopped Xray cuts every user off. After `xray_confirmations` stopped
//! reads in a row keywarden restarts it through `POST /api/system/sync-config` (both
//! generations restart Xray there), within the hourly sync budget shared with
//! config_sync, with the intent recorded first; then reads `/health` again.
//! 1.x has no `/health`: there the dataplane job's outside view is the witness.
//!
//! `observe` (read-only) -> `plan` (pure) -> `execute` (the streak, the restart, findings).
//!
//! Longer than 400 lines on purpose (about 110 of them tests): the check's three steps
//! and the text of its findings belong together.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::restart::{self, Attempt};
use super::{About, JobContext, RunMode};
use crate::config::HealthJobConfig;
use crate::model::dataplane::{XrayMemory, XrayState};
use crate::model::report::{AvailabilitySample, AvailabilitySeries};
use crate::model::{AttemptKind, AuditResult, Finding, FindingKind, JobKind, Severity};
use crate::server_api::{ApiError, ApiErrorKind, ServiceState};
use crate::store::StoreError;

/// The subject of every Xray finding.
pub const SUBJECT: &str = "xray";

/// One read of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XrayRead {
    Running,
    Stopped,
    /// The answer did not say (no `services.xray`, an unknown word, an error).
    Unknown(String),
}

impl XrayRead {
    fn from_answer(answer: Result<Option<ServiceState>, ApiError>) -> XrayRead {
        match answer {
            Ok(Some(ServiceState::Running)) => XrayRead::Running,
            Ok(Some(ServiceState::Stopped)) => XrayRead::Stopped,
            Ok(Some(ServiceState::Other(word))) => {
                XrayRead::Unknown(format!("services.xray is {word:?}"))
            }
            Ok(None) => XrayRead::Unknown("the answer has no services.xray".into()),
            Err(error) => XrayRead::Unknown(error.to_string()),
        }
    }
}

/// What the check saw and what the store remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// This run's reads, oldest first (`check` reads again while Xray is stopped).
    pub reads: Vec<XrayRead>,
    pub memory: XrayMemory,
    /// Attempts of the shared sync budget in the last hour.
    pub sync_attempts: Vec<DateTime<Utc>>,
}

/// Why a confirmed stop is not repaired now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocker {
    /// `[jobs.health].restart_xray = false`.
    RestartOff,
    /// Dry run: the restart would happen now.
    DryRun,
    /// The hourly budget (shared with config_sync) is spent.
    BudgetSpent {
        syncs: u32,
        max: u32,
        frees_at: DateTime<Utc>,
    },
}

/// What to do about Xray in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Plan {
    /// Xray runs; `was_stopped` reads in a row ended.
    Running { was_stopped: u32 },
    /// The state could not be read: nothing changes.
    Unknown { reason: String },
    /// Stopped `n` times in a row, `of` needed.
    WaitForConfirmation { n: u32, of: u32 },
    /// Confirmed: restart it now.
    Restart { n: u32 },
    /// Confirmed, not restarted.
    Blocked { n: u32, reason: Blocker },
}

/// Consecutive stopped reads up to this run's last read.
pub fn streak(observed: &Observed) -> u32 {
    let stopped = |read: &XrayRead| *read == XrayRead::Stopped;
    restart::streak(&observed.reads, observed.memory.stopped_reads, stopped)
}

/// Decide (pure).
pub fn plan(
    observed: &Observed,
    settings: &HealthJobConfig,
    max_syncs_per_hour: u32,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Plan {
    match observed.reads.last() {
        None => Plan::Unknown {
            reason: "not read".into(),
        },
        Some(XrayRead::Running) => Plan::Running {
            was_stopped: observed.memory.stopped_reads,
        },
        Some(XrayRead::Unknown(reason)) => Plan::Unknown {
            reason: reason.clone(),
        },
        Some(XrayRead::Stopped) => {
            let n = streak(observed);
            let of = settings.xray_confirmations.max(1);
            if n < of {
                return Plan::WaitForConfirmation { n, of };
            }
            let off = (!settings.restart_xray).then_some(Blocker::RestartOff);
            let budget = (&observed.sync_attempts[..], max_syncs_per_hour, now);
            let spent = |syncs, max, frees_at| Blocker::BudgetSpent {
                syncs,
                max,
                frees_at,
            };
            match restart::hold(off, budget, spent, dry_run.then_some(Blocker::DryRun)) {
                Some(reason) => Plan::Blocked { n, reason },
                None => Plan::Restart { n },
            }
        }
    }
}

/// Read `/health` once.
async fn read(ctx: &JobContext<'_>) -> XrayRead {
    XrayRead::from_answer(ctx.api.health().await.map(|h| h.xray))
}

/// Observe (read-only). `Ok(None)` when the server has no `/health` (1.x, or a 404);
/// `Err` when the sync budget cannot be read (nothing may be restarted on it).
pub async fn observe(ctx: &JobContext<'_>) -> Result<Option<Observed>, StoreError> {
    let first = ctx.api.health().await;
    if let Err(error) = &first
        && error.is_not_found()
    {
        return Ok(None);
    }
    let mut reads = vec![XrayRead::from_answer(first.map(|h| h.xray))];
    if let RunMode::Check { reread_interval } = ctx.mode {
        let wanted = ctx.config.jobs.health.xray_confirmations.max(1) as usize;
        while reads.len() < wanted && reads.last() == Some(&XrayRead::Stopped) {
            // `check` gathers its confirmations within one run by contract (RunMode::Check).
            tokio::time::sleep(reread_interval).await;
            reads.push(read(ctx).await);
        }
    }
    let server = ctx.server.name.as_str();
    let memory = ctx
        .store
        .servers()
        .xray(server)
        .await
        .unwrap_or_else(|error| {
            tracing::error!(server, %error, "cannot read Xray's memory; starting a new streak");
            XrayMemory::default()
        });
    let sync_attempts = restart::budget(ctx).await?;
    Ok(Some(Observed {
        reads,
        memory,
        sync_attempts,
    }))
}

/// What the check came to.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub plan: Vec<String>,
    /// Xray's state at the end of the run, when known.
    pub state: Option<XrayState>,
    /// Why the check could not be made (the store failed): the health run is an error.
    pub error: Option<String>,
}

/// The streak after a stopped read.
fn stopped_memory(memory: &XrayMemory, n: u32, now: DateTime<Utc>) -> XrayMemory {
    XrayMemory {
        state: Some(XrayState::Stopped),
        stopped_reads: n,
        first_stopped_at: memory
            .first_stopped_at
            .filter(|_| memory.stopped_reads > 0)
            .or(Some(now)),
        checked_at: Some(now),
    }
}

fn running_memory(now: DateTime<Utc>) -> XrayMemory {
    XrayMemory {
        state: Some(XrayState::Running),
        stopped_reads: 0,
        first_stopped_at: None,
        checked_at: Some(now),
    }
}

/// Carry out the plan.
pub async fn execute(
    ctx: &JobContext<'_>,
    observed: &Observed,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Outcome {
    let server = ctx.server.name.as_str();
    let mut outcome = Outcome::default();
    let memory = match plan {
        Plan::Unknown { reason } => {
            outcome
                .plan
                .push(format!("{server}: Xray's state unknown ({reason})"));
            return outcome;
        }
        Plan::Running { was_stopped } => {
            outcome.state = Some(XrayState::Running);
            outcome.plan.push(match was_stopped {
                0 => format!("{server}: Xray is running"),
                n => format!("{server}: Xray is running again (it was stopped for {n} reads)"),
            });
            running_memory(now)
        }
        Plan::WaitForConfirmation { n, of } => {
            outcome.state = Some(XrayState::Stopped);
            outcome.plan.push(format!(
                "{server}: GET /health says Xray is stopped ({n} of {of} reads before xray_down)"
            ));
            stopped_memory(&observed.memory, *n, now)
        }
        Plan::Blocked { n, reason } => {
            outcome.state = Some(XrayState::Stopped);
            let memory = stopped_memory(&observed.memory, *n, now);
            if *reason == Blocker::DryRun {
                restart::dry_run(
                    ctx,
                    AttemptKind::XrayRestart,
                    SUBJECT,
                    &format!("Xray stopped for {n} reads"),
                )
                .await;
            }
            outcome.plan.push(blocked_line(server, *n, reason));
            outcome
                .findings
                .push(down(server, &memory, Done::Blocked(reason.clone())));
            memory
        }
        Plan::Restart { n } => {
            let memory = stopped_memory(&observed.memory, *n, now);
            return restart(ctx, memory, outcome, now).await;
        }
    };
    save(ctx, &memory, now).await;
    outcome
}

/// One `xray` availability sample for the usage report: Xray's state at the end of the run.
async fn sample(ctx: &JobContext<'_>, state: Option<XrayState>) {
    let Some(state) = state else { return };
    let sample = AvailabilitySample {
        series: AvailabilitySeries::Xray,
        up: state == XrayState::Running,
    };
    let now = ctx.clock.now();
    let report = ctx.store.report();
    if let Err(error) = report
        .record_availability(&ctx.server.name, now, &[sample])
        .await
    {
        tracing::error!(server = %ctx.server.name, %error, "cannot record the availability sample");
    }
}

async fn save(ctx: &JobContext<'_>, memory: &XrayMemory, now: DateTime<Utc>) {
    let servers = ctx.store.servers();
    if let Err(error) = servers.save_xray(&ctx.server.name, memory, now).await {
        // The next run starts a new streak: it restarts later, never sooner.
        tracing::error!(server = %ctx.server.name, %error, "cannot save Xray's memory");
    }
}

/// Restart a stopped Xray through sync-config, then read `/health` again.
async fn restart(
    ctx: &JobContext<'_>,
    memory: XrayMemory,
    mut outcome: Outcome,
    now: DateTime<Utc>,
) -> Outcome {
    let server = ctx.server.name.as_str();
    let n = memory.stopped_reads;
    outcome.state = Some(XrayState::Stopped);
    let detail = format!("Xray stopped for {n} reads");
    let attempt = match restart::begin(ctx, AttemptKind::XrayRestart, SUBJECT, &detail).await {
        Ok(attempt) => attempt,
        Err(error) => {
            outcome
                .plan
                .push(format!("{server}: Xray is stopped; not restarted: {error}"));
            outcome
                .findings
                .push(down(server, &memory, Done::NoIntent(error)));
            save(ctx, &memory, now).await;
            return outcome;
        }
    };
    tracing::info!(
        server,
        stopped_reads = n,
        "restarting Xray through sync-config"
    );
    let answer = ctx.api.sync_config().await.map(|_| ());
    if let Err(error) = &answer
        && matches!(error.kind, ApiErrorKind::RateLimited { .. })
    {
        restart::deferred(ctx, &attempt, &error.to_string()).await;
        outcome.plan.push(format!(
            "{server}: restart of Xray deferred: rate limited, retrying next run"
        ));
        outcome
            .findings
            .push(down(server, &memory, Done::Deferred(error.to_string())));
        save(ctx, &memory, now).await;
        return outcome;
    }
    // A 500 may still have restarted Xray (2.x checks its sync against a stale cache):
    // /health is the witness either way.
    let after = read(ctx).await;
    let answered = answer.err().map(|error| error.to_string());
    let (result, memory) = match &after {
        XrayRead::Running => {
            outcome.state = Some(XrayState::Running);
            outcome.plan.push(format!("{server}: xray_down confirmed ({n} reads); restarted Xray through sync-config: running again"));
            outcome
                .findings
                .push(restarted(server, &memory, answered.as_deref()));
            (AuditResult::Ok, running_memory(ctx.clock.now()))
        }
        XrayRead::Stopped => {
            outcome.plan.push(format!("{server}: xray_down confirmed ({n} reads); restarted Xray through sync-config: still stopped"));
            outcome
                .findings
                .push(persists(server, &memory, answered.as_deref()));
            (AuditResult::Persists, memory)
        }
        XrayRead::Unknown(reason) => {
            outcome.plan.push(format!("{server}: restarted Xray through sync-config; its state could not be read back ({reason})"));
            outcome.findings.push(down(
                server,
                &memory,
                Done::Unconfirmed(reason.clone(), answered.clone()),
            ));
            (AuditResult::Unconfirmed, memory)
        }
    };
    let audit_detail = answered.unwrap_or_else(|| "sync-config answered 200".into());
    restart::finished(ctx, &attempt, result, &audit_detail).await;
    add_loss_note(&mut outcome.findings, &attempt);
    save(ctx, &memory, ctx.clock.now()).await;
    outcome
}

fn add_loss_note(findings: &mut [Finding], attempt: &Attempt) {
    if let Some(note) = attempt.pre_read.loss_note() {
        for finding in findings {
            finding.details.push('\n');
            finding.details.push_str(&note);
        }
    }
}

/// Run the check and act on it.
pub async fn run(ctx: &JobContext<'_>) -> Option<Outcome> {
    let observed = match observe(ctx).await {
        Ok(observed) => observed?,
        Err(error) => {
            let server = ctx.server.name.as_str();
            return Some(Outcome {
                plan: vec![format!(
                    "{server}: Xray's state not acted on: the sync budget cannot be read"
                )],
                error: Some(format!("Xray check not run: {error}")),
                ..Outcome::default()
            });
        }
    };
    let now = ctx.clock.now();
    let settings = &ctx.config.jobs.health;
    let max = ctx.config.jobs.config_sync.max_syncs_per_hour;
    let plan = plan(&observed, settings, max, ctx.dry_run, now);
    tracing::debug!(server = %ctx.server.name, ?plan, "xray plan");
    let outcome = execute(ctx, &observed, &plan, now).await;
    sample(ctx, outcome.state).await;
    Some(outcome)
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

const ABOUT: About = About {
    job: JobKind::Health,
    subject: SUBJECT,
};

fn seen(memory: &XrayMemory) -> String {
    let since = memory
        .first_stopped_at
        .map(|at| format!(" since {}", time(at)))
        .unwrap_or_default();
    format!(
        "GET /health reports services.xray = \"stopped\"{since} ({} reads in a row); its status still says \"healthy\". Every user of this server is cut off.",
        memory.stopped_reads
    )
}

/// What keywarden did about a stop it did not repair.
enum Done {
    Blocked(Blocker),
    Deferred(String),
    NoIntent(String),
    Unconfirmed(String, Option<String>),
}

const NEXT_DOWN: &str = "restart Xray on the server (systemctl restart xray) and find out why it stopped: journalctl -u xray.";

fn down(server: &str, memory: &XrayMemory, done: Done) -> Finding {
    let done = match done {
        Done::Blocked(Blocker::RestartOff) => "nothing: [jobs.health].restart_xray is false, so keywarden only reports.".to_string(),
        Done::Blocked(Blocker::DryRun) => "nothing: dry run. Without it, keywarden would have restarted Xray now (POST /api/system/sync-config).".to_string(),
        Done::Blocked(Blocker::BudgetSpent { syncs, max, frees_at }) => format!(
            "nothing this run: {syncs} Xray restarts and syncs in the last hour spent the hourly budget of {max} (max_syncs_per_hour, shared with config_sync); keywarden restarts it from {} if it is still stopped.",
            time(frees_at)
        ),
        Done::Deferred(error) => format!(
            "asked the server to restart Xray (POST /api/system/sync-config); it refused with 429 ({error}). The restart did not run and does not count against the budget; keywarden tries again next run."
        ),
        Done::NoIntent(error) => format!("nothing: {error}, so keywarden did not act."),
        Done::Unconfirmed(reason, answered) => format!(
            "asked the server to restart Xray (POST /api/system/sync-config{}); reading GET /health afterwards failed ({reason}). The next run reads it again.",
            answered.map(|a| format!(", which answered: {a}")).unwrap_or_default()
        ),
    };
    ABOUT.finding(
        server,
        FindingKind::XrayDown,
        Severity::Critical,
        format!(
            "{server}: Xray is stopped: nobody can connect ({} reads in a row)",
            memory.stopped_reads
        ),
        [seen(memory), done, NEXT_DOWN.to_string()],
    )
}

fn restarted(server: &str, memory: &XrayMemory, answered: Option<&str>) -> Finding {
    let note = answered
        .map(|a| format!(" The sync answered an error ({a}), but Xray came back."))
        .unwrap_or_default();
    ABOUT.finding(
        server,
        FindingKind::XrayRestarted,
        Severity::Warning,
        format!("{server}: Xray was stopped; keywarden restarted it and it runs again"),
        [
            seen(memory),
            format!("restarted Xray through POST /api/system/sync-config (users reconnected); GET /health now says running.{note}"),
            "find out why it stopped: journalctl -u xray on the server. If it keeps stopping, look for crashes, the OOM killer or another tool stopping it.".into(),
        ],
    )
}

fn persists(server: &str, memory: &XrayMemory, answered: Option<&str>) -> Finding {
    let answer = answered
        .map(|a| format!("it answered: {a}"))
        .unwrap_or_else(|| "it answered 200".into());
    ABOUT.finding(
        server,
        FindingKind::XrayDownPersists,
        Severity::Critical,
        format!("{server}: Xray is still stopped after keywarden restarted it: nobody can connect"),
        [
            seen(memory),
            format!("asked the server to restart Xray (POST /api/system/sync-config; {answer}); GET /health still says stopped. keywarden tries again next run, within the hourly budget."),
            "log in and look at Xray: systemctl status xray and journalctl -u xray (a config.json Xray cannot load keeps it from starting).".into(),
        ],
    )
}

fn blocked_line(server: &str, n: u32, reason: &Blocker) -> String {
    match reason {
        Blocker::RestartOff => {
            format!("{server}: xray_down ({n} reads); not restarting (restart_xray is off)")
        }
        Blocker::DryRun => {
            format!("{server}: xray_down ({n} reads); would restart Xray through sync-config")
        }
        Blocker::BudgetSpent {
            syncs,
            max,
            frees_at,
        } => format!(
            "{server}: xray_down ({n} reads); not restarting: {syncs} of {max} syncs and restarts used in the last hour, next possible at {}",
            time(*frees_at)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Schedule;
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 4, 41, 0).unwrap()
    }

    fn settings(confirmations: u32, restart: bool) -> HealthJobConfig {
        HealthJobConfig {
            schedule: Schedule::parse("*/30 * * * * *").expect("schedule"),
            failures_before_alert: 3,
            xray_confirmations: confirmations,
            restart_xray: restart,
        }
    }

    fn observed(reads: Vec<XrayRead>, remembered: u32, attempts: &[i64]) -> Observed {
        Observed {
            reads,
            memory: XrayMemory {
                state: Some(if remembered > 0 {
                    XrayState::Stopped
                } else {
                    XrayState::Running
                }),
                stopped_reads: remembered,
                first_stopped_at: (remembered > 0).then(|| now() - TimeDelta::seconds(30)),
                checked_at: Some(now() - TimeDelta::seconds(30)),
            },
            sync_attempts: attempts
                .iter()
                .map(|m| now() - TimeDelta::minutes(*m))
                .collect(),
        }
    }

    #[test]
    fn plans() {
        use XrayRead::{Running, Stopped};
        let unknown = || XrayRead::Unknown("timeout".into());
        let spent = |syncs, max, frees_in: i64| Plan::Blocked {
            n: 2,
            reason: Blocker::BudgetSpent {
                syncs,
                max,
                frees_at: now() + TimeDelta::minutes(frees_in),
            },
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Observed, HealthJobConfig, u32, bool, Plan)> = vec![
            ("running", observed(vec![Running], 0, &[]), settings(2, true), 4, false, Plan::Running { was_stopped: 0 }),
            ("running again", observed(vec![Running], 3, &[]), settings(2, true), 4, false, Plan::Running { was_stopped: 3 }),
            ("first stopped read waits", observed(vec![Stopped], 0, &[]), settings(2, true), 4, false, Plan::WaitForConfirmation { n: 1, of: 2 }),
            ("second stopped read restarts", observed(vec![Stopped], 1, &[]), settings(2, true), 4, false, Plan::Restart { n: 2 }),
            ("one confirmation restarts at once", observed(vec![Stopped], 0, &[]), settings(1, true), 4, false, Plan::Restart { n: 1 }),
            ("check: re-reads confirm", observed(vec![Stopped, Stopped], 0, &[]), settings(2, true), 4, false, Plan::Restart { n: 2 }),
            ("check: running on re-read", observed(vec![Stopped, Running], 1, &[]), settings(2, true), 4, false, Plan::Running { was_stopped: 1 }),
            ("an unknown read changes nothing", observed(vec![unknown()], 1, &[]), settings(2, true), 4, false, Plan::Unknown { reason: "timeout".into() }),
            ("restart off", observed(vec![Stopped], 1, &[]), settings(2, false), 4, false, Plan::Blocked { n: 2, reason: Blocker::RestartOff }),
            ("restart off beats dry run", observed(vec![Stopped], 1, &[]), settings(2, false), 4, true, Plan::Blocked { n: 2, reason: Blocker::RestartOff }),
            ("dry run would restart", observed(vec![Stopped], 1, &[]), settings(2, true), 4, true, Plan::Blocked { n: 2, reason: Blocker::DryRun }),
            ("shared budget spent", observed(vec![Stopped], 1, &[50, 40]), settings(2, true), 2, false, spent(2, 2, 10)),
            ("budget spent beats dry run", observed(vec![Stopped], 1, &[50, 40]), settings(2, true), 2, true, spent(2, 2, 10)),
            ("old attempts leave the window", observed(vec![Stopped], 1, &[61, 40]), settings(2, true), 2, false, Plan::Restart { n: 2 }),
        ];
        for (name, observed, settings, max, dry_run, expected) in table {
            assert_eq!(
                plan(&observed, &settings, max, dry_run, now()),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn the_streak_keeps_its_first_sighting() {
        let memory = XrayMemory {
            state: Some(XrayState::Stopped),
            stopped_reads: 1,
            first_stopped_at: Some(now() - TimeDelta::seconds(30)),
            checked_at: None,
        };
        let next = stopped_memory(&memory, 2, now());
        assert_eq!(next.first_stopped_at, memory.first_stopped_at);
        let fresh = stopped_memory(&XrayMemory::default(), 1, now());
        assert_eq!(fresh.first_stopped_at, Some(now()));
    }

    #[test]
    fn findings_say_what_users_feel_and_what_to_do() {
        let memory = stopped_memory(&XrayMemory::default(), 2, now());
        let f = down("fra-1", &memory, Done::Blocked(Blocker::RestartOff));
        assert_eq!(
            (f.kind, f.severity),
            (FindingKind::XrayDown, Severity::Critical)
        );
        assert!(f.summary.contains("nobody can connect"), "{}", f.summary);
        assert!(f.details.contains("journalctl -u xray"));
        let r = restarted("fra-1", &memory, None);
        assert_eq!(
            (r.kind, r.severity),
            (FindingKind::XrayRestarted, Severity::Warning)
        );
        assert!(r.details.contains("journalctl -u xray"));
        let p = persists("fra-1", &memory, Some("server error (500): x"));
        assert_eq!(
            (p.kind, p.severity),
            (FindingKind::XrayDownPersists, Severity::Critical)
        );
        assert_eq!(f.fingerprint(), "fra-1/xray_down/xray");
    }
}
