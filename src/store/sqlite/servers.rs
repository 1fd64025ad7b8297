//! What keywarden last knew of each server (the health job's up/down memory).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use super::columns::{count, opt_at};
use crate::model::{ServerState, stamp};
use crate::store::{ServerLog, StoreFuture};

impl ServerLog for SqliteStore {
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>> {
        self.call(|conn| {
            let mut statement = conn.prepare(
                "SELECT server, version, last_up_at, last_down_at, consecutive_failures, last_error
                 FROM server_state ORDER BY server",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(ServerState {
                    server: row.get(0)?,
                    version: row.get(1)?,
                    last_up_at: opt_at(row, 2)?,
                    last_down_at: opt_at(row, 3)?,
                    consecutive_failures: count(row, 4)?,
                    last_error: row.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    fn note_up<'a>(
        &'a self,
        server: &'a str,
        version: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()> {
        let (server, version) = (server.to_owned(), version.to_owned());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO server_state (server, version, last_up_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, ?3, 0, NULL, ?3)
                 ON CONFLICT (server) DO UPDATE SET version = ?2, last_up_at = ?3, consecutive_failures = 0,
                     last_error = NULL, updated_at = ?3",
                params![server, version, stamp(now)],
            )
            .map(drop)
        })
    }

    fn note_down<'a>(
        &'a self,
        server: &'a str,
        error: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, u32> {
        let (server, error) = (server.to_owned(), error.to_owned());
        self.call(move |conn| {
            conn.query_row(
                "INSERT INTO server_state (server, last_down_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, 1, ?3, ?2)
                 ON CONFLICT (server) DO UPDATE SET last_down_at = ?2,
                     consecutive_failures = consecutive_failures + 1, last_error = ?3, updated_at = ?2
                 RETURNING consecutive_failures",
                params![server, stamp(now), error],
                |row| count(row, 0),
            )
        })
    }
}
