//! What keywarden last knew of a server (the health job's up/down memory).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What keywarden last knew of a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ServerState {
    pub server: String,
    pub version: Option<String>,
    pub last_up_at: Option<DateTime<Utc>>,
    pub last_down_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}
