//! The dataplane job's state: each key's vless:// link (fetched once, kept until the key
//! changes), the last probe of each distinct host:port, and where the rotation over a
//! server's ports continues. Written by the dataplane job's execute step only.

use chrono::{DateTime, Utc};

use super::StoreFuture;
use crate::model::dataplane::{DataplaneMemory, PortRecord, StoredLink};

/// What one dataplane run writes, at once (one transaction).
#[derive(Debug, Clone)]
pub struct DataplaneCommit {
    /// Links fetched in this run.
    pub fetched: Vec<StoredLink>,
    /// Keys whose links are forgotten (gone, or no longer active).
    pub forgotten: Vec<String>,
    pub probed: Vec<PortRecord>,
    /// Every endpoint the server has now; remembered probes of others are dropped.
    pub endpoints: Vec<String>,
    pub cursor: Option<String>,
    pub now: DateTime<Utc>,
}

/// The dataplane job's repository.
pub trait DataplaneLog: Send + Sync {
    /// The links remembered for a server, by key id.
    fn links(&self, server: &str) -> StoreFuture<'_, Vec<StoredLink>>;
    /// The last probe of each of a server's endpoints, by endpoint.
    fn ports(&self, server: &str) -> StoreFuture<'_, Vec<PortRecord>>;
    /// Where the rotation continues (empty before the first run).
    fn memory(&self, server: &str) -> StoreFuture<'_, DataplaneMemory>;
    /// Commit one run.
    fn commit(&self, server: &str, commit: DataplaneCommit) -> StoreFuture<'_, ()>;
}
