//! The alert tables: lifecycle per fingerprint, the outbox per sink (each notice's alert
//! kept as JSON as it was when queued) and sink health.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PgStore;
use super::columns::{PgFail, PgResult, at, count, flag, get, int, opt_at};
use crate::model::alert::{Alert, AlertState, Notice, OutboxCounts, OutboxRow, SinkHealth};
use crate::model::stamp;
use crate::store::{AlertLog, StoreFuture};

fn state_from(row: &Row) -> PgResult<AlertState> {
    Ok(AlertState {
        alert: Alert {
            fingerprint: get(row, 0)?,
            server: get(row, 1)?,
            kind: get(row, 2)?,
            subject: get(row, 3)?,
            status: get(row, 4)?,
            severity: get(row, 5)?,
            summary: get(row, 6)?,
            details: get(row, 7)?,
            started_at: at(row, 8)?,
            ended_at: opt_at(row, 9)?,
        },
        last_notified_at: opt_at(row, 10)?,
        last_notified_severity: get(row, 11)?,
        max_notified_severity: get(row, 12)?,
        held: flag(row, 13)?,
    })
}

fn outbox_row_from(row: &Row) -> PgResult<OutboxRow> {
    let alert: String = get(row, 3)?;
    let alert = serde_json::from_str(&alert).map_err(|error| PgFail::Corrupt {
        column: 3,
        detail: error.to_string(),
    })?;
    Ok(OutboxRow {
        id: get(row, 0)?,
        sink: get(row, 1)?,
        reason: get(row, 2)?,
        alert,
        created_at: at(row, 4)?,
        next_attempt_at: at(row, 5)?,
        attempts: count(row, 6)?,
        last_error: get(row, 7)?,
    })
}

async fn upsert_state(tx: &Transaction<'_>, state: &AlertState, now: &str) -> PgResult<()> {
    let a = &state.alert;
    tx.execute(
        "INSERT INTO alert_state (fingerprint, server, kind, subject, status, severity, summary, details,
             started_at, ended_at, last_notified_at, last_notified_severity, max_notified_severity, held, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (fingerprint) DO UPDATE SET server = $2, kind = $3, subject = $4, status = $5,
             severity = $6, summary = $7, details = $8, started_at = $9, ended_at = $10,
             last_notified_at = $11, last_notified_severity = $12, max_notified_severity = $13,
             held = $14, updated_at = $15",
        &[
            &a.fingerprint,
            &a.server,
            &a.kind,
            &a.subject,
            &a.status,
            &a.severity,
            &a.summary,
            &a.details,
            &stamp(a.started_at),
            &a.ended_at.map(stamp),
            &state.last_notified_at.map(stamp),
            &state.last_notified_severity,
            &state.max_notified_severity,
            &int(state.held),
            &now,
        ],
    )
    .await?;
    Ok(())
}

impl AlertLog for PgStore {
    fn states(&self, server: &str) -> StoreFuture<'_, Vec<AlertState>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT fingerprint, server, kind, subject, status, severity, summary, details, started_at,
                            ended_at, last_notified_at, last_notified_severity, max_notified_severity, held
                     FROM alert_state WHERE server = $1 ORDER BY fingerprint",
                    &[&server],
                )
                .await?
                .iter()
                .map(state_from)
                .collect()
        })
    }

    fn save_plan(
        &self,
        states: &[AlertState],
        notices: &[Notice],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<i64>> {
        let (states, notices) = (states.to_vec(), notices.to_vec());
        self.run(async move {
            let now = stamp(now);
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for state in &states {
                upsert_state(&tx, state, &now).await?;
            }
            let mut ids = Vec::with_capacity(notices.len());
            for notice in &notices {
                // Plain strings and numbers only: serializing cannot fail.
                let payload = serde_json::to_string(&notice.alert).unwrap_or_default();
                let row = tx
                    .query_one(
                        "INSERT INTO alert_outbox (sink, server, fingerprint, reason, alert, created_at, next_attempt_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                        &[
                            &notice.sink,
                            &notice.alert.server,
                            &notice.alert.fingerprint,
                            &notice.reason,
                            &payload,
                            &now,
                            &stamp(notice.due_at),
                        ],
                    )
                    .await?;
                ids.push(get(&row, 0)?);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    fn pending(&self, sink: &str) -> StoreFuture<'_, Vec<OutboxRow>> {
        let sink = sink.to_owned();
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT id, sink, reason, alert, created_at, next_attempt_at, attempts, last_error
                     FROM alert_outbox WHERE sink = $1 AND delivered_at IS NULL AND dropped_at IS NULL
                     ORDER BY id",
                    &[&sink],
                )
                .await?
                .iter()
                .map(outbox_row_from)
                .collect()
        })
    }

    fn mark_delivered(&self, ids: &[i64], now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let ids = ids.to_vec();
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE alert_outbox SET delivered_at = $2, attempts = attempts + 1 WHERE id = ANY($1)",
                    &[&ids, &stamp(now)],
                )
                .await?;
            Ok(())
        })
    }

    fn mark_retry(
        &self,
        ids: &[i64],
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreFuture<'_, ()> {
        let (ids, error) = (ids.to_vec(), error.to_owned());
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE alert_outbox SET next_attempt_at = $2, attempts = attempts + 1, last_error = $3 WHERE id = ANY($1)",
                    &[&ids, &stamp(next_attempt_at), &error],
                )
                .await?;
            Ok(())
        })
    }

    fn mark_dropped(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        reason: &str,
        error: Option<&str>,
    ) -> StoreFuture<'_, ()> {
        let (ids, reason, error) = (ids.to_vec(), reason.to_owned(), error.map(str::to_owned));
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE alert_outbox SET dropped_at = $2, drop_reason = $3, last_error = COALESCE($4, last_error)
                     WHERE id = ANY($1)",
                    &[&ids, &stamp(now), &reason, &error],
                )
                .await?;
            Ok(())
        })
    }

    fn prune(&self, before: DateTime<Utc>) -> StoreFuture<'_, usize> {
        self.run(async move {
            let client = self.client().await?;
            let removed = client
                .execute(
                    "DELETE FROM alert_outbox WHERE COALESCE(delivered_at, dropped_at) < $1",
                    &[&stamp(before)],
                )
                .await?;
            Ok(removed as usize)
        })
    }

    fn oldest_pending(&self) -> StoreFuture<'_, Option<DateTime<Utc>>> {
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT MIN(created_at) FROM alert_outbox WHERE delivered_at IS NULL AND dropped_at IS NULL",
                    &[],
                )
                .await?;
            opt_at(&row, 0)
        })
    }

    fn counts(&self) -> StoreFuture<'_, Vec<OutboxCounts>> {
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT sink,
                            COUNT(*) FILTER (WHERE delivered_at IS NULL AND dropped_at IS NULL),
                            COUNT(*) FILTER (WHERE delivered_at IS NOT NULL),
                            COUNT(*) FILTER (WHERE dropped_at IS NOT NULL)
                     FROM alert_outbox GROUP BY sink ORDER BY sink",
                    &[],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(OutboxCounts {
                        sink: get(row, 0)?,
                        pending: get::<i64>(row, 1)?.max(0) as u64,
                        delivered: get::<i64>(row, 2)?.max(0) as u64,
                        dropped: get::<i64>(row, 3)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn sink_health(&self, sink: &str) -> StoreFuture<'_, SinkHealth> {
        let sink = sink.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT failing, consecutive_failures, last_error, last_attempt_at, last_success_at
                     FROM sink_health WHERE sink = $1",
                    &[&sink],
                )
                .await?;
            let Some(row) = row else {
                return Ok(SinkHealth {
                    sink,
                    ..SinkHealth::default()
                });
            };
            Ok(SinkHealth {
                sink: sink.clone(),
                failing: flag(&row, 0)?,
                consecutive_failures: count(&row, 1)?,
                last_error: get(&row, 2)?,
                last_attempt_at: opt_at(&row, 3)?,
                last_success_at: opt_at(&row, 4)?,
            })
        })
    }

    fn save_sink_health(&self, health: &SinkHealth) -> StoreFuture<'_, ()> {
        let health = health.clone();
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO sink_health (sink, failing, consecutive_failures, last_error, last_attempt_at, last_success_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (sink) DO UPDATE SET failing = $2, consecutive_failures = $3, last_error = $4,
                         last_attempt_at = $5, last_success_at = $6",
                    &[
                        &health.sink,
                        &int(health.failing),
                        &i64::from(health.consecutive_failures),
                        &health.last_error,
                        &health.last_attempt_at.map(stamp),
                        &health.last_success_at.map(stamp),
                    ],
                )
                .await?;
            Ok(())
        })
    }
}
