//! The data plane's records: what health remembers of Xray on a 2.x server, the reality
//! job's 2.x streak, and the dataplane job's links, port probes and rotation.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Xray's process state as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XrayState {
    Running,
    Stopped,
}

impl XrayState {
    pub fn as_str(self) -> &'static str {
        match self {
            XrayState::Running => "running",
            XrayState::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<XrayState> {
        match text {
            "running" => Some(XrayState::Running),
            "stopped" => Some(XrayState::Stopped),
            _ => None,
        }
    }
}

/// The health job's memory of one server's Xray.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct XrayMemory {
    /// What the last read said; None before the first read (and on 1.x, which cannot tell).
    pub state: Option<XrayState>,
    /// Consecutive reads that said "stopped".
    pub stopped_reads: u32,
    pub first_stopped_at: Option<DateTime<Utc>>,
    pub checked_at: Option<DateTime<Utc>>,
}

/// What the reality job remembers on a 2.x server: consecutive reads that found the
/// Reality settings invalid (a fix-reality-keys restarts Xray, so one odd read is not
/// enough), and which problem the last fix was for (a fix that did not cure a problem is
/// not repeated for it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RealityMemory {
    /// Consecutive invalid reads.
    pub confirmations: u32,
    pub first_seen: Option<DateTime<Utc>>,
    /// What was invalid at the last read (inbounds and problems, sorted).
    pub signature: String,
    /// The problem the last fix-reality-keys was made for.
    pub fixed_signature: Option<String>,
    pub fixed_at: Option<DateTime<Utc>>,
}

/// One key's vless:// link as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredLink {
    pub key_id: String,
    /// What the link was fetched for (uuid, port, short id, active): a change refetches.
    pub key_sig: String,
    pub host: String,
    pub port: u16,
    pub sni: Option<String>,
    pub fetched_at: DateTime<Utc>,
}

/// What one TLS probe of a VLESS port came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// The handshake completed with a certificate valid for the server name.
    Open,
    /// No connection: refused, timed out, or the host did not resolve.
    Closed,
    /// Connected, but the TLS handshake failed (reset, alert, silence).
    TlsFailed,
    /// The handshake reached a certificate that does not verify for the server name.
    CertInvalid,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::TlsFailed => "tls_failed",
            PortState::CertInvalid => "cert_invalid",
        }
    }

    pub fn parse(text: &str) -> Option<PortState> {
        [
            PortState::Open,
            PortState::Closed,
            PortState::TlsFailed,
            PortState::CertInvalid,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// The last probe of one host:port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortRecord {
    /// `host:port`.
    pub endpoint: String,
    pub state: PortState,
    /// Why it is not open (the error), or the server name it was probed with.
    pub detail: String,
    /// The handshake's duration (open ports).
    pub latency_ms: Option<u64>,
    pub probed_at: DateTime<Utc>,
}

/// Where the dataplane job's rotation over a server's ports continues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataplaneMemory {
    /// The last endpoint probed; the next run starts after it.
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in [XrayState::Running, XrayState::Stopped] {
            assert_eq!(XrayState::parse(state.as_str()), Some(state));
        }
        for state in [
            PortState::Open,
            PortState::Closed,
            PortState::TlsFailed,
            PortState::CertInvalid,
        ] {
            assert_eq!(PortState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(PortState::parse("Open"), None);
    }
}
