//! config_sync's memory: the drift streak per server and the sync attempts of the window.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{DriftMemory, Store, StoreError, parse_opt_ts, parse_ts, ts};

impl Store {
    pub fn drift(&self, server: &str) -> Result<DriftMemory, StoreError> {
        let row: Option<(i64, Option<String>, String)> = self.with(|conn| {
            conn.query_row(
                "SELECT confirmations, first_seen, signature FROM drift_state WHERE server = ?1",
                params![server],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        match row {
            None => Ok(DriftMemory::default()),
            Some((confirmations, first_seen, signature)) => Ok(DriftMemory {
                confirmations: confirmations.clamp(0, u32::MAX as i64) as u32,
                first_seen: parse_opt_ts(&self.path, "drift_state.first_seen", first_seen)?,
                signature,
            }),
        }
    }

    pub fn save_drift(
        &self,
        server: &str,
        memory: &DriftMemory,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO drift_state (server, confirmations, first_seen, signature, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (server) DO UPDATE SET confirmations = ?2, first_seen = ?3, signature = ?4, updated_at = ?5",
                params![server, memory.confirmations as i64, memory.first_seen.map(ts), memory.signature, ts(now)],
            )
            .map(|_| ())
        })
    }

    /// Record a sync attempt. Call it before the POST, so a crash mid-sync still
    /// spends budget.
    pub fn record_sync_attempt(&self, server: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sync_attempts (server, at) VALUES (?1, ?2)",
                params![server, ts(at)],
            )?;
            // Only the last hour matters; a day keeps `status` informative.
            tx.execute(
                "DELETE FROM sync_attempts WHERE at < ?1",
                params![ts(at - chrono::Duration::days(1))],
            )?;
            tx.commit()
        })
    }

    /// Sync attempts at or after `since`, oldest first.
    pub fn sync_attempts_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        let rows: Vec<(String,)> = self.tuples(
            "SELECT at FROM sync_attempts WHERE server = ?1 AND at >= ?2 ORDER BY at",
            params![server, ts(since)],
        )?;
        rows.iter()
            .map(|(t,)| parse_ts(&self.path, "sync_attempts.at", t))
            .collect()
    }
}
