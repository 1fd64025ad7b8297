//! How model values are written to and read from SQLite columns: one conversion per
//! type. Enums are stored by their snake_case names; a name this build does not know is
//! a conversion error (the read fails with `StoreError::Corrupt`), never a default.
//! Timestamps are stored in `model::time`'s text form.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::model::alert::{AlertStatus, Reason as NoticeReason};
use crate::model::dataplane::{PortState, XrayState};
use crate::model::quota::{ActionKind, IntentOutcome, IntentState, Reason as ActionReason};
use crate::model::report::DeliveryState;
use crate::model::{
    AttemptKind, AuditAction, AuditResult, FindingKind, JobKind, RunOutcome, Severity,
    SyncAttemptOutcome, parse_stamp,
};

/// `ToSql` and `FromSql` through a type's `as_str` and `parse`.
macro_rules! named_column {
    ($($type:ty),* $(,)?) => {$(
        impl ToSql for $type {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $type {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                <$type>::parse(text).ok_or_else(|| unknown(stringify!($type), text))
            }
        }
    )*};
}

named_column!(
    Severity,
    JobKind,
    FindingKind,
    RunOutcome,
    AuditAction,
    AuditResult,
    AlertStatus,
    NoticeReason,
    ActionKind,
    ActionReason,
    IntentState,
    IntentOutcome,
    SyncAttemptOutcome,
    AttemptKind,
    DeliveryState,
    XrayState,
    PortState,
);

fn unknown(what: &str, text: &str) -> FromSqlError {
    FromSqlError::Other(format!("{text:?} is no {what} this keywarden knows").into())
}

/// A timestamp column.
struct Stamp(DateTime<Utc>);

impl FromSql for Stamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        parse_stamp(text)
            .map(Stamp)
            .ok_or_else(|| unknown("timestamp", text))
    }
}

/// The timestamp in column `index`.
pub(super) fn at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    row.get::<_, Stamp>(index).map(|stamp| stamp.0)
}

/// The timestamp in column `index`, if any.
pub(super) fn opt_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<Stamp>>(index)
        .map(|stamp| stamp.map(|s| s.0))
}

/// A day, as stored ("2026-11-28").
pub(super) fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A day column.
pub(super) fn day(row: &Row<'_>, index: usize) -> rusqlite::Result<NaiveDate> {
    let text: String = row.get(index)?;
    NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            unknown("day", &text).into(),
        )
    })
}

/// A count column (never negative in a sound store; read as 0 if it is).
pub(super) fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u32> {
    row.get::<_, i64>(index)
        .map(|n| n.clamp(0, i64::from(u32::MAX)) as u32)
}

/// A byte count as SQLite stores it (saturating at i64::MAX).
pub(super) fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A byte count as read back (a negative one reads as 0).
pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_errors() {
        let conn = Connection::open_in_memory().unwrap();
        let back: FindingKind = conn
            .query_row("SELECT ?1", [FindingKind::QuotaWarning], |r| r.get(0))
            .unwrap();
        assert_eq!(back, FindingKind::QuotaWarning);
        let error = conn
            .query_row("SELECT 'nope'", [], |r| r.get::<_, Severity>(0))
            .unwrap_err();
        assert!(
            error.to_string().contains("\"nope\" is no Severity"),
            "{error}"
        );
        let error = conn
            .query_row("SELECT 'today'", [], |r| at(r, 0))
            .unwrap_err();
        assert!(error.to_string().contains("no timestamp"), "{error}");
        let none = conn.query_row("SELECT NULL", [], |r| opt_at(r, 0)).unwrap();
        assert_eq!(none, None);
    }
}
