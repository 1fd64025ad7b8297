//! Findings per (server, kind, subject): opened, refreshed and resolved run by run.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{FindingChanges, Store, StoreError, StoredFinding, parse_opt_ts, parse_ts, ts};
use crate::config::JobKind;
use crate::model::Finding;

impl Store {
    /// Record the findings of one run of `job` on `server`: new ones open, present
    /// ones are refreshed, open ones of this (server, job) that are absent resolve.
    pub fn record_findings(
        &self,
        server: &str,
        job: JobKind,
        findings: &[Finding],
        now: DateTime<Utc>,
    ) -> Result<FindingChanges, StoreError> {
        let now_text = ts(now);
        let resolved_rows = self.with(|conn| {
            let tx = conn.transaction()?;
            let mut changes = (Vec::new(), Vec::new());
            for finding in findings {
                let updated = tx.execute(
                    "UPDATE findings SET job = ?4, severity = ?5, summary = ?6, details = ?7, last_seen = ?8
                     WHERE server = ?1 AND kind = ?2 AND subject = ?3 AND resolved_at IS NULL",
                    params![
                        finding.server,
                        finding.kind.as_str(),
                        finding.subject,
                        finding.job.as_str(),
                        finding.severity.as_str(),
                        finding.summary,
                        finding.details,
                        now_text
                    ],
                )?;
                if updated == 0 {
                    tx.execute(
                        "INSERT INTO findings (server, job, kind, subject, severity, summary, details, first_seen, last_seen)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                        params![
                            finding.server,
                            finding.job.as_str(),
                            finding.kind.as_str(),
                            finding.subject,
                            finding.severity.as_str(),
                            finding.summary,
                            finding.details,
                            now_text
                        ],
                    )?;
                    changes.0.push(finding.fingerprint());
                } else {
                    changes.1.push(finding.fingerprint());
                }
            }
            // Resolve what this job produced before and not now.
            let mut statement = tx.prepare(
                "SELECT id, kind, subject FROM findings WHERE server = ?1 AND job = ?2 AND resolved_at IS NULL",
            )?;
            let open: Vec<(i64, String, String)> = statement
                .query_map(params![server, job.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            drop(statement);
            let mut resolved_ids = Vec::new();
            for (id, kind, subject) in open {
                let still = findings.iter().any(|f| f.kind.as_str() == kind && f.subject == subject);
                if !still {
                    tx.execute("UPDATE findings SET resolved_at = ?2 WHERE id = ?1", params![id, now_text])?;
                    resolved_ids.push(id);
                }
            }
            tx.commit()?;
            Ok((changes, resolved_ids))
        })?;
        let ((opened, continuing), resolved_ids) = resolved_rows;
        let mut resolved = Vec::new();
        for id in resolved_ids {
            resolved.extend(self.findings_where("id = ?1", &[&id])?);
        }
        Ok(FindingChanges {
            opened,
            continuing,
            resolved,
        })
    }

    /// Open findings, of one server or all, most severe first.
    pub fn open_findings(&self, server: Option<&str>) -> Result<Vec<StoredFinding>, StoreError> {
        let mut found = match server {
            Some(server) => {
                self.findings_where("resolved_at IS NULL AND server = ?1", &[&server])?
            }
            None => self.findings_where("resolved_at IS NULL", &[])?,
        };
        let rank = |s: &str| match s {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        };
        found.sort_by(|a, b| {
            (&a.server, rank(&a.severity), &a.kind).cmp(&(&b.server, rank(&b.severity), &b.kind))
        });
        Ok(found)
    }

    fn findings_where(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<StoredFinding>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
        );
        let sql = format!(
            "SELECT server, job, kind, subject, severity, summary, details, first_seen, last_seen, resolved_at
             FROM findings WHERE {condition} ORDER BY id"
        );
        let rows: Vec<Row> = self.tuples(&sql, args)?;
        rows.into_iter()
            .map(
                |(
                    server,
                    job,
                    kind,
                    subject,
                    severity,
                    summary,
                    details,
                    first,
                    last,
                    resolved,
                )| {
                    Ok(StoredFinding {
                        server,
                        job,
                        kind,
                        subject,
                        severity,
                        summary,
                        details,
                        first_seen: parse_ts(&self.path, "findings.first_seen", &first)?,
                        last_seen: parse_ts(&self.path, "findings.last_seen", &last)?,
                        resolved_at: parse_opt_ts(&self.path, "findings.resolved_at", resolved)?,
                    })
                },
            )
            .collect()
    }
}
