//! The audit log: append-only (triggers refuse updates and deletes), written for people.

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};

use super::SqliteStore;
use super::columns::at;
use crate::model::{AuditEntry, stamp};
use crate::store::{AuditLog, StoreFuture};

const COLUMNS: &str = "at, server, action, target, result, detail";

fn entry_from(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: at(row, 0)?,
        server: row.get(1)?,
        action: row.get(2)?,
        target: row.get(3)?,
        result: row.get(4)?,
        detail: row.get(5)?,
    })
}

impl AuditLog for SqliteStore {
    fn append(&self, entry: &AuditEntry) -> StoreFuture<'_, ()> {
        let entry = entry.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO audit_log (at, server, action, target, result, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![stamp(entry.at), entry.server, entry.action, entry.target, entry.result, entry.detail],
            )
            .map(drop)
        })
    }

    fn recent(&self, server: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        let server = server.map(str::to_owned);
        self.call(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_log WHERE ?1 IS NULL OR server = ?1 ORDER BY id DESC LIMIT ?2"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![server, limit as i64], entry_from)?;
            rows.collect()
        })
    }

    fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.call(move |conn| {
            let sql =
                format!("SELECT {COLUMNS} FROM audit_log WHERE at >= ?1 AND at < ?2 ORDER BY id");
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![stamp(from), stamp(to)], entry_from)?;
            rows.collect()
        })
    }
}
