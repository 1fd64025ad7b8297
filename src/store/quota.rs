//! The quota job's state: the usage ledger, finished periods, intents (resets and
//! deletes, written before their calls), per-server memory and once-per-period notices.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::FindingKind;
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
    /// What the job remembers of a server (defaults before its first run;
    /// `sync_noted_at` is not kept here: the job reads it from the sync attempts).
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
    /// Runs that could not observe the server, in a row (the rest of the memory is kept).
    fn save_failures<'a>(
        &'a self,
        server: &'a str,
        failures: u32,
        now: DateTime<Utc>,
    ) -> StoreFuture<'a, ()>;
    /// The periods for which a once-per-period notice of `kind` was raised on `server`.
    fn notices<'a>(&'a self, server: &'a str, kind: FindingKind) -> StoreFuture<'a, Vec<String>>;
    /// Record that the notice of `kind` was raised for `period_keys` (again is harmless).
    fn record_notices<'a>(
        &'a self,
        server: &'a str,
        kind: FindingKind,
        period_keys: &'a [String],
        at: DateTime<Utc>,
    ) -> StoreFuture<'a, ()>;
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
