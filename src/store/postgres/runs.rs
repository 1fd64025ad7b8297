//! Job runs, the drift streak and sync attempts, and the audit log (append-only: the
//! schema's triggers refuse updates, deletes and truncation).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::PgStore;
use super::columns::{PgResult, at, count, get, opt_at};
use crate::model::{
    AttemptKind, AuditEntry, DriftMemory, JobKind, RunRecord, SyncAttempt, SyncAttemptOutcome,
    stamp,
};
use crate::store::{AuditLog, RUNS_KEPT_PER_JOB, RunLog, StoreFuture, SyncLog};

const RUN_COLUMNS: &str = "server, job, started_at, duration_ms, outcome, detail";

fn run_from(row: &Row) -> PgResult<RunRecord> {
    Ok(RunRecord {
        server: get(row, 0)?,
        job: get(row, 1)?,
        started_at: at(row, 2)?,
        duration_ms: get::<i64>(row, 3)?.max(0) as u64,
        outcome: get(row, 4)?,
        detail: get(row, 5)?,
    })
}

impl RunLog for PgStore {
    fn record(&self, run: &RunRecord) -> StoreFuture<'_, ()> {
        let run = run.clone();
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO job_runs (server, job, started_at, duration_ms, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&run.server, &run.job, &stamp(run.started_at), &(run.duration_ms.min(i64::MAX as u64) as i64), &run.outcome, &run.detail],
            )
            .await?;
            tx.execute(
                "DELETE FROM job_runs WHERE server = $1 AND job = $2 AND id <= (
                     SELECT id FROM job_runs WHERE server = $1 AND job = $2 ORDER BY id DESC LIMIT 1 OFFSET $3)",
                &[&run.server, &run.job, &(RUNS_KEPT_PER_JOB as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn last_runs(&self) -> StoreFuture<'_, Vec<RunRecord>> {
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM job_runs
                 WHERE id IN (SELECT MAX(id) FROM job_runs WHERE outcome != 'skipped' GROUP BY server, job)
                 ORDER BY server, job"
            );
            client.query(&sql, &[]).await?.iter().map(run_from).collect()
        })
    }

    fn recent(&self, server: &str, job: JobKind, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM job_runs WHERE server = $1 AND job = $2 ORDER BY id DESC LIMIT $3"
            );
            client
                .query(&sql, &[&server, &job, &(limit.min(i64::MAX as usize) as i64)])
                .await?
                .iter()
                .map(run_from)
                .collect()
        })
    }
}

impl SyncLog for PgStore {
    fn drift(&self, server: &str) -> StoreFuture<'_, DriftMemory> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT confirmations, first_seen, signature FROM drift_state WHERE server = $1",
                    &[&server],
                )
                .await?;
            let Some(row) = row else {
                return Ok(DriftMemory::default());
            };
            Ok(DriftMemory {
                confirmations: count(&row, 0)?,
                first_seen: opt_at(&row, 1)?,
                signature: get(&row, 2)?,
            })
        })
    }

    fn save_drift(
        &self,
        server: &str,
        memory: &DriftMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, memory) = (server.to_owned(), memory.clone());
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO drift_state (server, confirmations, first_seen, signature, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (server) DO UPDATE SET confirmations = $2, first_seen = $3, signature = $4, updated_at = $5",
                    &[&server, &i64::from(memory.confirmations), &memory.first_seen.map(stamp), &memory.signature, &stamp(now)],
                )
                .await?;
            Ok(())
        })
    }

    fn record_attempt(
        &self,
        server: &str,
        kind: AttemptKind,
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, i64> {
        let server = server.to_owned();
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_one(
                    "INSERT INTO sync_attempts (server, at, kind, outcome) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&server, &stamp(at), &kind, &SyncAttemptOutcome::Started],
                )
                .await?;
            let id: i64 = get(&row, 0)?;
            // Only the last hour counts against the budget; a day keeps `status`
            // informative, and each server's latest attempt tells the quota job when
            // Xray last restarted.
            tx.execute(
                "DELETE FROM sync_attempts WHERE at < $1
                     AND id NOT IN (SELECT MAX(id) FROM sync_attempts GROUP BY server)",
                &[&stamp(at - chrono::Duration::days(1))],
            )
            .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn finish_attempt(&self, id: i64, outcome: SyncAttemptOutcome) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE sync_attempts SET outcome = $2 WHERE id = $1",
                    &[&id, &outcome],
                )
                .await?;
            Ok(())
        })
    }

    fn last_sync(&self, server: &str) -> StoreFuture<'_, Option<DateTime<Utc>>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT MAX(at) FROM sync_attempts WHERE server = $1 AND outcome != $2",
                    &[&server, &SyncAttemptOutcome::Deferred],
                )
                .await?;
            opt_at(&row, 0)
        })
    }

    fn attempts_since(
        &self,
        server: &str,
        since: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<SyncAttempt>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT at, kind, outcome FROM sync_attempts WHERE server = $1 AND at >= $2 ORDER BY at, id",
                    &[&server, &stamp(since)],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(SyncAttempt {
                        at: at(row, 0)?,
                        kind: get(row, 1)?,
                        outcome: get(row, 2)?,
                    })
                })
                .collect()
        })
    }
}

const AUDIT_COLUMNS: &str = "at, server, action, target, result, detail";

fn entry_from(row: &Row) -> PgResult<AuditEntry> {
    Ok(AuditEntry {
        at: at(row, 0)?,
        server: get(row, 1)?,
        action: get(row, 2)?,
        target: get(row, 3)?,
        result: get(row, 4)?,
        detail: get(row, 5)?,
    })
}

impl AuditLog for PgStore {
    fn append(&self, entry: &AuditEntry) -> StoreFuture<'_, ()> {
        let entry = entry.clone();
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO audit_log (at, server, action, target, result, detail) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&stamp(entry.at), &entry.server, &entry.action, &entry.target, &entry.result, &entry.detail],
                )
                .await?;
            Ok(())
        })
    }

    fn recent(&self, server: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        let server = server.map(str::to_owned);
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE $1::TEXT IS NULL OR server = $1 ORDER BY id DESC LIMIT $2"
            );
            client
                .query(&sql, &[&server, &(limit.min(i64::MAX as usize) as i64)])
                .await?
                .iter()
                .map(entry_from)
                .collect()
        })
    }

    fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE at >= $1 AND at < $2 ORDER BY id"
            );
            client
                .query(&sql, &[&stamp(from), &stamp(to)])
                .await?
                .iter()
                .map(entry_from)
                .collect()
        })
    }
}
