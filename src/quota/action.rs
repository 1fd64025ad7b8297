//! Resets and deletes as data (`Action`), and the blast-radius guard that holds a mass
//! of them back. Pure code.

pub use crate::model::quota::{Action, ActionKind, Reason};

/// The guard trips when more than this many keys would be reset or deleted...
pub const GUARD_MIN_KEYS: usize = 5;
/// ...and they are more than this share (percent) of the server's keys.
pub const GUARD_SHARE_PERCENT: usize = 20;

/// An action with whether its rule exempts it from the guard.
pub(super) struct Candidate {
    pub action: Action,
    pub allow_mass: bool,
}

/// Outside a period boundary, resets and deletes of more than `GUARD_MIN_KEYS` keys that
/// are also more than `GUARD_SHARE_PERCENT`% of the server's keys are held back, unless
/// their rule sets `allow_mass`. Returns (to execute, blocked).
pub(super) fn guard(candidates: Vec<Candidate>, total_keys: usize) -> (Vec<Action>, Vec<Action>) {
    let counted = candidates
        .iter()
        .filter(|c| c.action.reason != Reason::Boundary && !c.allow_mass)
        .count();
    let trips = counted > GUARD_MIN_KEYS && counted * 100 > total_keys * GUARD_SHARE_PERCENT;
    let (blocked, go): (Vec<Candidate>, Vec<Candidate>) = candidates
        .into_iter()
        .partition(|c| trips && c.action.reason != Reason::Boundary && !c.allow_mass);
    (
        go.into_iter().map(|c| c.action).collect(),
        blocked.into_iter().map(|c| c.action).collect(),
    )
}
