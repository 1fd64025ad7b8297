//! What the health job remembers of Xray on a 2.x server: the service state `GET /health`
//! last reported and how many reads in a row said "stopped". Written by the health job's
//! execute step only; the dataplane job reads it (a stopped Xray explains closed ports).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, parse_opt_ts, ts};

/// Xray's process state as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XrayState {
    Running,
    Stopped,
}

impl XrayState {
    pub fn as_str(self) -> &'static str {
        match self {
            XrayState::Running => "running",
            XrayState::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<XrayState> {
        match text {
            "running" => Some(XrayState::Running),
            "stopped" => Some(XrayState::Stopped),
            _ => None,
        }
    }
}

/// The health job's memory of one server's Xray.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct XrayMemory {
    /// What the last read said; None before the first read (and on 1.x, which cannot tell).
    pub state: Option<XrayState>,
    /// Consecutive reads that said "stopped".
    pub stopped_reads: u32,
    pub first_stopped_at: Option<DateTime<Utc>>,
    pub checked_at: Option<DateTime<Utc>>,
}

impl Store {
    pub fn xray_memory(&self, server: &str) -> Result<XrayMemory, StoreError> {
        type Row = (Option<String>, i64, Option<String>, Option<String>);
        let row: Option<Row> = self.with(|conn| {
            conn.query_row(
                "SELECT state, stopped_reads, first_stopped_at, checked_at FROM xray_state WHERE server = ?1",
                params![server],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        let Some((state, stopped_reads, first, checked)) = row else {
            return Ok(XrayMemory::default());
        };
        Ok(XrayMemory {
            state: state.as_deref().and_then(XrayState::parse),
            stopped_reads: stopped_reads.clamp(0, i64::from(u32::MAX)) as u32,
            first_stopped_at: parse_opt_ts(&self.path, "xray_state.first_stopped_at", first)?,
            checked_at: parse_opt_ts(&self.path, "xray_state.checked_at", checked)?,
        })
    }

    /// Every server's Xray memory (for `status`).
    pub fn xray_memories(&self) -> Result<Vec<(String, XrayMemory)>, StoreError> {
        let names: Vec<(String,)> =
            self.tuples("SELECT server FROM xray_state ORDER BY server", &[])?;
        names
            .into_iter()
            .map(|(server,)| Ok((server.clone(), self.xray_memory(&server)?)))
            .collect()
    }

    pub fn save_xray_memory(
        &self,
        server: &str,
        memory: &XrayMemory,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO xray_state (server, state, stopped_reads, first_stopped_at, checked_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (server) DO UPDATE SET state = ?2, stopped_reads = ?3, first_stopped_at = ?4,
                     checked_at = ?5, updated_at = ?6",
                params![
                    server,
                    memory.state.map(XrayState::as_str),
                    i64::from(memory.stopped_reads),
                    memory.first_stopped_at.map(ts),
                    memory.checked_at.map(ts),
                    ts(now)
                ],
            )
            .map(|_| ())
        })
    }
}
