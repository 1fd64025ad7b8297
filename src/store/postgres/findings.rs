//! Findings per (server, kind, subject), and what keywarden last knew of each server.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PgStore;
use super::columns::{PgResult, at, count, get, opt_at};
use crate::model::dataplane::XrayMemory;
use crate::model::{
    Finding, FindingChanges, JobKind, OpenFindings, ServerState, Severity, StoredFinding, stamp,
};
use crate::store::{FindingLog, ServerLog, StoreFuture};

const COLUMNS: &str =
    "server, job, kind, subject, severity, summary, details, first_seen, last_seen, resolved_at";

fn finding_from(row: &Row) -> PgResult<StoredFinding> {
    Ok(StoredFinding {
        server: get(row, 0)?,
        job: get(row, 1)?,
        kind: get(row, 2)?,
        subject: get(row, 3)?,
        severity: get(row, 4)?,
        summary: get(row, 5)?,
        details: get(row, 6)?,
        first_seen: at(row, 7)?,
        last_seen: at(row, 8)?,
        resolved_at: opt_at(row, 9)?,
    })
}

/// Refresh a finding that is open, else open it; true when it is new.
async fn upsert(tx: &Transaction<'_>, finding: &Finding, now: &str) -> PgResult<bool> {
    let updated = tx
        .execute(
            "UPDATE findings SET job = $4, severity = $5, summary = $6, details = $7, last_seen = $8
             WHERE server = $1 AND kind = $2 AND subject = $3 AND resolved_at IS NULL",
            &[
                &finding.server,
                &finding.kind,
                &finding.subject,
                &finding.job,
                &finding.severity,
                &finding.summary,
                &finding.details,
                &now,
            ],
        )
        .await?;
    if updated > 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO findings (server, job, kind, subject, severity, summary, details, first_seen, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        &[
            &finding.server,
            &finding.job,
            &finding.kind,
            &finding.subject,
            &finding.severity,
            &finding.summary,
            &finding.details,
            &now,
        ],
    )
    .await?;
    Ok(true)
}

/// Resolve the open findings of (server, job) that `findings` no longer holds.
async fn resolve_absent(
    tx: &Transaction<'_>,
    server: &str,
    job: JobKind,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> PgResult<Vec<StoredFinding>> {
    let sql = format!(
        "SELECT {COLUMNS}, id FROM findings WHERE server = $1 AND job = $2 AND resolved_at IS NULL ORDER BY id"
    );
    let rows = tx.query(&sql, &[&server, &job]).await?;
    let mut resolved = Vec::new();
    for row in &rows {
        let mut stored = finding_from(row)?;
        let id: i64 = get(row, 10)?;
        let still = findings
            .iter()
            .any(|f| f.kind == stored.kind && f.subject == stored.subject);
        if !still {
            tx.execute(
                "UPDATE findings SET resolved_at = $2 WHERE id = $1",
                &[&id, &stamp(now)],
            )
            .await?;
            stored.resolved_at = Some(now);
            resolved.push(stored);
        }
    }
    Ok(resolved)
}

/// Open findings of every server, per severity.
async fn open_counts(tx: &Transaction<'_>) -> PgResult<OpenFindings> {
    let rows = tx
        .query(
            "SELECT severity, COUNT(*) FROM findings WHERE resolved_at IS NULL GROUP BY severity",
            &[],
        )
        .await?;
    let mut open = OpenFindings::default();
    for row in &rows {
        let severity: Severity = get(row, 0)?;
        let n = get::<i64>(row, 1)?.max(0) as u64;
        match severity {
            Severity::Info => open.info = n,
            Severity::Warning => open.warning = n,
            Severity::Critical => open.critical = n,
        }
    }
    Ok(open)
}

impl FindingLog for PgStore {
    fn record(
        &self,
        server: &str,
        job: JobKind,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, FindingChanges> {
        let (server, findings) = (server.to_owned(), findings.to_vec());
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let mut changes = FindingChanges::default();
            let now_text = stamp(now);
            for finding in &findings {
                match upsert(&tx, finding, &now_text).await? {
                    true => changes.opened.push(finding.fingerprint()),
                    false => changes.continuing.push(finding.fingerprint()),
                }
            }
            changes.resolved = resolve_absent(&tx, &server, job, &findings, now).await?;
            changes.open = open_counts(&tx).await?;
            tx.commit().await?;
            Ok(changes)
        })
    }

    fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<StoredFinding>> {
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM findings
                 WHERE first_seen < $1 AND (resolved_at IS NULL OR resolved_at >= $2) ORDER BY id"
            );
            client
                .query(&sql, &[&stamp(to), &stamp(from)])
                .await?
                .iter()
                .map(finding_from)
                .collect()
        })
    }

    fn open(&self, server: Option<&str>) -> StoreFuture<'_, Vec<StoredFinding>> {
        let server = server.map(str::to_owned);
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {COLUMNS} FROM findings WHERE resolved_at IS NULL AND ($1::TEXT IS NULL OR server = $1) ORDER BY id"
            );
            let mut found: Vec<StoredFinding> = client
                .query(&sql, &[&server])
                .await?
                .iter()
                .map(finding_from)
                .collect::<PgResult<_>>()?;
            found.sort_by(|a, b| {
                (&a.server, Reverse(a.severity), a.kind.as_str()).cmp(&(
                    &b.server,
                    Reverse(b.severity),
                    b.kind.as_str(),
                ))
            });
            Ok(found)
        })
    }
}

const STATE_COLUMNS: &str =
    "server, version, last_up_at, last_down_at, consecutive_failures, last_error";

fn state_from(row: &Row) -> PgResult<ServerState> {
    Ok(ServerState {
        server: get(row, 0)?,
        version: get(row, 1)?,
        last_up_at: opt_at(row, 2)?,
        last_down_at: opt_at(row, 3)?,
        consecutive_failures: count(row, 4)?,
        last_error: get(row, 5)?,
    })
}

impl ServerLog for PgStore {
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>> {
        self.run(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {STATE_COLUMNS} FROM server_state ORDER BY server");
            client
                .query(&sql, &[])
                .await?
                .iter()
                .map(state_from)
                .collect()
        })
    }

    fn state(&self, server: &str) -> StoreFuture<'_, Option<ServerState>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {STATE_COLUMNS} FROM server_state WHERE server = $1");
            client
                .query_opt(&sql, &[&server])
                .await?
                .as_ref()
                .map(state_from)
                .transpose()
        })
    }

    fn save(&self, state: &ServerState, now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let state = state.clone();
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO server_state (server, version, last_up_at, last_down_at, consecutive_failures, last_error, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (server) DO UPDATE SET version = $2, last_up_at = $3, last_down_at = $4,
                         consecutive_failures = $5, last_error = $6, updated_at = $7",
                    &[
                        &state.server,
                        &state.version,
                        &state.last_up_at.map(stamp),
                        &state.last_down_at.map(stamp),
                        &i64::from(state.consecutive_failures),
                        &state.last_error,
                        &stamp(now),
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn xray(&self, server: &str) -> StoreFuture<'_, XrayMemory> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT state, stopped_reads, first_stopped_at, checked_at FROM xray_state WHERE server = $1",
                    &[&server],
                )
                .await?;
            let Some(row) = row else {
                return Ok(XrayMemory::default());
            };
            Ok(XrayMemory {
                state: get(&row, 0)?,
                stopped_reads: count(&row, 1)?,
                first_stopped_at: opt_at(&row, 2)?,
                checked_at: opt_at(&row, 3)?,
            })
        })
    }

    fn save_xray(
        &self,
        server: &str,
        memory: &XrayMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, memory) = (server.to_owned(), memory.clone());
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO xray_state (server, state, stopped_reads, first_stopped_at, checked_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (server) DO UPDATE SET state = $2, stopped_reads = $3, first_stopped_at = $4,
                         checked_at = $5, updated_at = $6",
                    &[
                        &server,
                        &memory.state,
                        &i64::from(memory.stopped_reads),
                        &memory.first_stopped_at.map(stamp),
                        &memory.checked_at.map(stamp),
                        &stamp(now),
                    ],
                )
                .await?;
            Ok(())
        })
    }
}
