//! The quota tables: the usage ledger, finished periods, per-server memory and
//! once-per-period notices (intents are in `quota_intents.rs`).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use super::columns::{at, bytes, count, opt_at, unsigned};
use super::quota_intents;
use crate::model::quota::{Entry, FinishedIntent, HistoryRow, Intent, ServerMemory};
use crate::model::{FindingKind, stamp};
use crate::store::{QuotaCommit, QuotaLog, StoreFuture};

/// Finished intents are kept this long (a year of periods, for `status` and audits).
const INTENTS_KEPT_DAYS: i64 = 400;

const ENTRY_COLUMNS: &str = "uuid, key_id, name, counter, used, period_total, period_start, adopted, warned, exceeded_at, exceed_resets, delete_due, expect_drop, last_reset, first_seen, read_at, changed_at, gone_at";

fn entry_from(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        uuid: row.get(0)?,
        key_id: row.get(1)?,
        name: row.get(2)?,
        counter: row.get::<_, Option<i64>>(3)?.map(unsigned),
        used: unsigned(row.get(4)?),
        period_total: unsigned(row.get(5)?),
        period_start: at(row, 6)?,
        adopted: row.get(7)?,
        warned: u8::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        exceeded_at: opt_at(row, 9)?,
        exceed_resets: count(row, 10)?,
        delete_due: opt_at(row, 11)?,
        expect_drop: row.get(12)?,
        last_reset: opt_at(row, 13)?,
        first_seen: at(row, 14)?,
        read_at: opt_at(row, 15)?,
        changed_at: opt_at(row, 16)?,
        gone_at: opt_at(row, 17)?,
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
            stamp(e.period_start),
            e.adopted,
            i64::from(e.warned),
            e.exceeded_at.map(stamp),
            i64::from(e.exceed_resets),
            e.delete_due.map(stamp),
            e.expect_drop,
            e.last_reset.map(stamp),
            stamp(e.first_seen),
            e.read_at.map(stamp),
            e.changed_at.map(stamp),
            e.gone_at.map(stamp),
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
            stamp(h.period_start),
            stamp(h.period_end),
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
             resets_suspended_version, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (server) DO UPDATE SET first_run_at = ?2, api_version = ?3, consecutive_failures = ?4,
             traffic_changed_at = ?5, resets_suspended_version = ?6, updated_at = ?7",
        params![
            server,
            memory.first_run_at.map(stamp),
            api_version,
            i64::from(memory.consecutive_failures),
            memory.traffic_changed_at.map(stamp),
            memory.resets_suspended_version,
            now
        ],
    )
    .map(drop)
}

impl QuotaLog for SqliteStore {
    fn ledger(&self, server: &str) -> StoreFuture<'_, Vec<Entry>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM quota_ledger WHERE server = ?1");
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(params![server], entry_from)?;
            rows.collect()
        })
    }

    fn usage(&self, server: Option<&str>) -> StoreFuture<'_, Vec<(String, Entry)>> {
        let server = server.map(str::to_owned);
        self.call(move |conn| {
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

    fn history(&self, server: &str, uuid: Option<&str>) -> StoreFuture<'_, Vec<HistoryRow>> {
        let (server, uuid) = (server.to_owned(), uuid.map(str::to_owned));
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT uuid, key_id, name, period_start, period_end, total, used, adopted FROM quota_history
                 WHERE server = ?1 AND (?2 IS NULL OR uuid = ?2) ORDER BY period_start, id",
            )?;
            let rows = statement.query_map(params![server, uuid], |row| {
                Ok(HistoryRow {
                    uuid: row.get(0)?,
                    key_id: row.get(1)?,
                    name: row.get(2)?,
                    period_start: at(row, 3)?,
                    period_end: at(row, 4)?,
                    total: unsigned(row.get(5)?),
                    used: unsigned(row.get(6)?),
                    adopted: row.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    fn memory(&self, server: &str) -> StoreFuture<'_, ServerMemory> {
        let server = server.to_owned();
        self.call(move |conn| {
            // sync_noted_at is not read: the quota job takes it from the sync attempts.
            conn.query_row(
                "SELECT first_run_at, consecutive_failures, traffic_changed_at, resets_suspended_version
                 FROM quota_servers WHERE server = ?1",
                params![server],
                |row| {
                    Ok(ServerMemory {
                        first_run_at: opt_at(row, 0)?,
                        consecutive_failures: count(row, 1)?,
                        traffic_changed_at: opt_at(row, 2)?,
                        sync_noted_at: None,
                        resets_suspended_version: row.get(3)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    fn commit(&self, server: &str, commit: QuotaCommit) -> StoreFuture<'_, ()> {
        let server = server.to_owned();
        self.call(move |conn| {
            let now = stamp(commit.now);
            let tx = conn.transaction()?;
            upsert_entries(&tx, &server, &commit.entries)?;
            insert_history(&tx, &server, &commit.history)?;
            quota_intents::insert_intents(&tx, &server, &commit.intents, &now)?;
            save_memory(&tx, &server, &commit.memory, &commit.api_version, &now)?;
            super::report::add_daily_usage(&tx, &server, &commit.daily)?;
            if !commit.history.is_empty() {
                let cutoff = stamp(commit.now - chrono::Duration::days(INTENTS_KEPT_DAYS));
                tx.execute(
                    "DELETE FROM quota_intents WHERE server = ?1 AND state = 'done' AND updated_at < ?2",
                    params![server, cutoff],
                )?;
            }
            tx.commit()
        })
    }

    fn save_failures(
        &self,
        server: &str,
        failures: u32,
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let server = server.to_owned();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO quota_servers (server, consecutive_failures, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (server) DO UPDATE SET consecutive_failures = ?2, updated_at = ?3",
                params![server, i64::from(failures), stamp(now)],
            )
            .map(drop)
        })
    }

    fn notices(&self, server: &str, kind: FindingKind) -> StoreFuture<'_, Vec<String>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT period_key FROM quota_notices WHERE server = ?1 AND kind = ?2 ORDER BY period_key",
            )?;
            let rows = statement.query_map(params![server, kind], |row| row.get(0))?;
            rows.collect()
        })
    }

    fn record_notices(
        &self,
        server: &str,
        kind: FindingKind,
        period_keys: &[String],
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, keys) = (server.to_owned(), period_keys.to_vec());
        self.call(move |conn| {
            let tx = conn.transaction()?;
            for key in &keys {
                tx.execute(
                    "INSERT OR IGNORE INTO quota_notices (server, kind, period_key, at) VALUES (?1, ?2, ?3, ?4)",
                    params![server, kind, key, stamp(at)],
                )?;
            }
            tx.commit()
        })
    }

    fn open_intents(&self, server: &str) -> StoreFuture<'_, Vec<Intent>> {
        let server = server.to_owned();
        self.call(move |conn| quota_intents::open_intents(conn, &server))
    }

    fn intents(&self, server: &str, uuid: Option<&str>) -> StoreFuture<'_, Vec<Intent>> {
        let (server, uuid) = (server.to_owned(), uuid.map(str::to_owned));
        self.call(move |conn| quota_intents::intents(conn, &server, uuid.as_deref()))
    }

    fn mark_sending(&self, ids: &[i64], now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let ids = ids.to_vec();
        self.call(move |conn| quota_intents::mark_sending(conn, &ids, &stamp(now)))
    }

    fn finish(
        &self,
        server: &str,
        finished: &[FinishedIntent],
        entries: &[Entry],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, finished, entries) = (server.to_owned(), finished.to_vec(), entries.to_vec());
        self.call(move |conn| {
            quota_intents::finish(conn, &server, &finished, &entries, &stamp(now))
        })
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
