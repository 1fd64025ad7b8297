//! The daily store maintenance: `[retention]` becomes horizons (pure, from an injected
//! `now`), and the store deletes what is older. It talks to no server; the agent
//! schedules it with the jobs (task id `store/maintenance`).

use chrono::{DateTime, Utc};

use crate::config::RetentionConfig;
use crate::store::{Horizons, Store, StoreError, Trimmed};

/// The scheduler's id of the maintenance task.
pub const TASK_ID: &str = "store/maintenance";

/// What is older than `now` minus each retention goes.
pub fn horizons(retention: &RetentionConfig, now: DateTime<Utc>) -> Horizons {
    let before = |kept: std::time::Duration| {
        chrono::Duration::from_std(kept)
            .ok()
            .and_then(|kept| now.checked_sub_signed(kept))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    Horizons {
        audit: before(retention.audit),
        job_runs: before(retention.job_runs),
        findings: before(retention.findings),
        quota_history: before(retention.quota_history),
    }
}

/// Trim the store to `retention` as of `now`, and log what went.
pub async fn run(
    store: &Store,
    retention: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<Trimmed, StoreError> {
    let trimmed = store.retention().trim(&horizons(retention, now)).await?;
    tracing::info!(
        audit = trimmed.audit,
        job_runs = trimmed.job_runs,
        findings = trimmed.findings,
        quota_history = trimmed.quota_history,
        pages_released = trimmed.pages_released,
        pages_free = trimmed.pages_free,
        "store maintenance: history past retention deleted"
    );
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::config::Schedule;

    #[test]
    fn each_horizon_is_now_minus_its_retention() {
        let day = |n: u64| std::time::Duration::from_secs(n * 86_400);
        let retention = RetentionConfig {
            audit: day(400),
            job_runs: day(30),
            findings: day(90),
            quota_history: day(800),
            schedule: Schedule::parse("0 17 4 * * *").unwrap(),
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 4, 17, 0).unwrap();
        let h = horizons(&retention, now);
        assert_eq!(h.audit, now - chrono::Duration::days(400));
        assert_eq!(h.job_runs, now - chrono::Duration::days(30));
        assert_eq!(h.findings, now - chrono::Duration::days(90));
        assert_eq!(h.quota_history, now - chrono::Duration::days(800));
    }
}
