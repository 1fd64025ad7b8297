//! The quota job's state: the usage ledger, finished periods, intents (resets and
//! deletes, written before their calls), per-server memory and once-per-period notices.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::quota::{Action, Entry, FinishedIntent, HistoryRow, Intent, ServerMemory};

/// What one quota run writes at once (one transaction): the ledger after its readings,
/// the periods that ended, the intents it decided, and the server's memory. A decided
/// reset is thus never lost and never decided twice.
#[derive(Debug, Clone)]
pub struct QuotaCommit {
    pub entries: Vec<Entry>,
    pub history: Vec<HistoryRow>,
    pub intents: Vec<Action>,
    pub memory: ServerMemory,
    pub api_version: String,
    pub now: DateTime<Utc>,
}

/// The quota job's repository.
pub trait QuotaLog: Send + Sync {
    /// The ledger of one server (keys gone from it included).
    fn ledger<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Entry>>;
    /// The keys still on their servers, as (server, entry), by server and name.
    fn usage<'a>(&'a self, server: Option<&'a str>) -> StoreFuture<'a, Vec<(String, Entry)>>;
    /// Finished periods of one server (of one key), oldest first.
    fn history<'a>(
        &'a self,
        server: &'a str,
        uuid: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<HistoryRow>>;
    /// What the job remembers of a server (defaults before its first run).
    fn memory<'a>(&'a self, server: &'a str) -> StoreFuture<'a, ServerMemory>;
    /// Commit one run. A new intent whose key is already done is left alone (at most
    /// once); a failed one is armed again.
    fn commit<'a>(&'a self, server: &'a str, commit: QuotaCommit) -> StoreFuture<'a, ()>;
    /// Save the server's memory alone.
    fn save_memory<'a>(
        &'a self,
        server: &'a str,
        memory: &'a ServerMemory,
        api_version: &'a str,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()>;
    /// A run could not observe its server: count it; returns the failures in a row.
    fn note_failure<'a>(&'a self, server: &'a str, now: DateTime<Utc>) -> StoreFuture<'a, u32>;
    /// config_sync is about to restart Xray on `server`: counter drops after `at` are
    /// expected.
    fn note_sync<'a>(&'a self, server: &'a str, at: DateTime<Utc>) -> StoreFuture<'a, ()>;
    /// Record each of `period_keys` for (server, kind); true when any was new.
    fn notice_once<'a>(
        &'a self,
        server: &'a str,
        kind: &'a str,
        period_keys: &'a [String],
        at: DateTime<Utc>,
    ) -> StoreFuture<'a, bool>;
    /// Intents not finished yet (pending or sending), oldest first.
    fn open_intents<'a>(&'a self, server: &'a str) -> StoreFuture<'a, Vec<Intent>>;
    /// Every intent of a server (of one key), oldest first.
    fn intents<'a>(
        &'a self,
        server: &'a str,
        uuid: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<Intent>>;
    /// Mark intents as about to be sent (right before their remote calls).
    fn mark_sending<'a>(&'a self, ids: &'a [i64], now: DateTime<Utc>) -> StoreFuture<'a, ()>;
    /// Finish intents (`Done` or `Failed`, with an outcome) together with the ledger
    /// entries their verification changed.
    fn finish<'a>(
        &'a self,
        server: &'a str,
        finished: &'a [FinishedIntent],
        entries: &'a [Entry],
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()>;
}
