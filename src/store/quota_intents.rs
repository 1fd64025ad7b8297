//! Quota intents: resets and deletes written (pending) with the ledger change that decided
//! them, marked sending right before the remote call, finished after verification.

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, Row, Transaction, params};

use super::quota::{bytes, time_at, unsigned, upsert_entries};
use super::{Store, StoreError, ts};
use crate::quota::Entry;
use crate::quota::plan::{Action, ActionKind, Reason};

/// Where an intent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    /// Written with the decision; the remote call has not been made.
    Pending,
    /// Marked right before the remote call: it may or may not have reached the server.
    Sending,
    /// Finished (verified, or judged).
    Done,
    /// The remote call failed; a delete is tried again when planned again.
    Failed,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::Pending => "pending",
            IntentState::Sending => "sending",
            IntentState::Done => "done",
            IntentState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<IntentState> {
        [
            IntentState::Pending,
            IntentState::Sending,
            IntentState::Done,
            IntentState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A stored intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub action: Action,
    pub state: IntentState,
    pub outcome: String,
    pub created_at: DateTime<Utc>,
}

/// New intents; one already done for the same key is left alone (at most once), a failed
/// one is armed again.
pub(super) fn insert_intents(
    tx: &Transaction<'_>,
    server: &str,
    intents: &[Action],
    now: &str,
) -> rusqlite::Result<()> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO quota_intents (server, uuid, key_id, name, action, reason, intent_key, counter_before, state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9)
         ON CONFLICT (server, uuid, intent_key) DO UPDATE SET state = 'pending', counter_before = ?8, updated_at = ?9
             WHERE state = 'failed'",
    )?;
    for a in intents {
        statement.execute(params![
            server,
            a.uuid,
            a.key_id,
            a.name,
            a.kind.as_str(),
            a.reason.as_str(),
            a.intent_key,
            a.counter_before.map(bytes),
            now
        ])?;
    }
    Ok(())
}

fn intent_from(row: &Row<'_>) -> rusqlite::Result<Intent> {
    let text = |index: usize| -> rusqlite::Result<String> { row.get(index) };
    let bad = |index: usize, value: String| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Text, value.into())
    };
    let kind = text(4)?;
    let reason = text(5)?;
    let state = text(8)?;
    Ok(Intent {
        id: row.get(0)?,
        action: Action {
            kind: ActionKind::parse(&kind).ok_or_else(|| bad(4, kind.clone()))?,
            reason: Reason::parse(&reason).ok_or_else(|| bad(5, reason.clone()))?,
            uuid: text(1)?,
            key_id: text(2)?,
            name: text(3)?,
            intent_key: text(6)?,
            counter_before: row.get::<_, Option<i64>>(7)?.map(unsigned),
            call_server: true,
        },
        state: IntentState::parse(&state).ok_or_else(|| bad(8, state.clone()))?,
        outcome: text(9)?,
        created_at: time_at(row, 10)?,
    })
}

fn query_intents(
    conn: &Connection,
    condition: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<Intent>> {
    let sql = format!(
        "SELECT id, uuid, key_id, name, action, reason, intent_key, counter_before, state, outcome, created_at
         FROM quota_intents WHERE {condition} ORDER BY id"
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(args, intent_from)?;
    rows.collect()
}

impl Store {
    /// Intents not finished yet (pending or sending), oldest first.
    pub fn quota_open_intents(&self, server: &str) -> Result<Vec<Intent>, StoreError> {
        self.with(|conn| {
            query_intents(
                conn,
                "server = ?1 AND state IN ('pending', 'sending')",
                &[&server],
            )
        })
    }

    /// Every intent of a server (of one key), oldest first.
    pub fn quota_intents(
        &self,
        server: &str,
        uuid: Option<&str>,
    ) -> Result<Vec<Intent>, StoreError> {
        self.with(|conn| {
            query_intents(
                conn,
                "server = ?1 AND (?2 IS NULL OR uuid = ?2)",
                &[&server, &uuid],
            )
        })
    }

    /// Mark intents as about to be sent (right before their remote calls).
    pub fn quota_mark_sending(&self, ids: &[i64], now: DateTime<Utc>) -> Result<(), StoreError> {
        let now = ts(now);
        self.with(|conn| {
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
        })
    }

    /// Finish intents (`Done` or `Failed`, with a one-word outcome) together with the ledger
    /// entries their verification changed.
    pub fn quota_finish(
        &self,
        server: &str,
        finished: &[(i64, IntentState, String)],
        entries: &[Entry],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = ts(now);
        self.with(|conn| {
            let tx = conn.transaction()?;
            {
                let mut statement = tx.prepare_cached(
                    "UPDATE quota_intents SET state = ?2, outcome = ?3, updated_at = ?4 WHERE id = ?1",
                )?;
                for (id, state, outcome) in finished {
                    statement.execute(params![id, state.as_str(), outcome, now])?;
                }
            }
            upsert_entries(&tx, server, entries)?;
            tx.commit()
        })
    }
}
