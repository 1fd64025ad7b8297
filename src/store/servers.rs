//! What keywarden last knew of each server (health's up/down memory).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{ServerState, Store, StoreError, parse_opt_ts, ts};

impl Store {
    /// Note that the server answered (with its version).
    pub fn note_server_up(
        &self,
        server: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO server_state (server, version, last_up_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, ?3, 0, NULL, ?3)
                 ON CONFLICT (server) DO UPDATE SET version = ?2, last_up_at = ?3, consecutive_failures = 0,
                     last_error = NULL, updated_at = ?3",
                params![server, version, ts(now)],
            )
            .map(|_| ())
        })
    }

    /// Note a failed health check; returns the consecutive failure count (survives
    /// restarts, so a restart does not hide an outage).
    pub fn note_server_down(
        &self,
        server: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "INSERT INTO server_state (server, last_down_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, 1, ?3, ?2)
                 ON CONFLICT (server) DO UPDATE SET last_down_at = ?2,
                     consecutive_failures = consecutive_failures + 1, last_error = ?3, updated_at = ?2
                 RETURNING consecutive_failures",
                params![server, ts(now), error],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.clamp(0, u32::MAX as i64) as u32)
        })
    }

    pub fn server_states(&self) -> Result<Vec<ServerState>, StoreError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = self.tuples("SELECT server, version, last_up_at, last_down_at, consecutive_failures, last_error FROM server_state ORDER BY server", &[])?;
        rows.into_iter()
            .map(|(server, version, up, down, failures, last_error)| {
                Ok(ServerState {
                    server,
                    version,
                    last_up_at: parse_opt_ts(&self.path, "server_state.last_up_at", up)?,
                    last_down_at: parse_opt_ts(&self.path, "server_state.last_down_at", down)?,
                    consecutive_failures: failures.clamp(0, u32::MAX as i64) as u32,
                    last_error,
                })
            })
            .collect()
    }
}
