//! The shared hourly sync budget of a server: every action that restarts Xray (a sync,
//! a restart of a stopped Xray, fix-reality-keys) is one row of `sync_attempts`, written
//! before its POST so a crash still counts. This file adds the kind of each attempt and
//! takes attempts the server refused (429) out of the budget.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, ts};

/// What an attempt of the sync budget was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// config_sync's sync of a drifted config.json.
    Sync,
    /// health: a stopped Xray restarted through sync-config.
    XrayRestart,
    /// reality (2.x): fix-reality-keys.
    RealityFix,
}

impl AttemptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Sync => "sync",
            AttemptKind::XrayRestart => "xray_restart",
            AttemptKind::RealityFix => "reality_fix",
        }
    }
}

impl Store {
    /// Record an attempt of `kind` before its POST (`record_sync_attempt` is the sync's).
    pub fn record_budget_attempt(
        &self,
        server: &str,
        kind: AttemptKind,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sync_attempts (server, at, kind) VALUES (?1, ?2, ?3)",
                params![server, ts(at), kind.as_str()],
            )?;
            tx.execute(
                "DELETE FROM sync_attempts WHERE at < ?1",
                params![ts(at - chrono::Duration::days(1))],
            )?;
            tx.commit()
        })
    }

    /// The server refused the attempt made at `at` with 429: it did not run, so it does
    /// not spend budget.
    pub fn mark_attempt_deferred(&self, server: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "UPDATE sync_attempts SET outcome = 'deferred' WHERE server = ?1 AND at = ?2",
                params![server, ts(at)],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_kind_shares_the_budget_and_deferred_attempts_leave_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = |m: u32| Utc.with_ymd_and_hms(2026, 3, 1, 10, m, 0).unwrap();
        store.record_sync_attempt("fra-1", at(1)).unwrap();
        store
            .record_budget_attempt("fra-1", AttemptKind::XrayRestart, at(2))
            .unwrap();
        store
            .record_budget_attempt("fra-1", AttemptKind::RealityFix, at(3))
            .unwrap();
        store
            .record_budget_attempt("ams-2", AttemptKind::XrayRestart, at(3))
            .unwrap();
        assert_eq!(
            store.sync_attempts_since("fra-1", at(0)).unwrap(),
            [at(1), at(2), at(3)]
        );
        store.mark_attempt_deferred("fra-1", at(2)).unwrap();
        assert_eq!(
            store.sync_attempts_since("fra-1", at(0)).unwrap(),
            [at(1), at(3)]
        );
        let kinds: Vec<(String, String)> = store
            .tuples(
                "SELECT kind, outcome FROM sync_attempts WHERE server = 'fra-1' ORDER BY at",
                &[],
            )
            .unwrap();
        assert_eq!(
            kinds,
            [
                ("sync".to_string(), "started".to_string()),
                ("xray_restart".into(), "deferred".into()),
                ("reality_fix".into(), "started".into())
            ]
        );
    }
}
