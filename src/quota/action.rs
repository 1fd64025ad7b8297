//! Resets and deletes as data (`Action`), and the blast-radius guard that holds a mass
//! of them back. Pure code.

use serde::Serialize;

/// What to do to a key on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Reset,
    Delete,
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A period boundary passed (exempt from the guard).
    Boundary,
    /// Over the limit with `on_exceed = "reset"`.
    Exceeded,
    /// Over the limit with `on_exceed = "delete"` when the grace ended.
    GraceEnded,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Reset => "reset",
            ActionKind::Delete => "delete",
        }
    }
    pub fn parse(text: &str) -> Option<ActionKind> {
        [ActionKind::Reset, ActionKind::Delete]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Boundary => "boundary",
            Reason::Exceeded => "exceeded",
            Reason::GraceEnded => "grace_ended",
        }
    }
    pub fn parse(text: &str) -> Option<Reason> {
        [Reason::Boundary, Reason::Exceeded, Reason::GraceEnded]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// One reset or delete, keyed so that it happens at most once (`intent_key` is unique
/// per server and key: the period for a boundary reset, the allowance for an exceeded one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub kind: ActionKind,
    pub reason: Reason,
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    pub intent_key: String,
    /// The counter when planned (the baseline the reset is verified against).
    pub counter_before: Option<u64>,
    /// Whether the server is called: false for a fresh allowance kept in the ledger only
    /// (`counter_resets` off or suspended, an inactive key).
    pub call_server: bool,
}

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
