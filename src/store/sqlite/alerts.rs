//! The alert tables: lifecycle per fingerprint (`alert_state`), the outbox per sink
//! (`alert_outbox`, each notice's alert kept as JSON as it was when queued) and
//! `sink_health`.

use chrono::{DateTime, Utc};
use rusqlite::types::{FromSqlError, Type};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::columns::{at, count, opt_at};
use crate::model::alert::{Alert, AlertState, Notice, OutboxCounts, OutboxRow, SinkHealth};
use crate::model::stamp;
use crate::store::{AlertLog, StoreFuture};

fn state_from(row: &Row<'_>) -> rusqlite::Result<AlertState> {
    Ok(AlertState {
        alert: Alert {
            fingerprint: row.get(0)?,
            server: row.get(1)?,
            kind: row.get(2)?,
            subject: row.get(3)?,
            status: row.get(4)?,
            severity: row.get(5)?,
            summary: row.get(6)?,
            details: row.get(7)?,
            started_at: at(row, 8)?,
            ended_at: opt_at(row, 9)?,
        },
        last_notified_at: opt_at(row, 10)?,
        last_notified_severity: row.get(11)?,
        max_notified_severity: row.get(12)?,
        held: row.get(13)?,
    })
}

fn outbox_row_from(row: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    let alert: String = row.get(3)?;
    let alert = serde_json::from_str(&alert).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            Type::Text,
            FromSqlError::Other(error.into()).into(),
        )
    })?;
    Ok(OutboxRow {
        id: row.get(0)?,
        sink: row.get(1)?,
        reason: row.get(2)?,
        alert,
        created_at: at(row, 4)?,
        next_attempt_at: at(row, 5)?,
        attempts: count(row, 6)?,
        last_error: row.get(7)?,
    })
}

fn upsert_state(tx: &Transaction<'_>, state: &AlertState, now: &str) -> rusqlite::Result<()> {
    let a = &state.alert;
    tx.execute(
        "INSERT INTO alert_state (fingerprint, server, kind, subject, status, severity, summary, details,
             started_at, ended_at, last_notified_at, last_notified_severity, max_notified_severity, held, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (fingerprint) DO UPDATE SET server = ?2, kind = ?3, subject = ?4, status = ?5,
             severity = ?6, summary = ?7, details = ?8, started_at = ?9, ended_at = ?10,
             last_notified_at = ?11, last_notified_severity = ?12, max_notified_severity = ?13,
             held = ?14, updated_at = ?15",
        params![
            a.fingerprint,
            a.server,
            a.kind,
            a.subject,
            a.status,
            a.severity,
            a.summary,
            a.details,
            stamp(a.started_at),
            a.ended_at.map(stamp),
            state.last_notified_at.map(stamp),
            state.last_notified_severity,
            state.max_notified_severity,
            state.held,
            now
        ],
    )
    .map(drop)
}

fn insert_notice(
    tx: &Transaction<'_>,
    notice: &Notice,
    payload: &str,
    now: &str,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO alert_outbox (sink, server, fingerprint, reason, alert, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            notice.sink,
            notice.alert.server,
            notice.alert.fingerprint,
            notice.reason,
            payload,
            now,
            stamp(notice.due_at)
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

impl SqliteStore {
    /// Apply `update` to each outbox row of `ids`, in one transaction.
    fn each_outbox_row(
        &self,
        ids: &[i64],
        update: impl Fn(&Transaction<'_>, i64) -> rusqlite::Result<usize> + Send + 'static,
    ) -> StoreFuture<'static, ()> {
        let ids = ids.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for id in ids {
                update(&tx, id)?;
            }
            tx.commit()
        })
    }
}

impl AlertLog for SqliteStore {
    fn states(&self, server: &str) -> StoreFuture<'_, Vec<AlertState>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT fingerprint, server, kind, subject, status, severity, summary, details, started_at,
                        ended_at, last_notified_at, last_notified_severity, max_notified_severity, held
                 FROM alert_state WHERE server = ?1 ORDER BY fingerprint",
            )?;
            let rows = statement.query_map(params![server], state_from)?;
            rows.collect()
        })
    }

    fn save_plan(
        &self,
        states: &[AlertState],
        notices: &[Notice],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<i64>> {
        let (states, notices) = (states.to_vec(), notices.to_vec());
        self.call(move |conn| {
            let now = stamp(now);
            let tx = conn.transaction()?;
            for state in &states {
                upsert_state(&tx, state, &now)?;
            }
            let mut ids = Vec::with_capacity(notices.len());
            for notice in &notices {
                // Plain strings and numbers only: serializing cannot fail.
                let payload = serde_json::to_string(&notice.alert).unwrap_or_default();
                ids.push(insert_notice(&tx, notice, &payload, &now)?);
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    fn pending(&self, sink: &str) -> StoreFuture<'_, Vec<OutboxRow>> {
        let sink = sink.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT id, sink, reason, alert, created_at, next_attempt_at, attempts, last_error
                 FROM alert_outbox WHERE sink = ?1 AND delivered_at IS NULL AND dropped_at IS NULL
                 ORDER BY id",
            )?;
            let rows = statement.query_map(params![sink], outbox_row_from)?;
            rows.collect()
        })
    }

    fn mark_delivered(&self, ids: &[i64], now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let now = stamp(now);
        self.each_outbox_row(ids, move |tx, id| {
            tx.prepare_cached(
                "UPDATE alert_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            )?
            .execute(params![id, now])
        })
    }

    fn mark_retry(
        &self,
        ids: &[i64],
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreFuture<'_, ()> {
        let (next, error) = (stamp(next_attempt_at), error.to_owned());
        self.each_outbox_row(ids, move |tx, id| {
            tx.prepare_cached(
                "UPDATE alert_outbox SET next_attempt_at = ?2, attempts = attempts + 1, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, next, error])
        })
    }

    fn mark_dropped(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        reason: &str,
        error: Option<&str>,
    ) -> StoreFuture<'_, ()> {
        let (now, reason, error) = (stamp(now), reason.to_owned(), error.map(str::to_owned));
        self.each_outbox_row(ids, move |tx, id| {
            tx.prepare_cached(
                "UPDATE alert_outbox SET dropped_at = ?2, drop_reason = ?3, last_error = COALESCE(?4, last_error)
                 WHERE id = ?1",
            )?
            .execute(params![id, now, reason, error])
        })
    }

    fn prune(&self, before: DateTime<Utc>) -> StoreFuture<'_, usize> {
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM alert_outbox WHERE COALESCE(delivered_at, dropped_at) < ?1",
                params![stamp(before)],
            )
        })
    }

    fn oldest_pending(&self) -> StoreFuture<'_, Option<DateTime<Utc>>> {
        self.call(|conn| {
            conn.query_row(
                "SELECT MIN(created_at) FROM alert_outbox WHERE delivered_at IS NULL AND dropped_at IS NULL",
                [],
                |row| opt_at(row, 0),
            )
        })
    }

    fn counts(&self) -> StoreFuture<'_, Vec<OutboxCounts>> {
        self.call(|conn| {
            let mut statement = conn.prepare(
                "SELECT sink,
                        SUM(delivered_at IS NULL AND dropped_at IS NULL),
                        SUM(delivered_at IS NOT NULL),
                        SUM(dropped_at IS NOT NULL)
                 FROM alert_outbox GROUP BY sink ORDER BY sink",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(OutboxCounts {
                    sink: row.get(0)?,
                    pending: row.get::<_, i64>(1)?.max(0) as u64,
                    delivered: row.get::<_, i64>(2)?.max(0) as u64,
                    dropped: row.get::<_, i64>(3)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn sink_health(&self, sink: &str) -> StoreFuture<'_, SinkHealth> {
        let sink = sink.to_owned();
        self.call(move |conn| {
            let found = conn
                .query_row(
                    "SELECT failing, consecutive_failures, last_error, last_attempt_at, last_success_at
                     FROM sink_health WHERE sink = ?1",
                    params![sink],
                    |row| {
                        Ok(SinkHealth {
                            sink: sink.clone(),
                            failing: row.get(0)?,
                            consecutive_failures: count(row, 1)?,
                            last_error: row.get(2)?,
                            last_attempt_at: opt_at(row, 3)?,
                            last_success_at: opt_at(row, 4)?,
                        })
                    },
                )
                .optional()?;
            Ok(found.unwrap_or_else(|| SinkHealth {
                sink,
                ..SinkHealth::default()
            }))
        })
    }

    fn save_sink_health(&self, health: &SinkHealth) -> StoreFuture<'_, ()> {
        let health = health.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO sink_health (sink, failing, consecutive_failures, last_error, last_attempt_at, last_success_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sink) DO UPDATE SET failing = ?2, consecutive_failures = ?3, last_error = ?4,
                     last_attempt_at = ?5, last_success_at = ?6",
                params![
                    health.sink,
                    health.failing,
                    i64::from(health.consecutive_failures),
                    health.last_error,
                    health.last_attempt_at.map(stamp),
                    health.last_success_at.map(stamp)
                ],
            )
            .map(drop)
        })
    }
}
