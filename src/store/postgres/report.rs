//! The report's tables: `usage_daily` (added to within each quota commit),
//! `availability_hourly` and `report_deliveries`.

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use deadpool_postgres::Transaction;

use super::PgStore;
use super::columns::{PgResult, at, bytes, count, day, day_text, get, unsigned};
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
pub(super) async fn add_daily_usage(
    tx: &Transaction<'_>,
    server: &str,
    rows: &[DailyUsage],
) -> PgResult<()> {
    for row in rows.iter().filter(|r| r.bytes > 0) {
        tx.execute(
            "INSERT INTO usage_daily (server, day, uuid, key_id, name, bytes) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (server, day, uuid) DO UPDATE SET key_id = $4, name = $5, bytes = usage_daily.bytes + $6",
            &[&server, &day_text(row.day), &row.uuid, &row.key_id, &row.name, &bytes(row.bytes)],
        )
        .await?;
    }
    if let Some(latest) = rows.iter().map(|r| r.day).max() {
        let cutoff = latest - chrono::Duration::days(DAILY_KEPT_DAYS);
        tx.execute(
            "DELETE FROM usage_daily WHERE day < $1",
            &[&day_text(cutoff)],
        )
        .await?;
    }
    Ok(())
}

impl ReportLog for PgStore {
    fn daily_usage(&self, from: NaiveDate, to: NaiveDate) -> StoreFuture<'_, Vec<DailyUsageRow>> {
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT server, day, uuid, key_id, name, bytes FROM usage_daily
                     WHERE day >= $1 AND day <= $2 ORDER BY server, day, uuid",
                    &[&day_text(from), &day_text(to)],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(DailyUsageRow {
                        server: get(row, 0)?,
                        day: day(row, 1)?,
                        uuid: get(row, 2)?,
                        key_id: get(row, 3)?,
                        name: get(row, 4)?,
                        bytes: unsigned(row, 5)?,
                    })
                })
                .collect()
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
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for sample in &samples {
                tx.execute(
                    "INSERT INTO availability_hourly (server, series, hour, checks, up) VALUES ($1, $2, $3, 1, $4)
                     ON CONFLICT (server, series, hour) DO UPDATE SET checks = availability_hourly.checks + 1,
                         up = availability_hourly.up + $4",
                    &[&server, &sample.series.as_str(), &hour, &i64::from(sample.up)],
                )
                .await?;
            }
            tx.execute("DELETE FROM availability_hourly WHERE hour < $1", &[&cutoff])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn availability(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreFuture<'_, Vec<AvailabilityRow>> {
        self.run(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT server, series, hour, checks, up FROM availability_hourly
                     WHERE hour >= $1 AND hour < $2 ORDER BY server, series, hour",
                    &[&stamp(from), &stamp(to)],
                )
                .await?;
            let mut found = Vec::with_capacity(rows.len());
            for row in &rows {
                // A series this build does not know (written by a newer one) is left out.
                let series: String = get(row, 1)?;
                let Some(series) = AvailabilitySeries::parse(&series) else {
                    continue;
                };
                found.push(AvailabilityRow {
                    server: get(row, 0)?,
                    series,
                    hour: at(row, 2)?,
                    checks: unsigned(row, 3)?,
                    up: unsigned(row, 4)?,
                });
            }
            Ok(found)
        })
    }

    fn delivery(&self, period: &str, sink: &str) -> StoreFuture<'_, Option<ReportDelivery>> {
        let (period, sink) = (period.to_owned(), sink.to_owned());
        self.run(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT state, attempts, last_error, updated_at FROM report_deliveries WHERE period = $1 AND sink = $2",
                    &[&period, &sink],
                )
                .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            Ok(Some(ReportDelivery {
                delivered: get::<DeliveryState>(&row, 0)? == DeliveryState::Delivered,
                attempts: count(&row, 1)?,
                last_error: get(&row, 2)?,
                updated_at: at(&row, 3)?,
                period,
                sink,
            }))
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
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO report_deliveries (period, sink, state, attempts, last_error, updated_at)
                     VALUES ($1, $2, $3, 1, $4, $5)
                     ON CONFLICT (period, sink) DO UPDATE SET state = $3,
                         attempts = report_deliveries.attempts + 1, last_error = $4, updated_at = $5",
                    &[&period, &sink, &state, &error, &stamp(now)],
                )
                .await?;
            Ok(())
        })
    }
}
