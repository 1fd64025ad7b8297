//! The quota tables: the usage ledger, finished periods, per-server memory and
//! once-per-period notices (intents are in `quota_intents.rs`). Longer than 400 lines
//! on purpose: how a ledger row is written (only when it changed, its reading time kept
//! once per server) reads best next to how it is read back.

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

/// A row's `read_at` is NULL when the key was read at the server's `ledger_read_at` (the
/// last quota run's reading): moving one time per server instead of one per row is what
/// lets a run whose counters did not move write nothing to the ledger.
const ENTRY_COLUMNS: &str = "l.uuid, l.key_id, l.name, l.counter, l.used, l.period_total, l.period_start, l.adopted, l.warned, l.exceeded_at, l.exceed_resets, l.delete_due, l.expect_drop, l.last_reset, l.first_seen, COALESCE(l.read_at, s.ledger_read_at), l.changed_at, l.gone_at";

/// The ledger with each server's reading time.
const LEDGER: &str = "quota_ledger l LEFT JOIN quota_servers s ON s.server = l.server";

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

/// Write ledger entries. `read_stamp`: the time this commit records as the server's
/// `ledger_read_at`; an entry read then is stored without a time of its own. A row whose
/// stored form would not change is not written at all (the upsert's `WHERE`), so a run
/// writes only the keys whose figures moved.
pub(super) fn upsert_entries(
    tx: &Transaction<'_>,
    server: &str,
    entries: &[Entry],
    read_stamp: Option<DateTime<Utc>>,
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO quota_ledger (server, uuid, key_id, name, counter, used, period_total, period_start, adopted,
             warned, exceeded_at, exceed_resets, delete_due, expect_drop, last_reset, first_seen, read_at, changed_at, gone_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (server, uuid) DO UPDATE SET key_id = ?3, name = ?4, counter = ?5, used = ?6,
             period_total = ?7, period_start = ?8, adopted = ?9, warned = ?10, exceeded_at = ?11,
             exceed_resets = ?12, delete_due = ?13, expect_drop = ?14, last_reset = ?15, first_seen = ?16,
             read_at = ?17, changed_at = ?18, gone_at = ?19
         WHERE (quota_ledger.key_id, quota_ledger.name, quota_ledger.counter, quota_ledger.used,
                quota_ledger.period_total, quota_ledger.period_start, quota_ledger.adopted, quota_ledger.warned,
                quota_ledger.exceeded_at, quota_ledger.exceed_resets, quota_ledger.delete_due,
                quota_ledger.expect_drop, quota_ledger.last_reset, quota_ledger.first_seen,
                quota_ledger.read_at, quota_ledger.changed_at, quota_ledger.gone_at)
            IS NOT (?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?;
    // Most entries share a few instants (this run's): format each once.
    let mut stamps = Stamps::default();
    // In key order: each statement finds its row next to the last one's, in pages the
    // cache still holds (in the plan's hash order every row was a random B-tree walk).
    let mut in_key_order: Vec<&Entry> = entries.iter().collect();
    in_key_order.sort_unstable_by(|a, b| a.uuid.cmp(&b.uuid));
    for e in in_key_order {
        let read_at = e.read_at.filter(|at| Some(*at) != read_stamp);
        statement.execute(params![
            server,
            e.uuid,
            e.key_id,
            e.name,
            e.counter.map(bytes),
            bytes(e.used),
            bytes(e.period_total),
            stamps.of(e.period_start),
            e.adopted,
            i64::from(e.warned),
            stamps.of_opt(e.exceeded_at),
            i64::from(e.exceed_resets),
            stamps.of_opt(e.delete_due),
            e.expect_drop,
            stamps.of_opt(e.last_reset),
            stamps.of(e.first_seen),
            stamps.of_opt(read_at),
            stamps.of_opt(e.changed_at),
            stamps.of_opt(e.gone_at),
        ])?;
    }
    Ok(())
}

/// Timestamps formatted once each (a ledger of 100 000 keys holds a handful of instants).
#[derive(Default)]
struct Stamps {
    known: std::collections::HashMap<DateTime<Utc>, std::rc::Rc<str>>,
}

impl Stamps {
    fn of(&mut self, at: DateTime<Utc>) -> std::rc::Rc<str> {
        if self.known.len() > 4096 {
            self.known.clear();
        }
        self.known
            .entry(at)
            .or_insert_with(|| stamp(at).into())
            .clone()
    }

    fn of_opt(&mut self, at: Option<DateTime<Utc>>) -> Option<std::rc::Rc<str>> {
        at.map(|at| self.of(at))
    }
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
    read_stamp: Option<DateTime<Utc>>,
    now: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO quota_servers (server, first_run_at, api_version, consecutive_failures, traffic_changed_at,
             resets_suspended_version, updated_at, ledger_read_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (server) DO UPDATE SET first_run_at = ?2, api_version = ?3, consecutive_failures = ?4,
             traffic_changed_at = ?5, resets_suspended_version = ?6, updated_at = ?7,
             ledger_read_at = COALESCE(?8, ledger_read_at)",
        params![
            server,
            memory.first_run_at.map(stamp),
            api_version,
            i64::from(memory.consecutive_failures),
            memory.traffic_changed_at.map(stamp),
            memory.resets_suspended_version,
            now,
            read_stamp.map(stamp)
        ],
    )
    .map(drop)
}

/// The server's `ledger_read_at` (rows stored without a time of their own were read then).
pub(super) fn current_read_stamp(
    tx: &Transaction<'_>,
    server: &str,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    tx.query_row(
        "SELECT ledger_read_at FROM quota_servers WHERE server = ?1",
        params![server],
        |row| opt_at(row, 0),
    )
    .optional()
    .map(Option::flatten)
}

/// Rows of the server still stored without a time of their own, read at the previous
/// `ledger_read_at`, get that time before the stamp moves on, unless this commit
/// writes them (their uuids are `written`) or they were read again (`reread`: read at
/// the new stamp, their rows otherwise unchanged). A `reread` row that had a time of its
/// own loses it: it was read at the new stamp.
fn keep_previous_reads(
    tx: &Transaction<'_>,
    server: &str,
    written: &foldhash::HashSet<&str>,
    reread: &foldhash::HashSet<&str>,
) -> rusqlite::Result<()> {
    // With nothing reread only rows without a time of their own can need one.
    let mut select = tx.prepare_cached(
        "SELECT uuid, read_at IS NULL FROM quota_ledger WHERE server = ?1 AND (read_at IS NULL OR ?2)",
    )?;
    let mut pin = Vec::new();
    let mut unpin = Vec::new();
    let rows = select.query_map(params![server, !reread.is_empty()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
    })?;
    for row in rows {
        let (uuid, stamped_by_server) = row?;
        let read_again = reread.contains(uuid.as_str());
        match stamped_by_server {
            true if !read_again && !written.contains(uuid.as_str()) => pin.push(uuid),
            false if read_again => unpin.push(uuid),
            _ => {}
        }
    }
    let mut update = tx.prepare_cached(
        "UPDATE quota_ledger SET read_at = (SELECT ledger_read_at FROM quota_servers WHERE server = ?1)
         WHERE server = ?1 AND uuid = ?2 AND read_at IS NULL",
    )?;
    for uuid in pin {
        update.execute(params![server, uuid])?;
    }
    let mut clear = tx
        .prepare_cached("UPDATE quota_ledger SET read_at = NULL WHERE server = ?1 AND uuid = ?2")?;
    for uuid in unpin {
        clear.execute(params![server, uuid])?;
    }
    Ok(())
}

impl QuotaLog for SqliteStore {
    fn ledger(&self, server: &str) -> StoreFuture<'_, Vec<Entry>> {
        let server = server.to_owned();
        self.call(move |conn| {
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM {LEDGER} WHERE l.server = ?1");
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![server], entry_from)?;
            rows.collect()
        })
    }

    fn usage(&self, server: Option<&str>) -> StoreFuture<'_, Vec<(String, Entry)>> {
        let server = server.map(str::to_owned);
        self.call(move |conn| {
            let sql = format!(
                "SELECT {ENTRY_COLUMNS}, l.server FROM {LEDGER}
                 WHERE l.gone_at IS NULL AND (?1 IS NULL OR l.server = ?1) ORDER BY l.server, l.name"
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
        let cache = self.cache.clone();
        self.call(move |conn| {
            let now = stamp(commit.now);
            let tx = conn.transaction()?;
            let read_stamp = match commit.read_at {
                Some(read_at) => {
                    let written = commit.entries.iter().map(|e| e.uuid.as_str()).collect();
                    let reread = commit.reread.iter().map(String::as_str).collect();
                    keep_previous_reads(&tx, &server, &written, &reread)?;
                    Some(read_at)
                }
                None => current_read_stamp(&tx, &server)?,
            };
            upsert_entries(&tx, &server, &commit.entries, read_stamp)?;
            insert_history(&tx, &server, &commit.history)?;
            quota_intents::insert_intents(&tx, &server, &commit.intents, &now)?;
            save_memory(
                &tx,
                &server,
                &commit.memory,
                &commit.api_version,
                commit.read_at,
                &now,
            )?;
            super::report::add_daily_usage(&tx, &server, &commit.daily)?;
            if !commit.history.is_empty() {
                let cutoff = stamp(commit.now - chrono::Duration::days(INTENTS_KEPT_DAYS));
                tx.execute(
                    "DELETE FROM quota_intents WHERE server = ?1 AND state = 'done' AND updated_at < ?2",
                    params![server, cutoff],
                )?;
            }
            tx.commit()?;
            cache.after_commit(conn, commit.entries.len() + commit.reread.len());
            Ok(())
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
