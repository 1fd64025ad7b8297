//! config_sync's memory: the drift streak of a server.

use chrono::{DateTime, Utc};

/// The consecutive drifted reads of one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftMemory {
    pub confirmations: u32,
    pub first_seen: Option<DateTime<Utc>>,
    /// A stable description of what drifted (sorted uuids), to tell streaks apart.
    pub signature: String,
}
