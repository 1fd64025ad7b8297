//! Findings per (server, kind, subject): opened, refreshed and resolved run by run.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, Transaction, params};

use super::SqliteStore;
use super::columns::{at, opt_at};
use crate::model::{
    Finding, FindingChanges, JobKind, OpenFindings, Severity, StoredFinding, stamp,
};
use crate::store::{FindingLog, StoreFuture};

const COLUMNS: &str =
    "server, job, kind, subject, severity, summary, details, first_seen, last_seen, resolved_at";

fn finding_from(row: &Row<'_>) -> rusqlite::Result<StoredFinding> {
    Ok(StoredFinding {
        server: row.get(0)?,
        job: row.get(1)?,
        kind: row.get(2)?,
        subject: row.get(3)?,
        severity: row.get(4)?,
        summary: row.get(5)?,
        details: row.get(6)?,
        first_seen: at(row, 7)?,
        last_seen: at(row, 8)?,
        resolved_at: opt_at(row, 9)?,
    })
}

/// Refresh a finding that is open, else open it; true when it is new.
fn upsert(tx: &Transaction<'_>, finding: &Finding, now: &str) -> rusqlite::Result<bool> {
    let updated = tx.execute(
        "UPDATE findings SET job = ?4, severity = ?5, summary = ?6, details = ?7, last_seen = ?8
         WHERE server = ?1 AND kind = ?2 AND subject = ?3 AND resolved_at IS NULL",
        params![
            finding.server,
            finding.kind,
            finding.subject,
            finding.job,
            finding.severity,
            finding.summary,
            finding.details,
            now
        ],
    )?;
    if updated > 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO findings (server, job, kind, subject, severity, summary, details, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            finding.server,
            finding.job,
            finding.kind,
            finding.subject,
            finding.severity,
            finding.summary,
            finding.details,
            now
        ],
    )?;
    Ok(true)
}

/// Resolve the open findings of (server, job) that `findings` no longer holds.
fn resolve_absent(
    tx: &Transaction<'_>,
    server: &str,
    job: JobKind,
    findings: &[Finding],
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<StoredFinding>> {
    let sql = format!(
        "SELECT {COLUMNS}, id FROM findings WHERE server = ?1 AND job = ?2 AND resolved_at IS NULL ORDER BY id"
    );
    let mut statement = tx.prepare(&sql)?;
    let open: Vec<(StoredFinding, i64)> = statement
        .query_map(params![server, job], |row| {
            Ok((finding_from(row)?, row.get(10)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut resolved = Vec::new();
    for (mut stored, id) in open {
        let still = findings
            .iter()
            .any(|f| f.kind == stored.kind && f.subject == stored.subject);
        if !still {
            tx.execute(
                "UPDATE findings SET resolved_at = ?2 WHERE id = ?1",
                params![id, stamp(now)],
            )?;
            stored.resolved_at = Some(now);
            resolved.push(stored);
        }
    }
    Ok(resolved)
}

/// Open findings of every server, per severity.
fn open_counts(conn: &Connection) -> rusqlite::Result<OpenFindings> {
    let mut statement = conn.prepare(
        "SELECT severity, COUNT(*) FROM findings WHERE resolved_at IS NULL GROUP BY severity",
    )?;
    let mut open = OpenFindings::default();
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, Severity>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (severity, n) = row?;
        let n = n.max(0) as u64;
        match severity {
            Severity::Info => open.info = n,
            Severity::Warning => open.warning = n,
            Severity::Critical => open.critical = n,
        }
    }
    Ok(open)
}

impl FindingLog for SqliteStore {
    fn record(
        &self,
        server: &str,
        job: JobKind,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, FindingChanges> {
        let (server, findings) = (server.to_owned(), findings.to_vec());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut changes = FindingChanges::default();
            for finding in &findings {
                match upsert(&tx, finding, &stamp(now))? {
                    true => changes.opened.push(finding.fingerprint()),
                    false => changes.continuing.push(finding.fingerprint()),
                }
            }
            changes.resolved = resolve_absent(&tx, &server, job, &findings, now)?;
            changes.open = open_counts(&tx)?;
            tx.commit()?;
            Ok(changes)
        })
    }

    fn between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<StoredFinding>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM findings
                 WHERE first_seen < ?1 AND (resolved_at IS NULL OR resolved_at >= ?2) ORDER BY id"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![stamp(to), stamp(from)], finding_from)?;
            rows.collect()
        })
    }

    fn open(&self, server: Option<&str>) -> StoreFuture<'_, Vec<StoredFinding>> {
        let server = server.map(str::to_owned);
        self.call(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM findings WHERE resolved_at IS NULL AND (?1 IS NULL OR server = ?1) ORDER BY id"
            );
            let mut statement = conn.prepare(&sql)?;
            let mut found: Vec<StoredFinding> = statement
                .query_map(params![server], finding_from)?
                .collect::<rusqlite::Result<_>>()?;
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
