//! Quota intents: resets and deletes written (pending) with the ledger change that decided
//! them, marked sending right before the remote call, finished after verification.
//! `intent_key` is unique per (server, key): each intent happens at most once.

use rusqlite::{Connection, Row, Transaction, params};

use super::columns::{at, bytes, count, unsigned};
use super::quota::upsert_entries;
use crate::model::quota::{Action, Entry, FinishedIntent, Intent};
use crate::model::stamp;

/// New intents; one already done for the same key is left alone (at most once), a failed
/// one is armed again.
pub(super) fn insert_intents(
    tx: &Transaction<'_>,
    server: &str,
    intents: &[Action],
    now: &str,
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO quota_intents (server, uuid, key_id, name, action, reason, period_start, allowance,
             intent_key, counter_before, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?11)
         ON CONFLICT (server, uuid, intent_key) DO UPDATE SET state = 'pending', outcome = NULL,
             error = NULL, counter_before = ?10, updated_at = ?11
             WHERE state = 'failed'",
    )?;
    for a in intents {
        statement.execute(params![
            server,
            a.uuid,
            a.key_id,
            a.name,
            a.kind,
            a.reason,
            stamp(a.period_start),
            i64::from(a.allowance),
            a.intent_key(),
            a.counter_before.map(bytes),
            now
        ])?;
    }
    Ok(())
}

const COLUMNS: &str = "id, uuid, key_id, name, action, reason, period_start, allowance, counter_before, state, outcome, error, created_at";

fn intent_from(row: &Row<'_>) -> rusqlite::Result<Intent> {
    Ok(Intent {
        id: row.get(0)?,
        action: Action {
            kind: row.get(4)?,
            reason: row.get(5)?,
            uuid: row.get(1)?,
            key_id: row.get(2)?,
            name: row.get(3)?,
            period_start: at(row, 6)?,
            allowance: count(row, 7)?,
            counter_before: row.get::<_, Option<i64>>(8)?.map(unsigned),
            call_server: true,
        },
        state: row.get(9)?,
        outcome: row.get(10)?,
        error: row.get(11)?,
        created_at: at(row, 12)?,
    })
}

/// Intents not finished yet (pending or sending), oldest first.
pub(super) fn open_intents(conn: &Connection, server: &str) -> rusqlite::Result<Vec<Intent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM quota_intents WHERE server = ?1 AND state IN ('pending', 'sending') ORDER BY id"
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(params![server], intent_from)?;
    rows.collect()
}

/// Every intent of a server (of one key), oldest first.
pub(super) fn intents(
    conn: &Connection,
    server: &str,
    uuid: Option<&str>,
) -> rusqlite::Result<Vec<Intent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM quota_intents WHERE server = ?1 AND (?2 IS NULL OR uuid = ?2) ORDER BY id"
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(params![server, uuid], intent_from)?;
    rows.collect()
}

/// Mark intents as about to be sent.
pub(super) fn mark_sending(conn: &mut Connection, ids: &[i64], now: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut statement = tx.prepare_cached(
            "UPDATE quota_intents SET state = 'sending', updated_at = ?2 WHERE id = ?1",
        )?;
        for id in ids {
            statement.execute(params![id, now])?;
        }
    }
    tx.commit()
}

/// Finish intents together with the ledger entries their verification changed.
pub(super) fn finish(
    conn: &mut Connection,
    server: &str,
    finished: &[FinishedIntent],
    entries: &[Entry],
    now: &str,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut statement = tx.prepare_cached(
            "UPDATE quota_intents SET state = ?2, outcome = ?3, error = ?4, updated_at = ?5 WHERE id = ?1",
        )?;
        for f in finished {
            statement.execute(params![f.id, f.state, f.outcome, f.error, now])?;
        }
    }
    let read_stamp = super::quota::current_read_stamp(&tx, server)?;
    upsert_entries(&tx, server, entries, read_stamp)?;
    tx.commit()
}
