//! The quota job's tables: the usage ledger, finished periods, per-server memory, and
//! once-per-period notices (intents are in `quota_intents.rs`).

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{Store, StoreError, ts};
use crate::quota::plan::{Action, ServerMemory};
use crate::quota::{Entry, HistoryRow};

/// What one quota run writes in one transaction: the ledger after its readings, the
/// periods that ended, the intents it decided, and the server's memory.
#[derive(Debug, Clone, Copy)]
pub struct QuotaCommit<'a> {
    pub entries: &'a [Entry],
    pub history: &'a [HistoryRow],
    pub intents: &'a [Action],
    pub memory: &'a ServerMemory,
    pub api_version: &'a str,
    pub now: DateTime<Utc>,
    /// This run's growth per key, for the daily totals the report reads.
    pub daily: &'a [super::DailyUsage],
}

/// Finished intents are kept this long (a year of periods, for `status` and audits).
const INTENTS_KEPT_DAYS: i64 = 400;

pub(super) fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A timestamp column; a bad one is a conversion error naming the column.
pub(super) fn time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    parse_time(index, &text)
}

fn opt_time_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| parse_time(index, &t)).transpose()
}

fn parse_time(index: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(err)))
}

const ENTRY_COLUMNS: &str = "uuid, key_id, name, counter, used, period_total, period_start, adopted, warned, exceeded_at, exceed_resets, delete_due, expect_drop, last_reset, first_seen, read_at, changed_at, gone_at";

fn entry_from(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        uuid: row.get(0)?,
        key_id: row.get(1)?,
        name: row.get(2)?,
        counter: row.get::<_, Option<i64>>(3)?.map(unsigned),
        used: unsigned(row.get(4)?),
        period_total: unsigned(row.get(5)?),
        period_start: time_at(row, 6)?,
        adopted: row.get(7)?,
        warned: u8::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        exceeded_at: opt_time_at(row, 9)?,
        exceed_resets: u32::try_from(row.get::<_, i64>(10)?).unwrap_or(0),
        delete_due: opt_time_at(row, 11)?,
        expect_drop: row.get(12)?,
        last_reset: opt_time_at(row, 13)?,
        first_seen: time_at(row, 14)?,
        read_at: opt_time_at(row, 15)?,
        changed_at: opt_time_at(row, 16)?,
        gone_at: opt_time_at(row, 17)?,
    })
}

pub(super) fn upsert_entries(
    tx: &Transaction<'_>,
    server: &str,
    entries: &[Entry],
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO quota_ledger (server, uuid, key_id, name, counter, used, period_total, period_start, adopted,
             warned, exceeded_at, exceed_resets, delete_due, expect_drop, last_reset, first_seen, read_at, changed_at, gone_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (server, uuid) DO UPDATE SET key_id = ?3, name = ?4, counter = ?5, used = ?6,
             period_total = ?7, period_start = ?8, adopted = ?9, warned = ?10, exceeded_at = ?11,
             exceed_resets = ?12, delete_due = ?13, expect_drop = ?14, last_reset = ?15, first_seen = ?16,
             read_at = ?17, changed_at = ?18, gone_at = ?19",
    )?;
    for e in entries {
        statement.execute(params![
            server,
            e.uuid,
            e.key_id,
            e.name,
            e.counter.map(bytes),
            bytes(e.used),
            bytes(e.period_total),
            ts(e.period_start),
            e.adopted,
            i64::from(e.warned),
            e.exceeded_at.map(ts),
            i64::from(e.exceed_resets),
            e.delete_due.map(ts),
            e.expect_drop,
            e.last_reset.map(ts),
            ts(e.first_seen),
            e.read_at.map(ts),
            e.changed_at.map(ts),
            e.gone_at.map(ts),
        ])?;
    }
    Ok(())
}

fn insert_history(tx: &Transaction<'_>, server: &str, rows: &[HistoryRow]) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO quota_history (server, uuid, key_id, name, period_start, period_end, total, used, adopted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for h in rows {
        statement.execute(params![
            server,
            h.uuid,
            h.key_id,
            h.name,
            ts(h.period_start),
            ts(h.period_end),
            bytes(h.total),
            bytes(h.used),
            h.adopted
        ])?;
    }
    Ok(())
}

fn save_memory(
    tx: &Transaction<'_>,
    server: &str,
    memory: &ServerMemory,
    api_version: &str,
    now: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO quota_servers (server, first_run_at, api_version, consecutive_failures, traffic_changed_at,
             sync_noted_at, resets_suspended_version, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (server) DO UPDATE SET first_run_at = ?2, api_version = ?3, consecutive_failures = ?4,
             traffic_changed_at = ?5, resets_suspended_version = ?7, updated_at = ?8",
        params![
            server,
            memory.first_run_at.map(ts),
            api_version,
            i64::from(memory.consecutive_failures),
            memory.traffic_changed_at.map(ts),
            memory.sync_noted_at.map(ts),
            memory.resets_suspended_version,
            now
        ],
    )
    .map(drop)
}

impl Store {
    /// The ledger of one server (keys gone from it included).
    pub fn quota_ledger(&self, server: &str) -> Result<Vec<Entry>, StoreError> {
        self.with(|conn| {
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM quota_ledger WHERE server = ?1");
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![server], entry_from)?;
            rows.collect()
        })
    }

    /// The keys still on their servers, as (server, entry), for `usage`.
    pub fn quota_usage(&self, server: Option<&str>) -> Result<Vec<(String, Entry)>, StoreError> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {ENTRY_COLUMNS}, server FROM quota_ledger
                 WHERE gone_at IS NULL AND (?1 IS NULL OR server = ?1) ORDER BY server, name"
            );
            let mut statement = conn.prepare(&sql)?;
            let rows =
                statement.query_map(params![server], |row| Ok((row.get(18)?, entry_from(row)?)))?;
            rows.collect()
        })
    }

    /// Finished periods of one server (of one key), oldest first.
    pub fn quota_history(
        &self,
        server: &str,
        uuid: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT uuid, key_id, name, period_start, period_end, total, used, adopted FROM quota_history
                 WHERE server = ?1 AND (?2 IS NULL OR uuid = ?2) ORDER BY period_start, id",
            )?;
            let rows = statement.query_map(params![server, uuid], |row| {
                Ok(HistoryRow {
                    uuid: row.get(0)?,
                    key_id: row.get(1)?,
                    name: row.get(2)?,
                    period_start: time_at(row, 3)?,
                    period_end: time_at(row, 4)?,
                    total: unsigned(row.get(5)?),
                    used: unsigned(row.get(6)?),
                    adopted: row.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// What the quota job remembers of a server (defaults before its first run).
    pub fn quota_memory(&self, server: &str) -> Result<ServerMemory, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT first_run_at, consecutive_failures, traffic_changed_at, sync_noted_at, resets_suspended_version
                 FROM quota_servers WHERE server = ?1",
                params![server],
                |row| {
                    Ok(ServerMemory {
                        first_run_at: opt_time_at(row, 0)?,
                        consecutive_failures: u32::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        traffic_changed_at: opt_time_at(row, 2)?,
                        sync_noted_at: opt_time_at(row, 3)?,
                        resets_suspended_version: row.get(4)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    /// Commit one quota run: ledger, history, intents and memory together, so a decided
    /// reset is never lost and never decided twice.
    pub fn quota_commit(&self, server: &str, commit: &QuotaCommit<'_>) -> Result<(), StoreError> {
        let now = ts(commit.now);
        self.with(|conn| {
            let tx = conn.transaction()?;
            upsert_entries(&tx, server, commit.entries)?;
            insert_history(&tx, server, commit.history)?;
            super::quota_intents::insert_intents(&tx, server, commit.intents, &now)?;
            save_memory(&tx, server, commit.memory, commit.api_version, &now)?;
            super::daily::add_daily_usage(&tx, server, commit.daily)?;
            if !commit.history.is_empty() {
                let cutoff = ts(commit.now - chrono::Duration::days(INTENTS_KEPT_DAYS));
                tx.execute(
                    "DELETE FROM quota_intents WHERE server = ?1 AND state = 'done' AND updated_at < ?2",
                    params![server, cutoff],
                )?;
            }
            tx.commit()
        })
    }

    /// Save the server's memory alone (a run that could not observe).
    pub fn quota_save_memory(
        &self,
        server: &str,
        memory: &ServerMemory,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            save_memory(&tx, server, memory, api_version, &ts(now))?;
            tx.commit()
        })
    }

    /// A quota run could not observe its server: count it; returns the failures in a row.
    pub fn quota_note_failure(&self, server: &str, now: DateTime<Utc>) -> Result<u32, StoreError> {
        self.with(|conn| {
            conn.query_row(
                "INSERT INTO quota_servers (server, consecutive_failures, updated_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (server) DO UPDATE SET consecutive_failures = consecutive_failures + 1, updated_at = ?2
                 RETURNING consecutive_failures",
                params![server, ts(now)],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    /// config_sync is about to restart Xray on `server`: counter drops after `at` are
    /// expected.
    pub fn quota_note_sync(&self, server: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO quota_servers (server, sync_noted_at, updated_at) VALUES (?1, ?2, ?2)
                 ON CONFLICT (server) DO UPDATE SET sync_noted_at = ?2, updated_at = ?2",
                params![server, ts(at)],
            )
            .map(drop)
        })
    }

    /// Record each of `period_keys` for (server, kind); true when any was new (the notice
    /// is due).
    pub fn quota_notice_once(
        &self,
        server: &str,
        kind: &str,
        period_keys: &[String],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut new = false;
            for key in period_keys {
                new |= tx.execute(
                    "INSERT OR IGNORE INTO quota_notices (server, kind, period_key, at) VALUES (?1, ?2, ?3, ?4)",
                    params![server, kind, key, ts(at)],
                )? > 0;
            }
            tx.commit()?;
            Ok(new)
        })
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
