//! The audit log: append-only, written for people.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{AuditEntry, Store, StoreError, parse_ts, ts};

impl Store {
    /// Append one entry; the table refuses updates and deletes.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO audit_log (at, server, action, target, result, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ts(entry.at), entry.server, entry.action, entry.target, entry.result, entry.detail],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// The latest `limit` audit entries (of one server, or all), newest first.
    pub fn recent_audit(
        &self,
        server: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_entries(
            "SELECT at, server, action, target, result, detail FROM audit_log
                 WHERE ?1 IS NULL OR server = ?1 ORDER BY id DESC LIMIT ?2",
            params![server, limit as i64],
        )
    }

    /// One server's audit entries at or after `since`, newest first.
    pub fn audit_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_entries(
            "SELECT at, server, action, target, result, detail FROM audit_log
                 WHERE server = ?1 AND at >= ?2 ORDER BY id DESC",
            params![server, ts(since)],
        )
    }

    fn audit_entries(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<(String, String, String, String, String, String)> = self.tuples(sql, args)?;
        rows.into_iter()
            .map(|(at, server, action, target, result, detail)| {
                Ok(AuditEntry {
                    at: parse_ts(&self.path, "audit_log.at", &at)?,
                    server,
                    action,
                    target,
                    result,
                    detail,
                })
            })
            .collect()
    }
}
