//! The drift streak per server and the sync attempts of the budget window.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::columns::{at, count, opt_at};
use crate::model::{DriftMemory, stamp};
use crate::store::{StoreFuture, SyncLog};

impl SyncLog for SqliteStore {
    fn drift<'a>(&'a self, server: &'a str) -> StoreFuture<'a, DriftMemory> {
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

    fn save_drift<'a>(
        &'a self,
        server: &'a str,
        memory: &'a DriftMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()> {
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

    fn record_attempt<'a>(&'a self, server: &'a str, at: DateTime<Utc>) -> StoreFuture<'a, ()> {
        let server = server.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sync_attempts (server, at) VALUES (?1, ?2)",
                params![server, stamp(at)],
            )?;
            // Only the last hour matters; a day keeps `status` informative.
            tx.execute(
                "DELETE FROM sync_attempts WHERE at < ?1",
                params![stamp(at - chrono::Duration::days(1))],
            )?;
            tx.commit()
        })
    }

    fn attempts_since<'a>(
        &'a self,
        server: &'a str,
        since: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<DateTime<Utc>>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT at FROM sync_attempts WHERE server = ?1 AND at >= ?2 ORDER BY at",
            )?;
            let rows = statement.query_map(params![server, stamp(since)], |row| at(row, 0))?;
            rows.collect()
        })
    }
}
