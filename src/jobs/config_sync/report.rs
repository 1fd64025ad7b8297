//! The words of config_sync: findings (a one-line summary; details saying what was seen,
//! what keywarden did and what the admin should do next) and plan lines. Pure code.

use chrono::{DateTime, SecondsFormat, Utc};

use super::drift::Drift;
use super::plan::Blocker;
use crate::config::{JobKind, Severity};
use crate::jobs::{About, one_line};
use crate::model::{Finding, FindingKind};
use crate::server_api::{ApiError, SyncValidation};

/// The subject of every config_sync finding: one fingerprint per (server, kind), so an
/// open finding continues from run to run instead of a new one each time.
pub const SUBJECT: &str = "config.json";

/// 429 deferrals in a row that raise `sync_failed` (and count as a failed sync).
pub const DEFERRALS_BEFORE_ALERT: u32 = 2;

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

const ABOUT: About = About {
    job: JobKind::ConfigSync,
    subject: SUBJECT,
};

fn seen(drift: &Drift) -> String {
    format!(
        "config.json differs from the key store: {}.\n{}",
        drift.describe(false),
        drift.uuid_lines()
    )
}

pub fn waiting(server: &str, drift: &Drift, n: u32, of: u32) -> Finding {
    ABOUT.finding(
        server,
        FindingKind::ConfigDrift,
        Severity::Warning,
        format!("config drift on {server}: {} (confirmation {n} of {of})", drift.describe(false)),
        [
            seen(drift),
            format!("nothing yet: a sync restarts Xray and drops every connection, so keywarden syncs only after {of} drifted reads in a row (this was {n})."),
            "nothing, unless it persists: keywarden syncs once the drift is confirmed. A drift that clears by itself was a change in progress.".into(),
        ],
    )
}

pub fn blocked(server: &str, drift: &Drift, reason: &Blocker) -> Finding {
    let described = drift.describe(false);
    let (kind, severity, summary, done, next) = match reason {
        Blocker::AutoSyncOff => (
            FindingKind::ConfigDrift,
            Severity::Warning,
            format!("config drift on {server}: {described} (auto_sync is off)"),
            "nothing: [jobs.config_sync].auto_sync is false, so keywarden only reports.".to_string(),
            "sync by hand (POST /api/system/sync-config; every user reconnects) or set auto_sync = true.".to_string(),
        ),
        Blocker::WouldEmptyConfig => (
            FindingKind::ConfigDrift,
            Severity::Critical,
            format!("config drift on {server}: the key store is empty, not syncing"),
            "nothing: a sync would remove every client from config.json and cut off every user, which keywarden never does on its own.".to_string(),
            "check the server's key store (keys.json or the database) and restore it; sync by hand only if the server really should have no keys.".to_string(),
        ),
        Blocker::BudgetSpent { syncs, max, frees_at } => (
            FindingKind::AutoSyncSuspended,
            Severity::Critical,
            format!("auto sync suspended on {server}: {syncs} syncs in the last hour (max {max}), drift remains"),
            format!("nothing this run: {syncs} syncs in the last hour spent the budget of {max}; keywarden syncs again from {} if the drift is still there.", time(*frees_at)),
            "something keeps rewriting config.json or the syncs do not take: look for another panel, a cron job or config management editing it, and check the API's log.".to_string(),
        ),
        Blocker::DryRun => (
            FindingKind::ConfigDrift,
            Severity::Warning,
            format!("config drift on {server}: {described} (dry run: not synced)"),
            "nothing: dry run. Without it, keywarden would have synced now.".to_string(),
            "sync by hand, or run keywarden without --dry-run / agent.dry_run.".to_string(),
        ),
    };
    ABOUT.finding(server, kind, severity, summary, [seen(drift), done, next])
}

pub fn repaired(server: &str, before: &Drift, misreported: Option<&str>) -> Finding {
    let done = match misreported {
        None => {
            "synced config.json from the key store (Xray restarted); a fresh read shows it in sync."
                .to_string()
        }
        Some(detail) => format!(
            "synced config.json. The server answered 500 \"{}\", but validate-sync reads the file in sync: the server misreported (its own check reads a stale cache).",
            one_line(detail)
        ),
    };
    ABOUT.finding(
        server,
        FindingKind::ConfigDriftRepaired,
        Severity::Warning,
        format!(
            "config drift repaired on {server}: {}",
            before.describe(true)
        ),
        [
            seen(before),
            done,
            "nothing, unless it repeats: then find what edits config.json behind the API.".into(),
        ],
    )
}

pub fn persists(
    server: &str,
    before: &Drift,
    after: &Drift,
    server_said: Option<&SyncValidation>,
) -> Finding {
    let mut done = format!(
        "synced (the server answered 200 and restarted Xray), but a fresh read still shows: {}.",
        after.describe(false)
    );
    if after != before {
        done.push('\n');
        done.push_str(&after.uuid_lines());
    }
    if server_said.is_some_and(|v| !v.synced) {
        done.push_str("\n  the sync's own validation also said synced: false");
    }
    ABOUT.finding(
        server,
        FindingKind::ConfigDriftPersists,
        Severity::Critical,
        format!("config drift persists on {server} after a sync: {}", after.describe(false)),
        [
            seen(before),
            done,
            "look at config.json on the server: another tool may be rewriting it, and on 2.x a client inside an existing inbound survives a sync. Fix it by hand, then sync.".into(),
        ],
    )
}

pub fn failed(
    server: &str,
    before: &Drift,
    error: &ApiError,
    after: &Result<Option<Drift>, ApiError>,
) -> Finding {
    let after_text = match after {
        Ok(None) => "A read afterwards shows config.json in sync, but the sync reported a failure: Xray may still run the old configuration.".to_string(),
        Ok(Some(drift)) => format!("A read afterwards still shows: {}.", drift.describe(false)),
        Err(read) => format!("Reading the status afterwards failed too: {read}."),
    };
    ABOUT.finding(
        server,
        FindingKind::SyncFailed,
        Severity::Critical,
        format!("config sync failed on {server}: {}", error.kind),
        [
            seen(before),
            format!("asked the server to sync: {error}. {after_text}"),
            "check Xray and the API on the server (systemctl status xray, the API's log). keywarden tries again after new confirmations, within the hourly budget.".into(),
        ],
    )
}

pub fn deferred(server: &str, drift: &Drift, error: &ApiError, in_a_row: u32) -> Vec<Finding> {
    let mut findings = vec![ABOUT.finding(
        server,
        FindingKind::ConfigDrift,
        Severity::Warning,
        format!(
            "config drift on {server}: {} (sync deferred: rate limited)",
            drift.describe(false)
        ),
        [
            seen(drift),
            format!(
                "asked the server to sync; it refused with 429 ({error}). The server did not sync; this attempt does not count against the hourly budget."
            ),
            "nothing: keywarden tries again next run.".into(),
        ],
    )];
    if in_a_row >= DEFERRALS_BEFORE_ALERT {
        findings.push(ABOUT.finding(
            server,
            FindingKind::SyncFailed,
            Severity::Warning,
            format!("config sync on {server} refused by the rate limiter {in_a_row} times in a row"),
            [
                seen(drift),
                format!("{in_a_row} sync attempts in a row were answered 429 ({error}); none ran."),
                "something else is calling sync-config (the limit is 3 a minute per API worker): find it, or sync by hand when it is quiet.".into(),
            ],
        ));
    }
    findings
}

pub fn unconfirmed(server: &str, before: &Drift, error: &ApiError) -> Finding {
    ABOUT.finding(
        server,
        FindingKind::ConfigDrift,
        Severity::Warning,
        format!("config drift on {server}: synced, but the result could not be read back"),
        [
            seen(before),
            format!(
                "synced (the server answered 200); reading the status afterwards failed: {error}."
            ),
            "nothing: the next run reads the status again.".into(),
        ],
    )
}

pub fn api_error(server: &str, error: &ApiError) -> Finding {
    ABOUT.finding(
        server,
        FindingKind::ApiError,
        Severity::Warning,
        format!("config sync status of {server} unreadable: {}", error.kind),
        [
            format!("{error}."),
            "nothing: drift cannot be judged without the status.".into(),
            "check the server's API key and version (keywarden probe), and the API's log.".into(),
        ],
    )
}

/// The plan line of a blocked sync.
pub fn blocked_line(server: &str, drift: &Drift, reason: &Blocker) -> String {
    let described = drift.describe(false);
    match reason {
        Blocker::DryRun => format!("would sync {server}: {described}"),
        Blocker::AutoSyncOff => format!("not syncing {server} (auto_sync is off): {described}"),
        Blocker::WouldEmptyConfig => {
            format!(
                "not syncing {server}: the key store is empty and a sync would remove every client"
            )
        }
        Blocker::BudgetSpent {
            syncs,
            max,
            frees_at,
        } => format!(
            "not syncing {server}: {syncs} of {max} syncs used in the last hour, next possible at {}: {described}",
            time(*frees_at)
        ),
    }
}
