//! Retention on PostgreSQL: the same batched deletes as SQLite's, after recording the
//! audit log's horizon (its trigger lets only older entries be deleted). Free space is
//! PostgreSQL's own business (autovacuum reuses it).

use super::PgStore;
use crate::model::stamp;
use crate::store::{Horizons, RetentionLog, StoreFuture, Trimmed};

/// Rows deleted per statement (other agents' writes wait at most one batch).
const BATCH: i64 = 5_000;

const TRIM: [&str; 4] = [
    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
    "DELETE FROM job_runs WHERE id IN (
        SELECT id FROM job_runs WHERE started_at < $1
            AND id NOT IN (SELECT MAX(id) FROM job_runs GROUP BY server, job)
        LIMIT $2)",
    "DELETE FROM findings WHERE id IN (
        SELECT id FROM findings WHERE resolved_at IS NOT NULL AND resolved_at < $1 LIMIT $2)",
    "DELETE FROM quota_history WHERE id IN (
        SELECT id FROM quota_history WHERE period_end < $1 LIMIT $2)",
];

impl RetentionLog for PgStore {
    fn trim(&self, horizons: &Horizons) -> StoreFuture<'_, Trimmed> {
        let horizons = horizons.clone();
        self.run(async move {
            let client = self.client().await?;
            let audit = stamp(horizons.audit);
            client
                .execute(
                    "INSERT INTO store_settings (name, value) VALUES ('audit_trim_before', $1)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[&audit],
                )
                .await?;
            let stamps = [
                audit,
                stamp(horizons.job_runs),
                stamp(horizons.findings),
                stamp(horizons.quota_history),
            ];
            let mut counts = [0usize; 4];
            for (index, sql) in TRIM.iter().enumerate() {
                loop {
                    let deleted = client.execute(*sql, &[&stamps[index], &BATCH]).await?;
                    counts[index] += deleted as usize;
                    if (deleted as i64) < BATCH {
                        break;
                    }
                }
            }
            Ok(Trimmed {
                audit: counts[0],
                job_runs: counts[1],
                findings: counts[2],
                quota_history: counts[3],
                pages_released: 0,
                pages_free: 0,
            })
        })
    }
}
