//! What the usage report reads: traffic per key, server and local day (`usage_daily`),
//! availability samples per server, series and UTC hour (`availability_hourly`), and which
//! report went to which sink (`report_deliveries`). Typed records in, typed records out;
//! the report's arithmetic lives in `crate::report`.
//!
//! Retention: daily traffic and availability are kept `DAILY_KEPT_DAYS` days (a year of
//! monthly reports with their previous month), pruned as new rows arrive.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::quota::{bytes, unsigned};
use super::{Store, StoreError, parse_ts, ts};

/// Days of daily traffic and availability kept.
pub const DAILY_KEPT_DAYS: i64 = 400;

/// Bytes one key added on one day (the agent's time zone), as one quota run counted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    pub day: NaiveDate,
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    pub bytes: u64,
}

/// A stored day of one key on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsageRow {
    pub server: String,
    pub day: NaiveDate,
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    pub bytes: u64,
}

/// What an availability sample is about. The health job records `Api` (the API answered
/// its check); data-plane checks add their own series (Xray running, VLESS ports open) as
/// new variants, and the report draws every series it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AvailabilitySeries {
    /// The health check found the server's API answering.
    Api,
    /// 2.x: the health check found Xray running (after any restart it made).
    Xray,
    /// One sample per VLESS port per dataplane run: the port answered TLS correctly.
    VlessPorts,
}

impl AvailabilitySeries {
    pub const ALL: [AvailabilitySeries; 3] = [
        AvailabilitySeries::Api,
        AvailabilitySeries::Xray,
        AvailabilitySeries::VlessPorts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AvailabilitySeries::Api => "api",
            AvailabilitySeries::Xray => "xray",
            AvailabilitySeries::VlessPorts => "vless_ports",
        }
    }

    /// What the series means, for report headings.
    pub fn title(self) -> &'static str {
        match self {
            AvailabilitySeries::Api => "API up",
            AvailabilitySeries::Xray => "Xray running",
            AvailabilitySeries::VlessPorts => "VLESS ports answering",
        }
    }

    pub fn parse(text: &str) -> Option<AvailabilitySeries> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One check's result for one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailabilitySample {
    pub series: AvailabilitySeries,
    pub up: bool,
}

/// Checks and successes of one series of one server in one UTC hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityRow {
    pub server: String,
    pub series: AvailabilitySeries,
    pub hour: DateTime<Utc>,
    pub checks: u64,
    pub up: u64,
}

/// How delivering one report to one sink went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Delivered,
    Failed,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One report delivery as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDelivery {
    /// The report period, e.g. `2026-W48` or `2026-11`.
    pub period: String,
    pub sink: String,
    pub delivered: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at)
}

/// Add a quota run's growth to its days (inside the quota commit's transaction, so a
/// crash neither loses nor doubles it), and prune days past retention.
pub(super) fn add_daily_usage(
    tx: &Transaction<'_>,
    server: &str,
    rows: &[DailyUsage],
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO usage_daily (server, day, uuid, key_id, name, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (server, day, uuid) DO UPDATE SET key_id = ?4, name = ?5, bytes = bytes + ?6",
    )?;
    for row in rows.iter().filter(|r| r.bytes > 0) {
        statement.execute(params![
            server,
            day_text(row.day),
            row.uuid,
            row.key_id,
            row.name,
            bytes(row.bytes)
        ])?;
    }
    if let Some(latest) = rows.iter().map(|r| r.day).max() {
        let cutoff = latest - chrono::Duration::days(DAILY_KEPT_DAYS);
        tx.execute(
            "DELETE FROM usage_daily WHERE day < ?1",
            params![day_text(cutoff)],
        )?;
    }
    Ok(())
}

impl Store {
    /// Daily traffic of every key and server on days `from..=to`, by server and day.
    pub fn daily_usage(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsageRow>, StoreError> {
        let rows: Vec<(String, String, String, String, String, i64)> = self.tuples(
            "SELECT server, day, uuid, key_id, name, bytes FROM usage_daily
             WHERE day >= ?1 AND day <= ?2 ORDER BY server, day, uuid",
            params![day_text(from), day_text(to)],
        )?;
        rows.into_iter()
            .map(|(server, day, uuid, key_id, name, bytes)| {
                let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| {
                    StoreError::Corrupt {
                        path: self.path.clone(),
                        what: "usage_daily.day",
                        value: day.clone(),
                    }
                })?;
                Ok(DailyUsageRow {
                    server,
                    day,
                    uuid,
                    key_id,
                    name,
                    bytes: unsigned(bytes),
                })
            })
            .collect()
    }

    /// Count one check per sample in the hour of `at`; prunes hours past retention.
    pub fn record_availability(
        &self,
        server: &str,
        at: DateTime<Utc>,
        samples: &[AvailabilitySample],
    ) -> Result<(), StoreError> {
        let hour = ts(hour_of(at));
        let cutoff = ts(hour_of(at) - chrono::Duration::days(DAILY_KEPT_DAYS));
        self.with(|conn| {
            let tx = conn.transaction()?;
            for sample in samples {
                tx.execute(
                    "INSERT INTO availability_hourly (server, series, hour, checks, up) VALUES (?1, ?2, ?3, 1, ?4)
                     ON CONFLICT (server, series, hour) DO UPDATE SET checks = checks + 1, up = up + ?4",
                    params![server, sample.series.as_str(), hour, i64::from(sample.up)],
                )?;
            }
            tx.execute(
                "DELETE FROM availability_hourly WHERE hour < ?1",
                params![cutoff],
            )?;
            tx.commit()
        })
    }

    /// Availability samples of hours in `[from, to)`, by server, series and hour. Series
    /// this build does not know (written by a newer one) are left out.
    pub fn availability(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<AvailabilityRow>, StoreError> {
        let rows: Vec<(String, String, String, i64, i64)> = self.tuples(
            "SELECT server, series, hour, checks, up FROM availability_hourly
             WHERE hour >= ?1 AND hour < ?2 ORDER BY server, series, hour",
            params![ts(from), ts(to)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (server, series, hour, checks, up) in rows {
            let Some(series) = AvailabilitySeries::parse(&series) else {
                continue;
            };
            out.push(AvailabilityRow {
                server,
                series,
                hour: parse_ts(&self.path, "availability_hourly.hour", &hour)?,
                checks: unsigned(checks),
                up: unsigned(up),
            });
        }
        Ok(out)
    }

    /// Findings open at some time in `[from, to)`: raised before `to` and not resolved
    /// before `from`.
    pub fn findings_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<super::StoredFinding>, StoreError> {
        self.findings_where(
            "first_seen < ?1 AND (resolved_at IS NULL OR resolved_at >= ?2)",
            params![ts(to), ts(from)],
        )
    }

    /// Audit entries of every server in `[from, to)`, oldest first.
    pub fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<super::AuditEntry>, StoreError> {
        self.audit_entries(
            "SELECT at, server, action, target, result, detail FROM audit_log
             WHERE at >= ?1 AND at < ?2 ORDER BY id",
            params![ts(from), ts(to)],
        )
    }

    /// The recorded delivery of report `period` to `sink`, if any.
    pub fn report_delivery(
        &self,
        period: &str,
        sink: &str,
    ) -> Result<Option<ReportDelivery>, StoreError> {
        let row: Option<(String, i64, Option<String>, String)> = self.with(|conn| {
            conn.query_row(
                "SELECT state, attempts, last_error, updated_at FROM report_deliveries WHERE period = ?1 AND sink = ?2",
                params![period, sink],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        row.map(|(state, attempts, last_error, updated_at)| {
            Ok(ReportDelivery {
                period: period.to_string(),
                sink: sink.to_string(),
                delivered: state == DeliveryState::Delivered.as_str(),
                attempts: u32::try_from(attempts).unwrap_or(0),
                last_error,
                updated_at: parse_ts(&self.path, "report_deliveries.updated_at", &updated_at)?,
            })
        })
        .transpose()
    }

    /// Record one delivery attempt of report `period` to `sink` (the error never holds a
    /// secret: sinks scrub theirs).
    pub fn record_report_delivery(
        &self,
        period: &str,
        sink: &str,
        state: DeliveryState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO report_deliveries (period, sink, state, attempts, last_error, updated_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)
                 ON CONFLICT (period, sink) DO UPDATE SET state = ?3, attempts = attempts + 1,
                     last_error = ?4, updated_at = ?5",
                params![period, sink, state.as_str(), error, ts(now)],
            )
            .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn usage(d: u32, uuid: &str, bytes: u64) -> DailyUsage {
        DailyUsage {
            day: day(d),
            uuid: uuid.into(),
            key_id: format!("id-{uuid}"),
            name: format!("key {uuid}"),
            bytes,
        }
    }

    fn add(store: &Store, server: &str, rows: &[DailyUsage]) {
        store
            .with(|conn| {
                let tx = conn.transaction()?;
                add_daily_usage(&tx, server, rows)?;
                tx.commit()
            })
            .unwrap();
    }

    #[test]
    fn daily_usage_adds_up_per_day_and_key() {
        let (_dir, store) = store();
        add(&store, "fra-1", &[usage(2, "u1", 100), usage(2, "u2", 5)]);
        add(&store, "fra-1", &[usage(2, "u1", 50), usage(3, "u1", 7)]);
        add(&store, "ams-2", &[usage(3, "u9", 1), usage(3, "u0", 0)]);
        let rows = store.daily_usage(day(2), day(3)).unwrap();
        let seen: Vec<(&str, u32, &str, u64)> = rows
            .iter()
            .map(|r| {
                use chrono::Datelike;
                (r.server.as_str(), r.day.day(), r.uuid.as_str(), r.bytes)
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("ams-2", 3, "u9", 1),
                ("fra-1", 2, "u1", 150),
                ("fra-1", 2, "u2", 5),
                ("fra-1", 3, "u1", 7),
            ],
            "zero growth writes no row"
        );
        assert_eq!(store.daily_usage(day(3), day(3)).unwrap().len(), 2);
    }

    #[test]
    fn daily_usage_is_pruned_after_retention() {
        let (_dir, store) = store();
        add(&store, "fra-1", &[usage(1, "u1", 100)]);
        let later = day(1) + chrono::Duration::days(DAILY_KEPT_DAYS + 1);
        add(
            &store,
            "fra-1",
            &[DailyUsage {
                day: later,
                ..usage(1, "u1", 1)
            }],
        );
        let rows = store.daily_usage(day(1), later).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].day, later);
    }

    #[test]
    fn availability_counts_checks_per_hour() {
        let (_dir, store) = store();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap();
        let api = |up| AvailabilitySample {
            series: AvailabilitySeries::Api,
            up,
        };
        store
            .record_availability("fra-1", at(10, 0), &[api(true)])
            .unwrap();
        store
            .record_availability("fra-1", at(10, 30), &[api(false)])
            .unwrap();
        store
            .record_availability("fra-1", at(11, 59), &[api(true)])
            .unwrap();
        let rows = store.availability(at(10, 0), at(12, 0)).unwrap();
        let seen: Vec<(u32, u64, u64)> = rows
            .iter()
            .map(|r| (r.hour.hour(), r.checks, r.up))
            .collect();
        assert_eq!(seen, vec![(10, 2, 1), (11, 1, 1)]);
        assert!(store.availability(at(12, 0), at(13, 0)).unwrap().is_empty());
    }

    #[test]
    fn deliveries_count_attempts() {
        let (_dir, store) = store();
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        assert_eq!(store.report_delivery("2026-W48", "mail").unwrap(), None);
        store
            .record_report_delivery(
                "2026-W48",
                "mail",
                DeliveryState::Failed,
                Some("smtp: 451"),
                now,
            )
            .unwrap();
        store
            .record_report_delivery("2026-W48", "mail", DeliveryState::Delivered, None, now)
            .unwrap();
        let seen = store.report_delivery("2026-W48", "mail").unwrap().unwrap();
        assert!(seen.delivered);
        assert_eq!(seen.attempts, 2);
        assert_eq!(seen.last_error, None);
    }
}
