//! The quota job's findings and plan lines: plain text from plain data. Details follow the
//! "Seen / Done / Next" shape of every keywarden finding. One-shot notices (a threshold
//! crossed, a key deleted, a counter drop, a reset digest) are emitted only in the run
//! where the event happened; they resolve at the next run by design (see docs/quotas.md).
//!
//! Longer than 400 lines on purpose: the text of every quota finding and plan line is here,
//! so their Seen / Done / Next shape and wording stay alike; each function is short.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::{JobKind, Severity};
use crate::jobs::one_line;
use crate::model::{Finding, FindingKind};
use crate::quota::evaluate::{Notice, percent};
use crate::quota::human_bytes;
use crate::quota::identity::Ambiguity;
use crate::quota::ledger::Drop;
use crate::quota::plan::{Action, ActionKind, Reason, Rejected};
use crate::quota::plausible::{self, Implausible};
use crate::server_api::ApiError;

/// Keys listed by name in a digest at most; the rest are counted.
pub const LISTED: usize = 20;

/// Said in every one-shot finding, for whoever reads the resolved notice.
pub const ONE_SHOT: &str = "Note: one-shot notice, raised once when it happened; it resolves at the next quota run by design, there is nothing to resolve.";

fn finding(
    server: &str,
    kind: FindingKind,
    subject: String,
    severity: Severity,
    summary: String,
    details: String,
) -> Finding {
    Finding {
        server: server.to_string(),
        job: JobKind::Quota,
        kind,
        subject,
        severity,
        summary: one_line(&summary),
        details,
    }
}

fn when(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `"name" (uuid)`; both come from the server: shortened, controls escaped.
pub fn key_label(name: &str, uuid: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).take(80).collect();
    let uuid: String = uuid.chars().take(80).collect();
    format!(
        "\"{}\" ({})",
        crate::terminal::escape(&name),
        crate::terminal::escape(&uuid)
    )
}

/// Up to `LISTED` lines, then "... and N more".
fn listing<T>(items: &[T], line: impl Fn(&T) -> String) -> String {
    let mut lines: Vec<String> = items
        .iter()
        .take(LISTED)
        .map(|i| format!("- {}", line(i)))
        .collect();
    if items.len() > LISTED {
        lines.push(format!("- ... and {} more", items.len() - LISTED));
    }
    lines.join("\n")
}

/// A threshold notice as a finding (`None` for notices that are plan lines only).
pub fn notice(
    server: &str,
    notice: &Notice,
    tz: Tz,
    next_reset: Option<DateTime<Utc>>,
) -> Option<Finding> {
    let next = next_reset.map_or("never (lifetime quota)".to_owned(), |at| when(at, tz));
    match notice {
        Notice::Warning {
            uuid,
            name,
            crossed,
            used,
            limit,
            ..
        } => {
            let level = crossed.last().copied().unwrap_or(0);
            let levels: Vec<String> = crossed.iter().map(|l| format!("{l}%")).collect();
            Some(finding(
                server,
                FindingKind::QuotaWarning,
                format!("{uuid}@{level}%"),
                Severity::Warning,
                format!(
                    "{server}: key \"{name}\" crossed {level}% of its quota: {} of {} ({}%)",
                    human_bytes(*used),
                    human_bytes(*limit),
                    percent(*used, *limit)
                ),
                format!(
                    "Seen: key {} crossed {} of its {} quota this period.\nDone: nothing yet; the next threshold is raised when crossed. The period resets {next}.\nNext: tell the key's user, or raise the limit in a [[quotas.rules]] entry.\n{ONE_SHOT}",
                    key_label(name, uuid),
                    levels.join(" and "),
                    human_bytes(*limit)
                ),
            ))
        }
        Notice::Exceeded {
            uuid,
            name,
            used,
            limit,
            on_exceed,
            delete_at,
            ..
        } => {
            let done = match (*on_exceed, delete_at) {
                ("reset", _) => "its allowance starts afresh in keywarden's ledger and the server's counter is reset where counter_resets allows; the key keeps working (unless the blast-radius guard holds the reset back).".to_owned(),
                ("delete", Some(at)) => format!("nothing yet: the key will be deleted at {} if it is still over its limit then (grace).", when(*at, tz)),
                _ => "nothing (on_exceed = \"alert\").".to_owned(),
            };
            Some(finding(
                server,
                FindingKind::QuotaExceeded,
                uuid.clone(),
                Severity::Warning,
                format!(
                    "{server}: key \"{name}\" is over its quota ({} of {})",
                    human_bytes(*used),
                    human_bytes(*limit)
                ),
                format!(
                    "Seen: key {} used {} this period, its limit is {}.\nDone: {done}\nNext: the period resets {next}; raise the limit in a [[quotas.rules]] entry if this key should have more.\n{ONE_SHOT}",
                    key_label(name, uuid),
                    human_bytes(*used),
                    human_bytes(*limit)
                ),
            ))
        }
        Notice::DeleteCancelled { .. } => None,
    }
}

/// The plan line of a notice.
pub fn notice_line(server: &str, notice: &Notice) -> String {
    match notice {
        Notice::Warning {
            uuid,
            name,
            crossed,
            ..
        } => {
            let level = crossed.last().copied().unwrap_or(0);
            format!(
                "{server}: key {} crossed {level}% of its quota",
                key_label(name, uuid)
            )
        }
        Notice::Exceeded {
            uuid,
            name,
            on_exceed,
            ..
        } => {
            format!(
                "{server}: key {} is over its quota (on_exceed = {on_exceed})",
                key_label(name, uuid)
            )
        }
        Notice::DeleteCancelled {
            uuid,
            name,
            used,
            limit,
        } => format!(
            "{server}: delete of key {} called off: {} of {} is under its limit again",
            key_label(name, uuid),
            human_bytes(*used),
            human_bytes(*limit)
        ),
    }
}

/// Counters that dropped without keywarden resetting them, as one digest (info).
pub fn drops(server: &str, drops: &[Drop]) -> Finding {
    finding(
        server,
        FindingKind::CounterResetSeen,
        "counters".into(),
        Severity::Info,
        format!(
            "{server}: {} traffic counter(s) dropped without keywarden resetting them",
            drops.len()
        ),
        format!(
            "Seen: the server's counter went down (a reset by someone else, an Xray restart or rebuild):\n{}\nDone: counted the new value of each as traffic since the drop, so nothing is lost or counted twice.\nNext: nothing, unless nobody should be resetting these counters.\n{ONE_SHOT}",
            listing(drops, |d| format!(
                "{}: {} -> {}",
                key_label(&d.name, &d.uuid),
                human_bytes(d.from),
                human_bytes(d.to)
            ))
        ),
    )
}

/// What one reset on the server came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplied {
    pub action: Action,
    pub before: Option<u64>,
    pub after: Option<u64>,
    /// The reset call's error, when it failed.
    pub error: Option<String>,
}

/// The once-per-server-and-period digest of resets that did not take effect.
pub fn not_applied(
    server: &str,
    resets: &[NotApplied],
    applied: usize,
    suspended: bool,
) -> Finding {
    let line = |r: &NotApplied| {
        let figures = match (r.before, r.after) {
            (Some(before), Some(after)) => format!(
                "{} before, {} after",
                human_bytes(before),
                human_bytes(after)
            ),
            (_, Some(after)) => format!("{} after", human_bytes(after)),
            _ => "not read back".into(),
        };
        match &r.error {
            Some(error) => format!(
                "{}: {figures}; the call failed: {error}",
                key_label(&r.action.name, &r.action.uuid)
            ),
            None => format!("{}: {figures}", key_label(&r.action.name, &r.action.uuid)),
        }
    };
    let suspended = if suspended {
        "\nkeywarden stops calling reset on this server (counter_resets = \"auto\") until its API version changes."
    } else {
        ""
    };
    finding(
        server,
        FindingKind::ResetNotApplied,
        "resets".into(),
        Severity::Warning,
        format!(
            "{server}: {} counter reset(s) did not take effect",
            resets.len()
        ),
        format!(
            "Seen: the server accepted the reset but the counter read back did not drop (both public server generations ignore resets today); {applied} other reset(s) took effect:\n{}\nDone: nothing is lost: keywarden's own ledger started the new period and counts only growth from here.{suspended}\nNext: nothing is required; set counter_resets = \"never\" for this server to stop the calls.\n{ONE_SHOT} (Raised once per server and period.)",
            listing(resets, line)
        ),
    )
}

/// Resets interrupted by a crash whose outcome the next reading cannot tell: the growth
/// was counted, the reset not repeated; up to the reading before each may be uncounted.
pub fn uncertain(server: &str, resets: &[NotApplied]) -> Finding {
    let line = |r: &NotApplied| {
        let label = key_label(&r.action.name, &r.action.uuid);
        match (r.before, r.after) {
            (Some(before), Some(after)) => format!(
                "{label}: {} before the reset, {} now; counted {}, up to {} more may be uncounted",
                human_bytes(before),
                human_bytes(after),
                human_bytes(after - before.min(after)),
                human_bytes(before)
            ),
            (_, Some(after)) => format!("{label}: {} now, counted as traffic", human_bytes(after)),
            _ => label,
        }
    };
    let uncounted: u64 = resets.iter().filter_map(|r| r.before).sum();
    finding(
        server,
        FindingKind::UsageUncertain,
        "resets".into(),
        Severity::Warning,
        format!(
            "{server}: usage of {} key(s) is uncertain by up to {} after a reset interrupted by a crash",
            resets.len(),
            human_bytes(uncounted)
        ),
        format!(
            "Seen: keywarden stopped (killed, or the machine went down) after sending these resets and before reading them back; their counters now read above the reading before the reset, so whether the reset happened cannot be told (a reset followed by that much traffic, or no reset and some traffic):\n{}\nDone: counted what can be proven, the growth since the reading before the reset; did not reset again (a second reset without proof that the first failed could wipe traffic nobody counted). If the reset did happen, up to the reading before it is uncounted for this period.\nNext: nothing is required; the next period boundary resets the counters. Where exact figures matter, compare `keywarden usage` with the server's own records.\n{ONE_SHOT}",
            listing(resets, line)
        ),
    )
}

/// The guard held back resets or deletes (critical, kept open while it holds).
pub fn blocked(server: &str, blocked: &[Action], total_keys: usize) -> Finding {
    finding(
        server,
        FindingKind::MassActionBlocked,
        "quota".into(),
        Severity::Critical,
        format!(
            "{server}: keywarden refused to {} {} of {total_keys} keys at once",
            verb(blocked),
            blocked.len()
        ),
        format!(
            "Seen: outside a period boundary, this run planned:\n{}\nDone: nothing; more than 20% of a server's keys (and more than 5) at once looks like a mistake (a wrong limit, a broken counter).\nNext: check the limits and the counters (keywarden usage --server {server}); if this is intended, set allow_mass = true on the rule.",
            listing(blocked, |a| format!(
                "{} {} ({})",
                a.kind.as_str(),
                key_label(&a.name, &a.uuid),
                a.reason.as_str()
            ))
        ),
    )
}

fn verb(actions: &[Action]) -> &'static str {
    let resets = actions.iter().any(|a| a.kind == ActionKind::Reset);
    let deletes = actions.iter().any(|a| a.kind == ActionKind::Delete);
    match (resets, deletes) {
        (true, true) => "reset or delete",
        (false, true) => "delete",
        _ => "reset",
    }
}

/// A key keywarden deleted (or found already gone when finishing its delete).
pub fn deleted(server: &str, action: &Action, already_gone: bool) -> Finding {
    let done = if already_gone {
        "the key was already gone when keywarden finished its delete (the delete before a restart went through, or someone removed it)."
    } else {
        "deleted the key (DELETE by id, by uuid on 404)."
    };
    finding(
        server,
        FindingKind::KeyDeleted,
        action.uuid.clone(),
        Severity::Warning,
        format!(
            "{server}: deleted key \"{}\": over its quota after the grace",
            action.name
        ),
        format!(
            "Seen: key {} stayed over its limit until its grace ended.\nDone: {done}\nNext: create a new key for the user if they should keep access.\n{ONE_SHOT}",
            key_label(&action.name, &action.uuid)
        ),
    )
}

/// Keys sharing an id or a uuid: left alone until the server's key store is fixed
/// (warning, open while it lasts).
pub fn ambiguous(server: &str, ambiguity: &Ambiguity) -> Finding {
    let shown = |values: &[String]| {
        let mut listed: Vec<String> = values
            .iter()
            .take(LISTED)
            .map(|v| crate::terminal::escape(v).into_owned())
            .collect();
        if values.len() > LISTED {
            listed.push(format!("... and {} more", values.len() - LISTED));
        }
        listed.join(", ")
    };
    let mut seen = Vec::new();
    if !ambiguity.ids.is_empty() {
        seen.push(format!(
            "ids shared by several keys: {}",
            shown(&ambiguity.ids)
        ));
    }
    if !ambiguity.uuids.is_empty() {
        seen.push(format!(
            "uuids shared by several keys: {}",
            shown(&ambiguity.uuids)
        ));
    }
    finding(
        server,
        FindingKind::KeyIdentityAmbiguous,
        "keys".into(),
        Severity::Warning,
        format!(
            "{server}: {} keys cannot be told apart (shared id or uuid)",
            ambiguity.keys.len()
        ),
        format!(
            "Seen: the key list names several keys with one identity ({}). A reset, delete or traffic read by that identity could reach another key.\nDone: these keys are not counted, warned about, reset or deleted; their ledger rows are kept as they were. The other keys are handled as usual.\nNext: fix the server's key store so that every key has its own id and uuid (keywarden probe --server {server} lists them).",
            seen.join("; ")
        ),
    )
}

/// Counter readings that cannot be true (warning, open while they keep coming).
pub fn implausible(server: &str, rejected: &[Rejected]) -> Finding {
    let line = |r: &Rejected| {
        let why = match &r.why {
            Implausible::TooLarge { bytes } => format!(
                "counter {bytes} is beyond {} ({})",
                plausible::MAX_COUNTER,
                human_bytes(plausible::MAX_COUNTER)
            ),
            Implausible::TooFast {
                growth, seconds, ..
            } => format!(
                "{} in {seconds} s is more than 100 Gbit/s",
                human_bytes(*growth)
            ),
            Implausible::Overflow { bytes } => {
                format!("counter {bytes} would overflow the usage ledger")
            }
        };
        format!("{}: {why}", key_label(&r.name, &r.uuid))
    };
    finding(
        server,
        FindingKind::TrafficReadingImplausible,
        "readings".into(),
        Severity::Warning,
        format!(
            "{server}: {} traffic reading(s) cannot be true and were not counted",
            rejected.len()
        ),
        format!(
            "Seen: counters beyond what a key can do (more than 2^53 bytes, or faster than 100 Gbit/s since the last reading):\n{}\nDone: these readings were not counted; the keys' usage stays as it was and no warning, reset or delete acted on them.\nNext: check the server's traffic counters (keywarden probe --server {server}); the finding resolves when the readings are plausible again.",
            listing(rejected, line)
        ),
    )
}

/// Quotas are not being enforced.
pub fn stale(server: &str, why: &str) -> Finding {
    finding(
        server,
        FindingKind::TrafficDataStale,
        "traffic".into(),
        Severity::Warning,
        format!("{server}: traffic accounting is stale: {why}"),
        format!(
            "Seen: {why}.\nDone: the ledger keeps what it had; quotas are not enforced from stale figures.\nNext: run `keywarden probe --server {server}` and check the server's traffic monitor (Xray stats API)."
        ),
    )
}

/// The traffic could not be read in an unusable way (401, wrong shape).
pub fn api_error(server: &str, error: &ApiError) -> Finding {
    finding(
        server,
        FindingKind::ApiError,
        "traffic".into(),
        Severity::Warning,
        format!("{server}: traffic counters unreadable: {}", error.kind),
        format!(
            "Seen: {error}.\nDone: nothing; the ledger is unchanged.\nNext: check the server's API key and version (keywarden probe)."
        ),
    )
}

/// The plan line of an action (`would` in a dry run).
pub fn action_line(server: &str, action: &Action, dry_run: bool) -> String {
    let why = match action.reason {
        Reason::Boundary => "new period",
        Reason::Exceeded => "over its quota",
        Reason::GraceEnded => "over its quota after the grace",
    };
    let verb = match (action.kind, dry_run) {
        (ActionKind::Reset, true) => "would reset the counter of",
        (ActionKind::Reset, false) => "reset the counter of",
        (ActionKind::Delete, true) => "would delete",
        (ActionKind::Delete, false) => "delete",
    };
    format!(
        "{server}: {verb} key {} ({why})",
        key_label(&action.name, &action.uuid)
    )
}

/// At most `LISTED` lines of a long list, then a count.
pub fn capped(lines: Vec<String>) -> Vec<String> {
    let total = lines.len();
    let mut out: Vec<String> = lines.into_iter().take(LISTED).collect();
    if total > LISTED {
        out.push(format!("... and {} more", total - LISTED));
    }
    out
}
