//! The quota job's state: the usage ledger, finished periods, intents (resets and
//! deletes, written before their calls), per-server memory and once-per-period notices.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::FindingKind;
use crate::model::quota::{Action, Entry, FinishedIntent, HistoryRow, Intent, ServerMemory};
use crate::model::report::DailyUsage;

/// What one quota run writes at once (one transaction): the ledger after its readings,
/// the periods that ended, the intents it decided, the server's memory and the run's
/// growth per key and day. A decided reset is thus never lost and never decided twice,
/// and no traffic is counted twice in the daily totals.
#[derive(Debug, Clone)]
pub struct QuotaCommit {
    pub entries: Vec<Entry>,
    pub history: Vec<HistoryRow>,
    pub intents: Vec<Action>,
    pub memory: ServerMemory,
    pub api_version: String,
    pub now: DateTime<Utc>,
    /// When the run read the server's counters (`None`: it did not, e.g. a commit of
    /// the memory alone). The ledger keeps this once per server: a key read then is not
    /// rewritten for its `read_at` alone, so a run writes only the keys whose figures
    /// changed. Entries left out keep the reading time they had, except `reread` ones.
    pub read_at: Option<DateTime<Utc>>,
    /// Keys read at `read_at` whose row is otherwise unchanged (the job compared them
    /// with the ledger it read): not rewritten, only their reading time moves to
    /// `read_at`. At 100 000 keys an idle run is then one statement per changed key, not
    /// one per key. Ignored without `read_at`.
    pub reread: Vec<String>,
    /// This run's growth per key, for the daily totals the report reads.
    pub daily: Vec<DailyUsage>,
}

/// The quota job's repository.
pub trait QuotaLog: Send + Sync {
    /// The ledger of one server (keys gone from it included).
    fn ledger(&self, server: &str) -> StoreFuture<'_, Vec<Entry>>;
    /// The keys still on their servers, as (server, entry), by server and name.
    fn usage(&self, server: Option<&str>) -> StoreFuture<'_, Vec<(String, Entry)>>;
    /// Finished periods of one server (of one key), oldest first.
    fn history(&self, server: &str, uuid: Option<&str>) -> StoreFuture<'_, Vec<HistoryRow>>;
    /// What the job remembers of a server (defaults before its first run;
    /// `sync_noted_at` is not kept here: the job reads it from the sync attempts).
    fn memory(&self, server: &str) -> StoreFuture<'_, ServerMemory>;
    /// Commit one run. A new intent whose key is already done is left alone (at most
    /// once); a failed one is armed again.
    fn commit(&self, server: &str, commit: QuotaCommit) -> StoreFuture<'_, ()>;
    /// Runs that could not observe the server, in a row (the rest of the memory is kept).
    fn save_failures(&self, server: &str, failures: u32, now: DateTime<Utc>)
    -> StoreFuture<'_, ()>;
    /// The periods for which a once-per-period notice of `kind` was raised on `server`.
    fn notices(&self, server: &str, kind: FindingKind) -> StoreFuture<'_, Vec<String>>;
    /// Record that the notice of `kind` was raised for `period_keys` (again is harmless).
    fn record_notices(
        &self,
        server: &str,
        kind: FindingKind,
        period_keys: &[String],
        at: DateTime<Utc>,
    ) -> StoreFuture<'_, ()>;
    /// Intents not finished yet (pending or sending), oldest first.
    fn open_intents(&self, server: &str) -> StoreFuture<'_, Vec<Intent>>;
    /// Every intent of a server (of one key), oldest first.
    fn intents(&self, server: &str, uuid: Option<&str>) -> StoreFuture<'_, Vec<Intent>>;
    /// Mark intents as about to be sent (right before their remote calls).
    fn mark_sending(&self, ids: &[i64], now: DateTime<Utc>) -> StoreFuture<'_, ()>;
    /// Finish intents (`Done` or `Failed`, with an outcome) together with the ledger
    /// entries their verification changed.
    fn finish(
        &self,
        server: &str,
        finished: &[FinishedIntent],
        entries: &[Entry],
        now: DateTime<Utc>,
    ) -> StoreFuture<'_, ()>;
}
