//! What keywarden last knew of each server (the health job's up/down memory, and its
//! memory of Xray on 2.x servers).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::columns::{count, opt_at};
use crate::model::dataplane::XrayMemory;
use crate::model::{ServerState, stamp};
use crate::store::{ServerLog, StoreFuture};

const COLUMNS: &str = "server, version, last_up_at, last_down_at, consecutive_failures, last_error";

fn state_from(row: &Row<'_>) -> rusqlite::Result<ServerState> {
    Ok(ServerState {
        server: row.get(0)?,
        version: row.get(1)?,
        last_up_at: opt_at(row, 2)?,
        last_down_at: opt_at(row, 3)?,
        consecutive_failures: count(row, 4)?,
        last_error: row.get(5)?,
    })
}

fn xray_from(row: &Row<'_>) -> rusqlite::Result<XrayMemory> {
    Ok(XrayMemory {
        state: row.get(0)?,
        stopped_reads: count(row, 1)?,
        first_stopped_at: opt_at(row, 2)?,
        checked_at: opt_at(row, 3)?,
    })
}

impl ServerLog for SqliteStore {
    fn states(&self) -> StoreFuture<'_, Vec<ServerState>> {
        self.call(|conn| {
            let sql = format!("SELECT {COLUMNS} FROM server_state ORDER BY server");
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map([], state_from)?;
            rows.collect()
        })
    }

    fn state(&self, server: &str) -> StoreFuture<'_, Option<ServerState>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let sql = format!("SELECT {COLUMNS} FROM server_state WHERE server = ?1");
            conn.query_row(&sql, params![server], state_from).optional()
        })
    }

    fn save(&self, state: &ServerState, now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let state = state.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO server_state (server, version, last_up_at, last_down_at, consecutive_failures, last_error, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (server) DO UPDATE SET version = ?2, last_up_at = ?3, last_down_at = ?4,
                     consecutive_failures = ?5, last_error = ?6, updated_at = ?7",
                params![
                    state.server,
                    state.version,
                    state.last_up_at.map(stamp),
                    state.last_down_at.map(stamp),
                    i64::from(state.consecutive_failures),
                    state.last_error,
                    stamp(now)
                ],
            )
            .map(drop)
        })
    }

    fn xray(&self, server: &str) -> StoreFuture<'_, XrayMemory> {
        let server = server.to_owned();
        self.call(move |conn| {
            conn.query_row(
                "SELECT state, stopped_reads, first_stopped_at, checked_at FROM xray_state WHERE server = ?1",
                params![server],
                xray_from,
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn save_xray(
        &self,
        server: &str,
        memory: &XrayMemory,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, memory) = (server.to_owned(), memory.clone());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO xray_state (server, state, stopped_reads, first_stopped_at, checked_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (server) DO UPDATE SET state = ?2, stopped_reads = ?3, first_stopped_at = ?4,
                     checked_at = ?5, updated_at = ?6",
                params![
                    server,
                    memory.state,
                    i64::from(memory.stopped_reads),
                    memory.first_stopped_at.map(stamp),
                    memory.checked_at.map(stamp),
                    stamp(now)
                ],
            )
            .map(drop)
        })
    }
}
