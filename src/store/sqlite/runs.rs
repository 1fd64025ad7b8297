//! Job runs: one row per run, pruned per (server, job).

use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::columns::at;
use crate::model::{JobKind, RunRecord, stamp};
use crate::store::{PRUNE_BATCH, RUNS_KEPT_PER_JOB, RunLog, StoreFuture};

const COLUMNS: &str = "server, job, started_at, duration_ms, outcome, detail";

fn run_from(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        server: row.get(0)?,
        job: row.get(1)?,
        started_at: at(row, 2)?,
        duration_ms: row.get::<_, i64>(3)?.max(0) as u64,
        outcome: row.get(4)?,
        detail: row.get(5)?,
    })
}

impl RunLog for SqliteStore {
    fn record(&self, run: &RunRecord) -> StoreFuture<'_, ()> {
        let run = run.clone();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO job_runs (server, job, started_at, duration_ms, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run.server, run.job, stamp(run.started_at), run.duration_ms as i64, run.outcome, run.detail],
            )?;
            // Pruned in batches once `PRUNE_BATCH` runs past the cap, not one row per
            // run: deleting the oldest run on every insert dirtied two more pages of
            // every health check's commit.
            let past_batch: Option<i64> = tx
                .query_row(
                    "SELECT id FROM job_runs WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3",
                    params![run.server, run.job, (RUNS_KEPT_PER_JOB + PRUNE_BATCH - 1) as i64],
                    |row| row.get(0),
                )
                .optional()?;
            if past_batch.is_some() {
                tx.execute(
                    "DELETE FROM job_runs WHERE server = ?1 AND job = ?2 AND id <= (
                         SELECT id FROM job_runs WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                    params![run.server, run.job, RUNS_KEPT_PER_JOB as i64],
                )?;
            }
            tx.commit()
        })
    }

    fn last_runs(&self) -> StoreFuture<'_, Vec<RunRecord>> {
        self.call(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM job_runs
                 WHERE id IN (SELECT MAX(id) FROM job_runs WHERE outcome != 'skipped' GROUP BY server, job)
                 ORDER BY server, job"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map([], run_from)?;
            rows.collect()
        })
    }

    fn recent(&self, server: &str, job: JobKind, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM job_runs WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT ?3"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![server, job, limit as i64], run_from)?;
            rows.collect()
        })
    }
}
