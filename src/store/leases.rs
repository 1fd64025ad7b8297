//! Per-(server, job) leases: no two processes (the daemon, and a `check` beside it) run
//! the same job on the same server at once. Within one process the runner's in-memory
//! guard keeps runs apart; the lease, kept in the store all processes share, keeps
//! processes apart. (Two daemons on one state directory synced twice as often as
//! allowed; `run` also locks the directory, but `check` may run beside it.)

use super::StoreFuture;
use crate::model::{JobKind, Lease};

/// What asking for a lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseGrant {
    /// Taken (or extended, when the holder already had it).
    Granted,
    /// Someone else holds it and it has not expired.
    HeldBy(Lease),
}

/// The leases.
pub trait LeaseLog: Send + Sync {
    /// Take `wanted` (its `acquired_at` is now): granted when (server, job) has no lease,
    /// when its lease expired by `wanted.acquired_at`, or when `wanted.holder` holds it
    /// already (then its expiry moves to `wanted.expires_at`: a renewal). Otherwise the
    /// current lease, unchanged.
    fn acquire(&self, wanted: &Lease) -> StoreFuture<'_, LeaseGrant>;
    /// Give back the lease of (server, job) if `holder` holds it (a lease someone took
    /// over after it expired is left alone).
    fn release(&self, server: &str, job: JobKind, holder: &str) -> StoreFuture<'_, ()>;
}
