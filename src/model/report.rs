//! What the usage report reads and records: traffic per key, server and local day,
//! availability samples per server, series and UTC hour, and which report went to which
//! sink.

use chrono::{DateTime, NaiveDate, Utc};

/// Bytes one key added on one day (the agent's time zone), as one quota run counted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    pub day: NaiveDate,
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    pub bytes: u64,
}

/// A stored day of one key on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsageRow {
    pub server: String,
    pub day: NaiveDate,
    pub uuid: String,
    pub key_id: String,
    pub name: String,
    pub bytes: u64,
}

/// What an availability sample is about. The health job records `Api` (the API answered
/// its check); data-plane checks add their own series (Xray running, VLESS ports open) as
/// new variants, and the report draws every series it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AvailabilitySeries {
    /// The health check found the server's API answering.
    Api,
    /// 2.x: the health check found Xray running (after any restart it made).
    Xray,
    /// One sample per VLESS port per dataplane run: the port answered TLS correctly.
    VlessPorts,
}

impl AvailabilitySeries {
    pub const ALL: [AvailabilitySeries; 3] = [
        AvailabilitySeries::Api,
        AvailabilitySeries::Xray,
        AvailabilitySeries::VlessPorts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AvailabilitySeries::Api => "api",
            AvailabilitySeries::Xray => "xray",
            AvailabilitySeries::VlessPorts => "vless_ports",
        }
    }

    /// What the series means, for report headings.
    pub fn title(self) -> &'static str {
        match self {
            AvailabilitySeries::Api => "API up",
            AvailabilitySeries::Xray => "Xray running",
            AvailabilitySeries::VlessPorts => "VLESS ports answering",
        }
    }

    pub fn parse(text: &str) -> Option<AvailabilitySeries> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One check's result for one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvailabilitySample {
    pub series: AvailabilitySeries,
    pub up: bool,
}

/// Checks and successes of one series of one server in one UTC hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityRow {
    pub server: String,
    pub series: AvailabilitySeries,
    pub hour: DateTime<Utc>,
    pub checks: u64,
    pub up: u64,
}

/// How delivering one report to one sink went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [DeliveryState::Delivered, DeliveryState::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One report delivery as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDelivery {
    /// The report period, e.g. `2026-W48` or `2026-11`.
    pub period: String,
    pub sink: String,
    pub delivered: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}
