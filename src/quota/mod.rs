//! Traffic accounting and quotas, the pure part: period arithmetic, the usage ledger,
//! rule matching, thresholds and actions, the blast-radius guard. No IO, no clock: the
//! quota job (`jobs::quota`) observes, calls in here to plan, and executes.

pub mod ledger;
pub mod period;
pub mod rules;
