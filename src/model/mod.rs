//! The shared vocabulary at the bottom of the crate: severities, job and finding kinds,
//! timestamps and their storage format, and the records the state store persists (job
//! runs, findings, the audit log, server state, the drift streak and sync budget, the
//! quota ledger and intents, alert states and the outbox, the data plane's memories).
//! Plain data with no behaviour beyond naming, ordering and deriving keys. It depends on nothing inside the crate; everything else
//! may depend on it.

pub mod alert;
pub mod audit;
pub mod dataplane;
pub mod finding;
mod job;
pub mod quota;
pub mod report;
mod server;
mod severity;
pub mod sync;
pub mod time;

pub use audit::{AuditAction, AuditEntry, AuditResult};
pub use finding::{Finding, FindingChanges, FindingKind, OpenFindings, StoredFinding};
pub use job::{JobKind, Lease, RunOutcome, RunRecord};
pub use server::ServerState;
pub use severity::Severity;
pub use sync::{AttemptKind, DriftMemory, SyncAttempt, SyncAttemptOutcome};
pub use time::{parse_stamp, stamp};
