//! The shared vocabulary at the bottom of the crate: severities, job and finding kinds,
//! timestamps and their storage format, and the records the state store persists.
//! Plain data with no behaviour beyond naming and ordering itself. It depends on nothing
//! inside the crate; everything else may depend on it.

pub mod finding;
mod job;
mod severity;

pub use finding::{Finding, FindingKind};
pub use job::JobKind;
pub use severity::Severity;
