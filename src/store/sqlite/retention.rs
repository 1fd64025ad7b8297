//! Retention: batched deletes past the horizons, the audit log's horizon in
//! `store_settings` (its trigger lets only older entries be deleted), and free pages.

use rusqlite::params;

use super::SqliteStore;
use crate::model::stamp;
use crate::store::{Horizons, RetentionLog, StoreError, StoreFuture, Trimmed};

/// Rows deleted per transaction: the connection is shared, so a trim of a year of
/// history must not hold it for long.
const BATCH: usize = 5_000;

/// Pages handed back per maintenance at most (`PRAGMA incremental_vacuum`).
const RELEASE_PAGES: i64 = 65_536;

const TRIM_AUDIT: &str =
    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ?1 LIMIT ?2)";
const TRIM_RUNS: &str = "DELETE FROM job_runs WHERE id IN (
    SELECT id FROM job_runs WHERE started_at < ?1
        AND id NOT IN (SELECT MAX(id) FROM job_runs GROUP BY server, job)
    LIMIT ?2)";
const TRIM_FINDINGS: &str = "DELETE FROM findings WHERE id IN (
    SELECT id FROM findings WHERE resolved_at IS NOT NULL AND resolved_at < ?1 LIMIT ?2)";
const TRIM_HISTORY: &str = "DELETE FROM quota_history WHERE id IN (
    SELECT id FROM quota_history WHERE period_end < ?1 LIMIT ?2)";

impl SqliteStore {
    /// Run `sql` (with the horizon and the batch size) until it deletes less than a batch.
    async fn delete_in_batches(
        &self,
        sql: &'static str,
        horizon: String,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let horizon = horizon.clone();
            let deleted = self
                .call(move |conn| conn.execute(sql, params![horizon, BATCH as i64]))
                .await?;
            total += deleted;
            if deleted < BATCH {
                return Ok(total);
            }
        }
    }
}

impl RetentionLog for SqliteStore {
    fn trim(&self, horizons: &Horizons) -> StoreFuture<'_, Trimmed> {
        let horizons = horizons.clone();
        Box::pin(async move {
            let audit = stamp(horizons.audit);
            let recorded = audit.clone();
            self.call(move |conn| {
                conn.execute(
                    "INSERT INTO store_settings (name, value) VALUES ('audit_trim_before', ?1)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![recorded],
                )
                .map(drop)
            })
            .await?;
            let mut trimmed = Trimmed {
                audit: self.delete_in_batches(TRIM_AUDIT, audit).await?,
                ..Trimmed::default()
            };
            trimmed.job_runs = self
                .delete_in_batches(TRIM_RUNS, stamp(horizons.job_runs))
                .await?;
            trimmed.findings = self
                .delete_in_batches(TRIM_FINDINGS, stamp(horizons.findings))
                .await?;
            trimmed.quota_history = self
                .delete_in_batches(TRIM_HISTORY, stamp(horizons.quota_history))
                .await?;
            let (released, free) = self.call(release_pages).await?;
            trimmed.pages_released = released;
            trimmed.pages_free = free;
            Ok(trimmed)
        })
    }
}

/// Hand free pages back to the file system where the database was created with
/// `auto_vacuum = INCREMENTAL` (databases created by this build); elsewhere SQLite
/// reuses them for new rows, so the file stops growing once retention holds.
fn release_pages(conn: &mut rusqlite::Connection) -> rusqlite::Result<(u64, u64)> {
    let free = |conn: &rusqlite::Connection| -> rusqlite::Result<u64> {
        conn.pragma_query_value(None, "freelist_count", |row| row.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
    };
    let before = free(conn)?;
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
    if mode == 2 && before > 0 {
        // incremental_vacuum returns no rows; query it through a statement.
        let mut statement = conn.prepare(&format!("PRAGMA incremental_vacuum({RELEASE_PAGES})"))?;
        let mut rows = statement.query([])?;
        while rows.next()?.is_some() {}
    }
    let after = free(conn)?;
    Ok((before.saturating_sub(after), after))
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
