//! The scheduled report. `run_due` is idempotent: it works out which period is due (the
//! `[reports]` schedule fired since that period ended, less than a day ago), and sends it
//! to each configured sink that has not had it yet, at most `MAX_ATTEMPTS` times. The
//! daemon calls it on the schedule and hourly, so a failed sink is retried and a report
//! missed while the daemon was down goes out when it is back (within the day).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::deliver::{Delivery, DeliveryOptions, deliver};
use super::period::{PeriodSpec, ReportPeriod};
use crate::alert::{Sink, SinkOptions};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{DeliveryState, Store};

/// Attempts per period and sink before giving up.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long after its scheduled time a missed report is still sent.
pub const CATCH_UP_WINDOW_HOURS: i64 = 24;
/// The hourly retry / catch-up schedule (minute 17, away from the round hour).
pub const RETRY_SCHEDULE: &str = "0 17 * * * *";

/// The period due at `now`, if the schedule fired since it ended and within the window.
pub fn due(config: &Config, now: DateTime<Utc>) -> Option<ReportPeriod> {
    let tz = config.agent.timezone;
    let reports = &config.reports;
    let period = ReportPeriod::resolve(PeriodSpec::from(reports.period), tz, now);
    let fired = reports
        .schedule
        .next_runs(tz, period.end(tz) - Duration::seconds(1), 1)
        .into_iter()
        .next()?
        .with_timezone(&Utc);
    (fired <= now && now - fired < Duration::hours(CATCH_UP_WINDOW_HOURS)).then_some(period)
}

/// What the scheduled report needs besides the configuration.
pub struct ReportJob {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub sinks: SinkOptions,
    pub delivery: DeliveryOptions,
    pub metrics: Option<Arc<Metrics>>,
}

impl ReportJob {
    /// Send the due report to every sink still owed it; returns what was attempted.
    pub async fn run_due(&self, config: &Config) -> Vec<Delivery> {
        let now = self.clock.now();
        let Some(period) = due(config, now) else {
            return Vec::new();
        };
        let owed: Vec<String> = config
            .reports
            .sinks
            .iter()
            .filter(|sink| match self.store.report_delivery(&period.key, sink) {
                Ok(Some(seen)) => !seen.delivered && seen.attempts < MAX_ATTEMPTS,
                Ok(None) => true,
                Err(error) => {
                    tracing::error!(%error, "report: cannot read the deliveries");
                    false
                }
            })
            .cloned()
            .collect();
        if owed.is_empty() {
            return Vec::new();
        }
        let tz = config.agent.timezone;
        let rendered = match super::gather(&self.store, config, &period, now)
            .map_err(|e| e.to_string())
            .and_then(|report| super::render(report, tz).map_err(|e| e.to_string()))
        {
            Ok(rendered) => rendered,
            Err(error) => {
                tracing::error!(%error, period = %period.key, "report: cannot make the report");
                return Vec::new();
            }
        };
        let sinks = match Sink::build_all(&config.alerts, tz, &self.sinks) {
            Ok(sinks) => sinks,
            Err(error) => {
                tracing::error!(%error, "report: cannot set up the sinks");
                return Vec::new();
            }
        };
        let deliveries = deliver(&rendered, &sinks, &owed, &self.delivery, now).await;
        for delivery in &deliveries {
            self.record(&period, delivery);
        }
        deliveries
    }

    fn record(&self, period: &ReportPeriod, delivery: &Delivery) {
        let (state, error) = match &delivery.result {
            Ok(()) => (DeliveryState::Delivered, None),
            Err(error) => (DeliveryState::Failed, Some(error.to_string())),
        };
        match &error {
            None => {
                tracing::info!(sink = %delivery.sink, period = %period.key, "usage report delivered")
            }
            Some(error) => {
                tracing::warn!(sink = %delivery.sink, period = %period.key, %error, "usage report not delivered")
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.report_delivery(&delivery.sink, error.is_none());
        }
        let now = self.clock.now();
        if let Err(store_error) = self.store.record_report_delivery(
            &period.key,
            &delivery.sink,
            state,
            error.as_deref(),
            now,
        ) {
            tracing::error!(error = %store_error, "report: cannot record the delivery");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[agent]\ntimezone = \"Europe/Berlin\"\n[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/api\"\napi_key = \"k\"\n[[alerts.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:2/h\"\n[reports]\nsinks = [\"hook\"]\n{extra}"
        );
        crate::config::from_str_with_env(&text, std::path::Path::new("/x/a.toml"), &|_| None)
            .expect("valid")
            .config
    }

    #[test]
    fn the_week_is_due_from_monday_nine_for_a_day() {
        let weekly = config("");
        // Monday 30 Nov 2026 09:00 in Berlin is 08:00 UTC.
        let at = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        assert_eq!(due(&weekly, at(30, 7, 59)), None, "before the schedule");
        assert_eq!(
            due(&weekly, at(30, 8, 0)).map(|p| p.key),
            Some("2026-W48".into())
        );
        assert_eq!(
            due(&weekly, at(30, 17, 17)).map(|p| p.key),
            Some("2026-W48".into())
        );
        let next_day = Utc.with_ymd_and_hms(2026, 12, 1, 8, 1, 0).unwrap();
        assert_eq!(due(&weekly, next_day), None, "a day later: too late");
        let monthly = config("period = \"last-month\"\nschedule = \"0 0 8 1 * *\"");
        let dec_first = Utc.with_ymd_and_hms(2026, 12, 1, 7, 30, 0).unwrap();
        assert_eq!(
            due(&monthly, dec_first).map(|p| p.key),
            Some("2026-11".into())
        );
    }
}
