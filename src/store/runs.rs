//! Job runs as recorded: one row per run, pruned per (server, job).

use super::{RUNS_KEPT_PER_JOB, RunOutcome, RunRecord, Store, StoreError, parse_ts, ts};
use crate::config::JobKind;
use rusqlite::params;

impl Store {
    pub fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO job_runs (server, job, started_at, duration_ms, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run.server, run.job, ts(run.started_at), run.duration_ms as i64, run.outcome.as_str(), run.detail],
            )?;
            tx.execute(
                "DELETE FROM job_runs WHERE server = ?1 AND job = ?2 AND id <= (
                     SELECT id FROM job_runs WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                params![run.server, run.job, RUNS_KEPT_PER_JOB],
            )?;
            tx.commit()
        })
    }

    /// The latest run of each (server, job), skipped ticks excluded.
    pub fn last_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.query_runs(
            "SELECT server, job, started_at, duration_ms, outcome, detail FROM job_runs
             WHERE id IN (SELECT MAX(id) FROM job_runs WHERE outcome != 'skipped' GROUP BY server, job)
             ORDER BY server, job",
            &[],
        )
    }

    /// The latest `limit` runs of one (server, job), newest first.
    pub fn recent_runs(
        &self,
        server: &str,
        job: JobKind,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.query_runs(
            "SELECT server, job, started_at, duration_ms, outcome, detail FROM job_runs
             WHERE server = ?1 AND job = ?2 ORDER BY id DESC LIMIT ?3",
            &[&server, &job.as_str(), &(limit as i64)],
        )
    }

    fn query_runs(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows: Vec<(String, String, String, i64, String, String)> = self.tuples(sql, args)?;
        rows.into_iter()
            .map(|(server, job, started, duration_ms, outcome, detail)| {
                Ok(RunRecord {
                    server,
                    job,
                    started_at: parse_ts(&self.path, "job_runs.started_at", &started)?,
                    duration_ms: duration_ms.max(0) as u64,
                    outcome: RunOutcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt {
                        path: self.path.clone(),
                        what: "job_runs.outcome",
                        value: outcome.clone(),
                    })?,
                    detail,
                })
            })
            .collect()
    }
}
