//! What the reality job remembers on a 2.x server: consecutive reads that found the
//! Reality settings invalid (a fix-reality-keys restarts Xray, so one odd read is not
//! enough), and which problem the last fix was for (a fix that did not cure a problem is
//! not repeated for it). Written by the reality job's execute step only.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, parse_opt_ts, ts};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RealityMemory {
    /// Consecutive invalid reads.
    pub confirmations: u32,
    pub first_seen: Option<DateTime<Utc>>,
    /// What was invalid at the last read (inbounds and problems, sorted).
    pub signature: String,
    /// The problem the last fix-reality-keys was made for.
    pub fixed_signature: Option<String>,
    pub fixed_at: Option<DateTime<Utc>>,
}

impl Store {
    pub fn reality_memory(&self, server: &str) -> Result<RealityMemory, StoreError> {
        type Row = (i64, Option<String>, String, Option<String>, Option<String>);
        let row: Option<Row> = self.with(|conn| {
            conn.query_row(
                "SELECT confirmations, first_seen, signature, fixed_signature, fixed_at FROM reality_state WHERE server = ?1",
                params![server],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
        })?;
        let Some((confirmations, first_seen, signature, fixed_signature, fixed_at)) = row else {
            return Ok(RealityMemory::default());
        };
        Ok(RealityMemory {
            confirmations: confirmations.clamp(0, i64::from(u32::MAX)) as u32,
            first_seen: parse_opt_ts(&self.path, "reality_state.first_seen", first_seen)?,
            signature,
            fixed_signature,
            fixed_at: parse_opt_ts(&self.path, "reality_state.fixed_at", fixed_at)?,
        })
    }

    pub fn save_reality_memory(
        &self,
        server: &str,
        memory: &RealityMemory,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO reality_state (server, confirmations, first_seen, signature, fixed_signature, fixed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (server) DO UPDATE SET confirmations = ?2, first_seen = ?3, signature = ?4,
                     fixed_signature = ?5, fixed_at = ?6, updated_at = ?7",
                params![
                    server,
                    i64::from(memory.confirmations),
                    memory.first_seen.map(ts),
                    memory.signature,
                    memory.fixed_signature,
                    memory.fixed_at.map(ts),
                    ts(now)
                ],
            )
            .map(|_| ())
        })
    }
}
