//! The quota tables: the usage ledger, finished periods, intents (resets and deletes:
//! written pending with the ledger change that decided them, each at most once per
//! `intent_key`), per-server memory and once-per-period notices. Longer than 400 lines
//! on purpose: the SQLite backend's `quota.rs` and `quota_intents.rs` in one file, so
//! the two stay easy to compare statement by statement.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PgStore;
use super::columns::{PgResult, at, bytes, count, flag, get, int, opt_at, opt_unsigned, unsigned};
use crate::model::quota::{Action, Entry, FinishedIntent, HistoryRow, Intent, ServerMemory};
use crate::model::{FindingKind, stamp};
use crate::store::{QuotaCommit, QuotaLog, StoreFuture};

/// Finished intents are kept this long (as on SQLite).
const INTENTS_KEPT_DAYS: i64 = 400;

/// `read_at` NULL: read at the server's `ledger_read_at` (a SQLite store copied over
/// keeps that form; see `store/sqlite/quota.rs`).
const ENTRY_COLUMNS: &str = "l.uuid, l.key_id, l.name, l.counter, l.used, l.period_total, l.period_start, l.adopted, l.warned, l.exceeded_at, l.exceed_resets, l.delete_due, l.expect_drop, l.last_reset, l.first_seen, COALESCE(l.read_at, s.ledger_read_at), l.changed_at, l.gone_at";

/// The ledger with each server's reading time.
const LEDGER: &str = "quota_ledger l LEFT JOIN quota_servers s ON s.server = l.server";

fn entry_from(row: &Row) -> PgResult<Entry> {
    Ok(Entry {
        uuid: get(row, 0)?,
        key_id: get(row, 1)?,
        name: get(row, 2)?,
        counter: opt_unsigned(row, 3)?,
        used: unsigned(row, 4)?,
        period_total: unsigned(row, 5)?,
        period_start: at(row, 6)?,
        adopted: flag(row, 7)?,
        warned: u8::try_from(get::<i64>(row, 8)?).unwrap_or(0),
        exceeded_at: opt_at(row, 9)?,
        exceed_resets: count(row, 10)?,
        delete_due: opt_at(row, 11)?,
        expect_drop: flag(row, 12)?,
        last_reset: opt_at(row, 13)?,
        first_seen: at(row, 14)?,
        read_at: opt_at(row, 15)?,
        changed_at: opt_at(row, 16)?,
        gone_at: opt_at(row, 17)?,
    })
}

async fn upsert_entries(tx: &Transaction<'_>, server: &str, entries: &[Entry]) -> PgResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO quota_ledger (server, uuid, key_id, name, counter, used, period_total, period_start, adopted,
                 warned, exceeded_at, exceed_resets, delete_due, expect_drop, last_reset, first_seen, read_at, changed_at, gone_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             ON CONFLICT (server, uuid) DO UPDATE SET key_id = $3, name = $4, counter = $5, used = $6,
                 period_total = $7, period_start = $8, adopted = $9, warned = $10, exceeded_at = $11,
                 exceed_resets = $12, delete_due = $13, expect_drop = $14, last_reset = $15, first_seen = $16,
                 read_at = $17, changed_at = $18, gone_at = $19",
        )
        .await?;
    for e in entries {
        tx.execute(
            &statement,
            &[
                &server,
                &e.uuid,
                &e.key_id,
                &e.name,
                &e.counter.map(bytes),
                &bytes(e.used),
                &bytes(e.period_total),
                &stamp(e.period_start),
                &int(e.adopted),
                &i64::from(e.warned),
                &e.exceeded_at.map(stamp),
                &i64::from(e.exceed_resets),
                &e.delete_due.map(stamp),
                &int(e.expect_drop),
                &e.last_reset.map(stamp),
                &stamp(e.first_seen),
                &e.read_at.map(stamp),
                &e.changed_at.map(stamp),
                &e.gone_at.map(stamp),
            ],
        )
        .await?;
    }
    Ok(())
}

async fn insert_history(tx: &Transaction<'_>, server: &str, rows: &[HistoryRow]) -> PgResult<()> {
    for h in rows {
        tx.execute(
            "INSERT INTO quota_history (server, uuid, key_id, name, period_start, period_end, total, used, adopted)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &server,
                &h.uuid,
                &h.key_id,
                &h.name,
                &stamp(h.period_start),
                &stamp(h.period_end),
                &bytes(h.total),
                &bytes(h.used),
                &int(h.adopted),
            ],
        )
        .await?;
    }
    Ok(())
}

/// New intents; one already done for the same key is left alone (at most once), a failed
/// one is armed again.
async fn insert_intents(
    tx: &Transaction<'_>,
    server: &str,
    intents: &[Action],
    now: &str,
) -> PgResult<()> {
    for a in intents {
        tx.execute(
            "INSERT INTO quota_intents (server, uuid, key_id, name, action, reason, period_start, allowance,
                 intent_key, counter_before, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11, $11)
             ON CONFLICT (server, uuid, intent_key) DO UPDATE SET state = 'pending', outcome = NULL,
                 error = NULL, counter_before = $10, updated_at = $11
                 WHERE quota_intents.state = 'failed'",
            &[
                &server,
                &a.uuid,
                &a.key_id,
                &a.name,
                &a.kind,
                &a.reason,
                &stamp(a.period_start),
                &i64::from(a.allowance),
                &a.intent_key(),
                &a.counter_before.map(bytes),
                &now,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn save_memory(
    tx: &Transaction<'_>,
    server: &str,
    memory: &ServerMemory,
    api_version: &str,
    now: &str,
) -> PgResult<()> {
    tx.execute(
        "INSERT INTO quota_servers (server, first_run_at, api_version, consecutive_failures, traffic_changed_at,
             resets_suspended_version, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (server) DO UPDATE SET first_run_at = $2, api_version = $3, consecutive_failures = $4,
             traffic_changed_at = $5, resets_suspended_version = $6, updated_at = $7",
        &[
            &server,
            &memory.first_run_at.map(stamp),
            &api_version,
            &i64::from(memory.consecutive_failures),
            &memory.traffic_changed_at.map(stamp),
            &memory.resets_suspended_version,
            &now,
        ],
    )
    .await?;
    Ok(())
}

const INTENT_COLUMNS: &str = "id, uuid, key_id, name, action, reason, period_start, allowance, counter_before, state, outcome, error, created_at";

fn intent_from(row: &Row) -> PgResult<Intent> {
    Ok(Intent {
        id: get(row, 0)?,
        action: Action {
            kind: get(row, 4)?,
            reason: get(row, 5)?,
            uuid: get(row, 1)?,
            key_id: get(row, 2)?,
            name: get(row, 3)?,
            period_start: at(row, 6)?,
            allowance: count(row, 7)?,
            counter_before: opt_unsigned(row, 8)?,
            call_server: true,
        },
        state: get(row, 9)?,
        outcome: get(row, 10)?,
        error: get(row, 11)?,
        created_at: at(row, 12)?,
    })
}

impl QuotaLog for PgStore {
    fn ledger(&self, server: &str) -> StoreFuture<'_, Vec<Entry>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let sql = format!("SELECT {ENTRY_COLUMNS} FROM {LEDGER} WHERE l.server = $1");
            client
                .query(&sql, &[&server])
                .await?
                .iter()
                .map(entry_from)
                .collect()
        })
    }

    fn usage(&self, server: Option<&str>) -> StoreFuture<'_, Vec<(String, Entry)>> {
        let server = server.map(str::to_owned);
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {ENTRY_COLUMNS}, l.server FROM {LEDGER}
                 WHERE l.gone_at IS NULL AND ($1::TEXT IS NULL OR l.server = $1) ORDER BY l.server, l.name"
            );
            client
                .query(&sql, &[&server])
                .await?
                .iter()
                .map(|row| Ok((get(row, 18)?, entry_from(row)?)))
                .collect()
        })
    }

    fn history(&self, server: &str, uuid: Option<&str>) -> StoreFuture<'_, Vec<HistoryRow>> {
        let (server, uuid) = (server.to_owned(), uuid.map(str::to_owned));
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT uuid, key_id, name, period_start, period_end, total, used, adopted FROM quota_history
                     WHERE server = $1 AND ($2::TEXT IS NULL OR uuid = $2) ORDER BY period_start, id",
                    &[&server, &uuid],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(HistoryRow {
                        uuid: get(row, 0)?,
                        key_id: get(row, 1)?,
                        name: get(row, 2)?,
                        period_start: at(row, 3)?,
                        period_end: at(row, 4)?,
                        total: unsigned(row, 5)?,
                        used: unsigned(row, 6)?,
                        adopted: flag(row, 7)?,
                    })
                })
                .collect()
        })
    }

    fn memory(&self, server: &str) -> StoreFuture<'_, ServerMemory> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            // sync_noted_at is not read: the quota job takes it from the sync attempts.
            let row = client
                .query_opt(
                    "SELECT first_run_at, consecutive_failures, traffic_changed_at, resets_suspended_version
                     FROM quota_servers WHERE server = $1",
                    &[&server],
                )
                .await?;
            let Some(row) = row else {
                return Ok(ServerMemory::default());
            };
            Ok(ServerMemory {
                first_run_at: opt_at(&row, 0)?,
                consecutive_failures: count(&row, 1)?,
                traffic_changed_at: opt_at(&row, 2)?,
                sync_noted_at: None,
                resets_suspended_version: get(&row, 3)?,
            })
        })
    }

    fn commit(&self, server: &str, commit: QuotaCommit) -> StoreFuture<'_, ()> {
        let server = server.to_owned();
        self.run(async move {
            let now = stamp(commit.now);
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            upsert_entries(&tx, &server, &commit.entries).await?;
            if let (Some(read_at), false) = (commit.read_at, commit.reread.is_empty()) {
                // Read again, otherwise unchanged: only the reading time moves.
                tx.execute(
                    "UPDATE quota_ledger SET read_at = $3 WHERE server = $1 AND uuid = ANY($2)",
                    &[&server, &commit.reread, &stamp(read_at)],
                )
                .await?;
            }
            insert_history(&tx, &server, &commit.history).await?;
            insert_intents(&tx, &server, &commit.intents, &now).await?;
            save_memory(&tx, &server, &commit.memory, &commit.api_version, &now).await?;
            super::report::add_daily_usage(&tx, &server, &commit.daily).await?;
            if !commit.history.is_empty() {
                let cutoff = stamp(commit.now - chrono::Duration::days(INTENTS_KEPT_DAYS));
                tx.execute(
                    "DELETE FROM quota_intents WHERE server = $1 AND state = 'done' AND updated_at < $2",
                    &[&server, &cutoff],
                )
                .await?;
            }
            tx.commit().await?;
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
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO quota_servers (server, consecutive_failures, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (server) DO UPDATE SET consecutive_failures = $2, updated_at = $3",
                    &[&server, &i64::from(failures), &stamp(now)],
                )
                .await?;
            Ok(())
        })
    }

    fn notices(&self, server: &str, kind: FindingKind) -> StoreFuture<'_, Vec<String>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            client
                .query(
                    "SELECT period_key FROM quota_notices WHERE server = $1 AND kind = $2 ORDER BY period_key",
                    &[&server, &kind],
                )
                .await?
                .iter()
                .map(|row| get(row, 0))
                .collect()
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
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for key in &keys {
                tx.execute(
                    "INSERT INTO quota_notices (server, kind, period_key, at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&server, &kind, key, &stamp(at)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn open_intents(&self, server: &str) -> StoreFuture<'_, Vec<Intent>> {
        let server = server.to_owned();
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {INTENT_COLUMNS} FROM quota_intents WHERE server = $1 AND state IN ('pending', 'sending') ORDER BY id"
            );
            client.query(&sql, &[&server]).await?.iter().map(intent_from).collect()
        })
    }

    fn intents(&self, server: &str, uuid: Option<&str>) -> StoreFuture<'_, Vec<Intent>> {
        let (server, uuid) = (server.to_owned(), uuid.map(str::to_owned));
        self.run(async move {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {INTENT_COLUMNS} FROM quota_intents WHERE server = $1 AND ($2::TEXT IS NULL OR uuid = $2) ORDER BY id"
            );
            client
                .query(&sql, &[&server, &uuid])
                .await?
                .iter()
                .map(intent_from)
                .collect()
        })
    }

    fn mark_sending(&self, ids: &[i64], now: DateTime<Utc>) -> StoreFuture<'_, ()> {
        let ids = ids.to_vec();
        self.run(async move {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE quota_intents SET state = 'sending', updated_at = $2 WHERE id = ANY($1)",
                    &[&ids, &stamp(now)],
                )
                .await?;
            Ok(())
        })
    }

    fn finish(
        &self,
        server: &str,
        finished: &[FinishedIntent],
        entries: &[Entry],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()> {
        let (server, finished, entries) = (server.to_owned(), finished.to_vec(), entries.to_vec());
        self.run(async move {
            let now = stamp(now);
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for f in &finished {
                tx.execute(
                    "UPDATE quota_intents SET state = $2, outcome = $3, error = $4, updated_at = $5 WHERE id = $1",
                    &[&f.id, &f.state, &f.outcome, &f.error, &now],
                )
                .await?;
            }
            upsert_entries(&tx, &server, &entries).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
