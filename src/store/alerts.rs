//! The alert tables: lifecycle per fingerprint (`alert_state`), the outbox per sink
//! (`alert_outbox`) and `sink_health`. Typed functions for the alert pipeline; the
//! decisions themselves live in `crate::alert`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{Store, StoreError, parse_opt_ts, parse_severity, parse_ts, ts};
use crate::alert::model::{Alert, AlertState, AlertStatus, Notice, OutboxRow, Reason};
use crate::config::Severity;

/// Delivered and dropped notices are kept this long (for `status` and debugging).
pub const OUTBOX_KEPT_DAYS: i64 = 7;

/// What keywarden knows of one sink's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SinkHealth {
    pub sink: String,
    /// `notifications_failing` was raised for it and has not resolved.
    pub failing: bool,
    pub consecutive_failures: u32,
    /// The last error (never holds a secret: sinks strip URLs and credentials).
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Outbox totals of one sink.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OutboxCounts {
    pub sink: String,
    pub pending: u64,
    pub delivered: u64,
    pub dropped: u64,
}

fn opt_severity(text: Option<String>) -> Option<Severity> {
    text.as_deref().map(parse_severity)
}

type StateRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

type OutboxSqlRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
);

impl Store {
    /// Alert states of one server (fingerprints `server/...`).
    pub fn alert_states(&self, server: &str) -> Result<Vec<AlertState>, StoreError> {
        let rows: Vec<StateRow> = self.tuples("SELECT fingerprint, server, kind, subject, status, severity, summary, details, started_at,
                        ended_at, last_notified_at, last_notified_severity, max_notified_severity, held
                 FROM alert_state WHERE server = ?1 ORDER BY fingerprint", params![server])?;
        rows.into_iter()
            .map(|row| self.state_from_row(row))
            .collect()
    }

    fn state_from_row(&self, row: StateRow) -> Result<AlertState, StoreError> {
        let (fingerprint, server, kind, subject, status, severity, summary, details, started) = (
            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8,
        );
        let status = match status.as_str() {
            "firing" => AlertStatus::Firing,
            "resolved" => AlertStatus::Resolved,
            _ => {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    what: "alert_state.status",
                    value: status,
                });
            }
        };
        Ok(AlertState {
            alert: Alert {
                fingerprint,
                server,
                kind,
                subject,
                severity: parse_severity(&severity),
                status,
                summary,
                details,
                started_at: parse_ts(&self.path, "alert_state.started_at", &started)?,
                ended_at: parse_opt_ts(&self.path, "alert_state.ended_at", row.9)?,
            },
            last_notified_at: parse_opt_ts(&self.path, "alert_state.last_notified_at", row.10)?,
            last_notified_severity: opt_severity(row.11),
            max_notified_severity: opt_severity(row.12),
            held: row.13,
        })
    }

    /// Store an engine plan in one transaction: the states, then the notices as outbox
    /// rows (written before anything is sent). Returns the new rows' ids.
    pub fn save_alert_plan(
        &self,
        states: &[AlertState],
        notices: &[Notice],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let payloads = payloads(notices);
        self.with(|conn| {
            let tx = conn.transaction()?;
            for state in states {
                upsert_state(&tx, state, now)?;
            }
            let ids = insert_notices(&tx, notices, &payloads, now)?;
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Undelivered, not dropped notices of `sink`, oldest first.
    pub fn pending_outbox(&self, sink: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let rows: Vec<OutboxSqlRow> = self.tuples(
            "SELECT id, sink, reason, alert, created_at, next_attempt_at, attempts, last_error
                 FROM alert_outbox WHERE sink = ?1 AND delivered_at IS NULL AND dropped_at IS NULL
                 ORDER BY id",
            params![sink],
        )?;
        rows.into_iter()
            .map(
                |(id, sink, reason, alert, created, next, attempts, last_error)| {
                    let corrupt = |what, value: &str| StoreError::Corrupt {
                        path: self.path.clone(),
                        what,
                        value: value.to_string(),
                    };
                    Ok(OutboxRow {
                        id,
                        sink,
                        reason: Reason::parse(&reason)
                            .ok_or_else(|| corrupt("alert_outbox.reason", &reason))?,
                        alert: serde_json::from_str(&alert)
                            .map_err(|_| corrupt("alert_outbox.alert", &alert))?,
                        created_at: parse_ts(&self.path, "alert_outbox.created_at", &created)?,
                        next_attempt_at: parse_ts(
                            &self.path,
                            "alert_outbox.next_attempt_at",
                            &next,
                        )?,
                        attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                        last_error,
                    })
                },
            )
            .collect()
    }

    /// The rows went out.
    pub fn mark_delivered(&self, ids: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.update_rows(
            ids,
            "UPDATE alert_outbox SET delivered_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            &ts(now),
            None,
        )
    }

    /// A transient failure: try again at `next_attempt_at`.
    pub fn mark_retry(
        &self,
        ids: &[i64],
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update_rows(
            ids,
            "UPDATE alert_outbox SET next_attempt_at = ?2, attempts = attempts + 1, last_error = ?3 WHERE id = ?1",
            &ts(next_attempt_at),
            Some(error),
        )
    }

    /// Give up on the rows (`reason`: max_age, permanent failure, test).
    pub fn mark_dropped(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        reason: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.with(|conn| {
            let tx = conn.transaction()?;
            for id in ids {
                tx.execute(
                    "UPDATE alert_outbox SET dropped_at = ?2, drop_reason = ?3, last_error = COALESCE(?4, last_error)
                     WHERE id = ?1",
                    params![id, ts(now), reason, error],
                )?;
            }
            tx.commit()
        })
    }

    fn update_rows(
        &self,
        ids: &[i64],
        sql: &str,
        at: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            for id in ids {
                match error {
                    Some(error) => tx.execute(sql, params![id, at, error])?,
                    None => tx.execute(sql, params![id, at])?,
                };
            }
            tx.commit()
        })
    }

    /// Forget delivered and dropped notices older than `before`.
    pub fn prune_outbox(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM alert_outbox WHERE COALESCE(delivered_at, dropped_at) < ?1",
                params![ts(before)],
            )
        })
    }

    /// When the oldest notice still waiting for delivery was queued.
    pub fn oldest_pending_outbox(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let oldest: Option<String> = self.with(|conn| {
            conn.query_row(
                "SELECT MIN(created_at) FROM alert_outbox WHERE delivered_at IS NULL AND dropped_at IS NULL",
                [],
                |r| r.get(0),
            )
        })?;
        oldest
            .map(|t| parse_ts(self.path(), "alert_outbox.created_at", &t))
            .transpose()
    }

    /// Pending, delivered and dropped notices per sink.
    pub fn outbox_counts(&self) -> Result<Vec<OutboxCounts>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT sink,
                        SUM(delivered_at IS NULL AND dropped_at IS NULL),
                        SUM(delivered_at IS NOT NULL),
                        SUM(dropped_at IS NOT NULL)
                 FROM alert_outbox GROUP BY sink ORDER BY sink",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(OutboxCounts {
                    sink: r.get(0)?,
                    pending: r.get::<_, i64>(1)?.max(0) as u64,
                    delivered: r.get::<_, i64>(2)?.max(0) as u64,
                    dropped: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }

    pub fn sink_health(&self, sink: &str) -> Result<SinkHealth, StoreError> {
        type Row = (bool, i64, Option<String>, Option<String>, Option<String>);
        let row: Option<Row> = self.with(|conn| {
            conn.query_row(
                "SELECT failing, consecutive_failures, last_error, last_attempt_at, last_success_at
                 FROM sink_health WHERE sink = ?1",
                params![sink],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
        })?;
        let Some((failing, failures, last_error, attempt, success)) = row else {
            return Ok(SinkHealth {
                sink: sink.to_string(),
                ..SinkHealth::default()
            });
        };
        Ok(SinkHealth {
            sink: sink.to_string(),
            failing,
            consecutive_failures: failures.clamp(0, u32::MAX as i64) as u32,
            last_error,
            last_attempt_at: parse_opt_ts(&self.path, "sink_health.last_attempt_at", attempt)?,
            last_success_at: parse_opt_ts(&self.path, "sink_health.last_success_at", success)?,
        })
    }

    pub fn save_sink_health(&self, health: &SinkHealth) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO sink_health (sink, failing, consecutive_failures, last_error, last_attempt_at, last_success_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sink) DO UPDATE SET failing = ?2, consecutive_failures = ?3, last_error = ?4,
                     last_attempt_at = ?5, last_success_at = ?6",
                params![
                    health.sink,
                    health.failing,
                    health.consecutive_failures as i64,
                    health.last_error,
                    health.last_attempt_at.map(ts),
                    health.last_success_at.map(ts)
                ],
            )
            .map(|_| ())
        })
    }
}

fn payloads(notices: &[Notice]) -> Vec<String> {
    notices
        .iter()
        // Plain strings and numbers only: serializing cannot fail.
        .map(|n| serde_json::to_string(&n.alert).unwrap_or_default())
        .collect()
}

fn upsert_state(
    tx: &Transaction<'_>,
    state: &AlertState,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
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
            a.status.as_str(),
            a.severity.as_str(),
            a.summary,
            a.details,
            ts(a.started_at),
            a.ended_at.map(ts),
            state.last_notified_at.map(ts),
            state.last_notified_severity.map(Severity::as_str),
            state.max_notified_severity.map(Severity::as_str),
            state.held,
            ts(now)
        ],
    )?;
    Ok(())
}

fn insert_notices(
    tx: &Transaction<'_>,
    notices: &[Notice],
    payloads: &[String],
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for (notice, payload) in notices.iter().zip(payloads) {
        tx.execute(
            "INSERT INTO alert_outbox (sink, server, fingerprint, reason, alert, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                notice.sink,
                notice.alert.server,
                notice.alert.fingerprint,
                notice.reason.as_str(),
                payload,
                ts(now),
                ts(notice.due_at)
            ],
        )?;
        ids.push(tx.last_insert_rowid());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::alert::model::Facts;

    fn at(second: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap() + chrono::Duration::seconds(second)
    }

    fn state(server: &str) -> AlertState {
        let facts = Facts {
            fingerprint: format!("{server}/config_drift/"),
            server: server.into(),
            kind: "config_drift".into(),
            subject: String::new(),
            severity: Severity::Warning,
            summary: "drift".into(),
            details: "Seen: a\nDone: b\nNext: c".into(),
        };
        let mut state = AlertState::firing(&facts, at(0));
        state.last_notified_at = Some(at(1));
        state.last_notified_severity = Some(Severity::Warning);
        state.max_notified_severity = Some(Severity::Critical);
        state.held = true;
        state
    }

    #[test]
    fn states_and_outbox_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = state("fra-1");
        let notice = Notice {
            sink: "mail".into(),
            reason: Reason::New,
            alert: s.alert.clone(),
            due_at: at(10),
        };
        let ids = store
            .save_alert_plan(
                &[s.clone(), state("ams-1")],
                &[notice.clone(), notice],
                at(0),
            )
            .unwrap();
        assert_eq!(ids.len(), 2);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.alert_states("fra-1").unwrap(), vec![s.clone()]);
        let pending = store.pending_outbox("mail").unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].alert, s.alert);
        assert_eq!(pending[0].next_attempt_at, at(10));
        assert_eq!(pending[0].attempts, 0);
        assert!(store.pending_outbox("other").unwrap().is_empty());

        store
            .mark_retry(&[ids[0]], at(20), "connection refused")
            .unwrap();
        store.mark_delivered(&[ids[1]], at(21)).unwrap();
        let pending = store.pending_outbox("mail").unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].attempts, 1);
        assert_eq!(pending[0].next_attempt_at, at(20));
        assert_eq!(pending[0].last_error.as_deref(), Some("connection refused"));
        store
            .mark_dropped(&[ids[0]], at(22), "max_age", None)
            .unwrap();
        assert!(store.pending_outbox("mail").unwrap().is_empty());
        assert_eq!(
            store.outbox_counts().unwrap(),
            vec![OutboxCounts {
                sink: "mail".into(),
                pending: 0,
                delivered: 1,
                dropped: 1
            }]
        );
        assert_eq!(store.prune_outbox(at(22)).unwrap(), 1);
        assert_eq!(store.prune_outbox(at(23)).unwrap(), 1);
    }

    #[test]
    fn sink_health_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.sink_health("mail").unwrap(),
            SinkHealth {
                sink: "mail".into(),
                ..SinkHealth::default()
            }
        );
        let health = SinkHealth {
            sink: "mail".into(),
            failing: true,
            consecutive_failures: 3,
            last_error: Some("535 authentication refused".into()),
            last_attempt_at: Some(at(5)),
            last_success_at: None,
        };
        store.save_sink_health(&health).unwrap();
        assert_eq!(store.sink_health("mail").unwrap(), health);
    }
}
