//! The drift streak per server and the attempts of the sync budget.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::columns::{at, count, opt_at};
use crate::model::{AttemptKind, DriftMemory, SyncAttempt, SyncAttemptOutcome, stamp};
use crate::store::{StoreFuture, SyncLog};

impl SyncLog for SqliteStore {
    fn drift(&self, server: &str) -> StoreFuture<'_, DriftMemory> {
        let server = server.to_owned();
        self.call(move |conn| {
            conn.query_row(
                "SELECT confirmations, first_seen, signature FROM drift_state WHERE server = ?1",
                params![server],
                |row| {
                    Ok(DriftMemory {
                        confirmations: count(row, 0)?,
                        first_seen: opt_at(row, 1)?,
                        signature: row.get(2)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn save_drift(
        &self,
        server: &str,
        memory: &DriftMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, memory) = (server.to_owned(), memory.clone());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO drift_state (server, confirmations, first_seen, signature, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (server) DO UPDATE SET confirmations = ?2, first_seen = ?3, signature = ?4, updated_at = ?5",
                params![server, i64::from(memory.confirmations), memory.first_seen.map(stamp), memory.signature, stamp(now)],
            )
            .map(drop)
        })
    }

    fn record_attempt(
        &self,
        server: &str,
        kind: AttemptKind,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, i64> {
        let server = server.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sync_attempts (server, at, kind, outcome) VALUES (?1, ?2, ?3, ?4)",
                params![server, stamp(at), kind, SyncAttemptOutcome::Started],
            )?;
            let id = tx.last_insert_rowid();
            // Only the last hour counts against the budget; a day keeps `status`
            // informative, and each server's latest attempt tells the quota job when
            // Xray last restarted.
            tx.execute(
                "DELETE FROM sync_attempts WHERE at < ?1
                     AND id NOT IN (SELECT MAX(id) FROM sync_attempts GROUP BY server)",
                params![stamp(at - chrono::Duration::days(1))],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn finish_attempt(&self, id: i64, outcome: SyncAttemptOutcome) -> StoreFuture<'_, ()> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE sync_attempts SET outcome = ?2 WHERE id = ?1",
                params![id, outcome],
            )
            .map(drop)
        })
    }

    fn last_sync(&self, server: &str) -> StoreFuture<'_, Option<DateTime<Utc>>> {
        let server = server.to_owned();
        self.call(move |conn| {
            conn.query_row(
                "SELECT MAX(at) FROM sync_attempts WHERE server = ?1 AND outcome != ?2",
                params![server, SyncAttemptOutcome::Deferred],
                |row| opt_at(row, 0),
            )
        })
    }

    fn attempts_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<SyncAttempt>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT at, kind, outcome FROM sync_attempts WHERE server = ?1 AND at >= ?2 ORDER BY at, id",
            )?;
            let rows = statement.query_map(params![server, stamp(since)], |row| {
                Ok(SyncAttempt {
                    at: at(row, 0)?,
                    kind: row.get(1)?,
                    outcome: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }
}
