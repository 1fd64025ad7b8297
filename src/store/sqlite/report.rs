//! The report's tables: `usage_daily` (added to within each quota commit),
//! `availability_hourly` and `report_deliveries`.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::columns::{at, bytes, count, day, day_text, unsigned};
use crate::model::report::{
    AvailabilityRow, AvailabilitySample, AvailabilitySeries, DailyUsage, DailyUsageRow,
    DeliveryState, ReportDelivery,
};
use crate::model::stamp;
use crate::store::{DAILY_KEPT_DAYS, ReportLog, StoreFuture};

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
    // In key order, as the ledger's rows (see `quota::upsert_entries`).
    let mut in_key_order: Vec<&DailyUsage> = rows.iter().filter(|r| r.bytes > 0).collect();
    in_key_order.sort_unstable_by(|a, b| (a.day, &a.uuid).cmp(&(b.day, &b.uuid)));
    for row in in_key_order {
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

/// An availability row; `None` for a series this build does not know.
fn availability_from(row: &Row<'_>) -> rusqlite::Result<Option<AvailabilityRow>> {
    let series: String = row.get(1)?;
    let Some(series) = AvailabilitySeries::parse(&series) else {
        return Ok(None);
    };
    Ok(Some(AvailabilityRow {
        server: row.get(0)?,
        series,
        hour: at(row, 2)?,
        checks: unsigned(row.get(3)?),
        up: unsigned(row.get(4)?),
    }))
}

impl ReportLog for SqliteStore {
    fn daily_usage(&self, from: NaiveDate, to: NaiveDate) -> StoreFuture<'_, Vec<DailyUsageRow>> {
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT server, day, uuid, key_id, name, bytes FROM usage_daily
                 WHERE day >= ?1 AND day <= ?2 ORDER BY server, day, uuid",
            )?;
            let rows = statement.query_map(params![day_text(from), day_text(to)], |row| {
                Ok(DailyUsageRow {
                    server: row.get(0)?,
                    day: day(row, 1)?,
                    uuid: row.get(2)?,
                    key_id: row.get(3)?,
                    name: row.get(4)?,
                    bytes: unsigned(row.get(5)?),
                })
            })?;
            rows.collect()
        })
    }

    fn record_availability(
        &self,
        server: &str,
        at: DateTime<Utc>,
        samples: &[AvailabilitySample],
    ) -> StoreFuture<'_, ()> {
        let (server, samples) = (server.to_owned(), samples.to_vec());
        let hour = stamp(hour_of(at));
        let cutoff = stamp(hour_of(at) - chrono::Duration::days(DAILY_KEPT_DAYS));
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for sample in &samples {
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

    fn availability(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<AvailabilityRow>> {
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT server, series, hour, checks, up FROM availability_hourly
                 WHERE hour >= ?1 AND hour < ?2 ORDER BY server, series, hour",
            )?;
            let rows = statement.query_map(params![stamp(from), stamp(to)], availability_from)?;
            rows.filter_map(Result::transpose).collect()
        })
    }

    fn delivery(&self, period: &str, sink: &str) -> StoreFuture<'_, Option<ReportDelivery>> {
        let (period, sink) = (period.to_owned(), sink.to_owned());
        self.call(move |conn| {
            conn.query_row(
                "SELECT state, attempts, last_error, updated_at FROM report_deliveries WHERE period = ?1 AND sink = ?2",
                params![period, sink],
                |row| {
                    Ok(ReportDelivery {
                        period: period.clone(),
                        sink: sink.clone(),
                        delivered: row.get::<_, DeliveryState>(0)? == DeliveryState::Delivered,
                        attempts: count(row, 1)?,
                        last_error: row.get(2)?,
                        updated_at: at(row, 3)?,
                    })
                },
            )
            .optional()
        })
    }

    fn record_delivery(
        &self,
        period: &str,
        sink: &str,
        state: DeliveryState,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (period, sink, error) = (period.to_owned(), sink.to_owned(), error.map(str::to_owned));
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO report_deliveries (period, sink, state, attempts, last_error, updated_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5)
                 ON CONFLICT (period, sink) DO UPDATE SET state = ?3, attempts = attempts + 1,
                     last_error = ?4, updated_at = ?5",
                params![period, sink, state, error, stamp(now)],
            )
            .map(drop)
        })
    }
}
